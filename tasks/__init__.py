"""gplinker tasks: ``ner``, ``relation`` and ``event``; each module holds its task class (heads,
target encoding, decoding, scoring) and the readers of its published data formats."""
