"""LanceDB storage: one table per model variant, one row per embedding."""

import os

# LanceDB's bundled Lance does not know the R-tree index on ``geometry`` (pylance builds
# and uses it) and logs a warning per table open; its log is read when lancedb loads.
os.environ.setdefault("LANCEDB_LOG", "error")

from rsembed_db.store.lance_store import EmbeddingStore, TableInfo, default_db_path  # noqa: E402

__all__ = ["EmbeddingStore", "TableInfo", "default_db_path"]
