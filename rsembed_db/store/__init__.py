"""LanceDB storage: one table per model variant, one row per embedding."""

from rsembed_db.store.lance_store import EmbeddingStore, TableInfo, default_db_path

__all__ = ["EmbeddingStore", "TableInfo", "default_db_path"]
