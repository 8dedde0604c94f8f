"""The module spaCy's ``spacy_factories`` entry point names: spaCy imports every such module when
it builds a pipeline, and importing this one registers the ``gplinker`` factory. It is the only
gplinker module with an effect on import, and only spaCy imports it; the component itself lives
in :mod:`gplinker.spacy_component`."""

from gplinker.spacy_component import make_gplinker, register

register()

__all__ = ["make_gplinker"]
