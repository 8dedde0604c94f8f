"""gplinker tasks: NER (``tasks.ner``); each module holds its heads, decoding, scoring and readers."""
