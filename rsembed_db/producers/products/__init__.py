"""Precomputed embedding products: Tessera, Google Satellite Embedding, Copernicus-Embed.

Each is a ``BulkProducer`` listed in ``producers.catalog``.
"""
