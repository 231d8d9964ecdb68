"""The HTTP service (FastAPI): ``create_app(ServiceSettings(...))`` or ``rsembed-db serve``."""

from rsembed_db.service.app import create_app
from rsembed_db.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
