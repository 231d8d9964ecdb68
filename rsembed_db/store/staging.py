"""Staging tables of distributed ingest: workers write Lance fragments, only the driver commits.

A run creates one staging table ``_staging_<table>_<run>`` (an internal table, hidden from
``tables`` and SQL) with the target's schema. Workers write their rows into it as
fragments without committing (``write_staged``): files nobody references yet. The driver
appends the fragments of a chunk to the staging table (it is the staging table's only
writer), reads them back and commits them to the model table with the store's one
conflict-checked upsert on ``key`` (``EmbeddingStore.write_arrow``, ``store.commit``). So a
worker that dies, a retried task or a killed driver leaves staged files only, never a row
of the model table, and concurrent writers still end with every key stored once. The run
drops its staging table when it ends; ``optimize`` drops those of killed runs once they are
older than its retention (``stale_staging``).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence

import lance
import pyarrow as pa
from lance.fragment import FragmentMetadata, write_fragments

from rsembed_db.store.commit import storage_errors
from rsembed_db.store.lance_store import EmbeddingStore
from rsembed_db.store.schema import STAGING_PREFIX, embedding_schema


def staging_name(table_name: str, run_id: str | None = None) -> str:
    return f"{STAGING_PREFIX}{table_name}_{run_id or uuid.uuid4().hex[:12]}"


class StagingTable:
    """The driver's handle on one run's staging table."""

    def __init__(self, store: EmbeddingStore, table_name: str, dim: int, run_id: str | None = None) -> None:
        self.store, self.table_name, self.dim = store, table_name, dim
        self.name = staging_name(table_name, run_id)
        self.uri = store.internal_table(self.name, embedding_schema(dim)).to_lance().uri

    def commit(self, fragments: Sequence[str]) -> pa.Table:
        """Append the staged fragments (``write_staged``'s JSON) to the staging table and
        return their rows (one commit of the staging table, which only this driver writes)."""
        if not fragments:
            return embedding_schema(self.dim).empty_table()
        metas = [FragmentMetadata.from_json(text) for text in fragments]
        options = self.store.storage_options or None
        with storage_errors(f"the staging table {self.name!r}"):
            before = lance.dataset(self.uri, storage_options=options)
            known = {f.fragment_id for f in before.get_fragments()}
            after = lance.LanceDataset.commit(self.uri, lance.LanceOperation.Append(metas),
                                              read_version=before.version, storage_options=options)
            fresh = [f for f in after.get_fragments() if f.fragment_id not in known]
            return after.scanner(fragments=fresh).to_table().cast(embedding_schema(self.dim))

    def drop(self) -> None:
        self.store.drop_internal(self.name)


def write_staged(uri: str, data: pa.Table, storage_options: dict[str, str] | None = None) -> list[str]:
    """Write ``data`` into the staging table at ``uri`` as uncommitted fragments; their JSON."""
    if not data.num_rows:
        return []
    with storage_errors(f"staged fragments under {uri}"):
        fragments = write_fragments(data, uri, schema=data.schema, storage_options=storage_options or None)
    return [json.dumps(fragment.to_json()) for fragment in fragments]


def stale_staging(store: EmbeddingStore, older_than: dt.timedelta) -> list[str]:
    """Staging tables whose last commit is older than ``older_than`` (left by killed runs)."""
    now = dt.datetime.now(dt.timezone.utc)
    stale = []
    for name in store.internal_names():
        if not name.startswith(STAGING_PREFIX):
            continue
        versions = store.db.open_table(name).list_versions()
        last = max(v["timestamp"] for v in versions)
        last = last if last.tzinfo else last.astimezone(dt.timezone.utc)
        if now - last >= older_than:
            stale.append(name)
    return stale
