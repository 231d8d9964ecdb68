"""Embedders: imagery chips in, feature maps out (listed in ``producers.catalog``)."""
