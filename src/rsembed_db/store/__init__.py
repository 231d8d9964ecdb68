"""LanceDB storage: one table per model variant, one row per embedding."""

from rsembed_db.store.lance_store import EmbeddingStore, TableInfo, default_db_path
from rsembed_db.store.records import EmbeddingRecord, FailureRecord

__all__ = ["EmbeddingRecord", "EmbeddingStore", "FailureRecord", "TableInfo", "default_db_path"]
