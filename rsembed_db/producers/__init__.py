"""Producers: requests in, records out (on-the-fly models over imagery, precomputed
products read tile by tile), and the catalog of every model (``producers.catalog``)."""
