"""Precomputed embedding products: Tessera, Google Satellite Embedding, Copernicus-Embed.

Importing this package registers each product's producer in ``PRODUCT_FACTORIES``.
"""

from rsembed_db.ingest.producer import PRODUCT_FACTORIES
from rsembed_db.models.products.copernicus import CopernicusProducer
from rsembed_db.models.products.gse import GseProducer
from rsembed_db.models.products.tessera import TesseraProducer

for _product in (TesseraProducer, GseProducer, CopernicusProducer):
    PRODUCT_FACTORIES[_product.name] = _product
