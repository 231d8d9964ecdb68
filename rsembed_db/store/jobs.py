"""Ingest jobs of the service, kept in the store so that every replica sees every job.

``_jobs`` holds one row per job (``id`` is its primary key): state, counters, per-tile
errors, timestamps, the replica running it (``owner``) and its last sign of life
(``updated_at``). Only the owner writes a job's row (conflict-checked upserts,
``store.commit``), so rows never race. A cancellation is a row of its own in
``_job_cancels`` (any replica may add one; the owner polls it), so a cancel can never be
overwritten by a progress update.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pyarrow as pa

from rsembed_db.store.commit import upsert, with_primary_key
from rsembed_db.store.lance_store import EmbeddingStore, sql_quote
from rsembed_db.store.schema import JOB_CANCELS_TABLE, JOBS_TABLE

COUNTERS = ("planned", "already_stored", "to_compute", "computed", "failed")
TEXTS = ("state", "model", "table_name", "tiles", "created_at", "started_at", "finished_at", "owner")

JOB_SCHEMA = with_primary_key(pa.schema(
    [pa.field("id", pa.string(), nullable=False)]
    + [pa.field(name, pa.string()) for name in TEXTS]
    + [pa.field(name, pa.int64()) for name in COUNTERS]
    + [pa.field("errors", pa.string()), pa.field("error", pa.string()),
       pa.field("updated_at", pa.timestamp("us", tz="UTC"))]), ["id"])

CANCEL_SCHEMA = with_primary_key(pa.schema([
    pa.field("id", pa.string(), nullable=False),
    pa.field("who", pa.string()),
    pa.field("at", pa.timestamp("us", tz="UTC")),
]), ["id"])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class JobTable:
    """The ``_jobs`` and ``_job_cancels`` tables of ``store`` (created on first write)."""

    def __init__(self, store: EmbeddingStore) -> None:
        self.store = store

    def put(self, job: dict[str, Any]) -> None:
        """Write a job's row (all of ``TEXTS``, ``COUNTERS``, ``errors`` list, ``error`` dict
        or None), stamped ``updated_at`` now; one atomic commit."""
        row = {"id": job["id"], **{k: job.get(k) for k in TEXTS + COUNTERS},
               "errors": json.dumps(job.get("errors") or []),
               "error": None if job.get("error") is None else json.dumps(job["error"]), "updated_at": _now()}
        table = self.store.internal_table(JOBS_TABLE, JOB_SCHEMA)
        with self.store.write_lock:
            upsert(table.to_lance(), pa.Table.from_pylist([row], schema=JOB_SCHEMA), ["id"])

    def get(self, job_id: str) -> dict[str, Any] | None:
        rows = self._rows(f"id = {sql_quote([job_id])}")
        return rows[0] if rows else None

    def request_cancel(self, job_id: str, who: str | None = None) -> None:
        table = self.store.internal_table(JOB_CANCELS_TABLE, CANCEL_SCHEMA)
        with self.store.write_lock:
            upsert(table.to_lance(), pa.Table.from_pylist([{"id": job_id, "who": who, "at": _now()}],
                                                          schema=CANCEL_SCHEMA), ["id"])

    def cancel_requested(self, job_id: str) -> bool:
        if not self.store.has_table(JOB_CANCELS_TABLE):
            return False
        table = self.store.internal_table(JOB_CANCELS_TABLE, CANCEL_SCHEMA)
        return table.count_rows(f"id = {sql_quote([job_id])}") > 0

    def _rows(self, where: str | None) -> list[dict[str, Any]]:
        if not self.store.has_table(JOBS_TABLE):
            return []
        rows = self.store.internal_table(JOBS_TABLE, JOB_SCHEMA).to_lance().to_table(filter=where).to_pylist()
        cancelled = self._cancelled({r["id"] for r in rows})
        for row in rows:
            row["errors"] = json.loads(row["errors"] or "[]")
            row["error"] = json.loads(row["error"]) if row["error"] else None
            row["cancel_requested"] = row["id"] in cancelled
        return rows

    def _cancelled(self, ids: set[str]) -> set[str]:
        if not ids or not self.store.has_table(JOB_CANCELS_TABLE):
            return set()
        table = self.store.internal_table(JOB_CANCELS_TABLE, CANCEL_SCHEMA)
        rows = table.to_lance().to_table(columns=["id"], filter=f"id IN ({sql_quote(sorted(ids))})")
        return set(rows["id"].to_pylist())

    def list(self, limit: int = 1000) -> list[dict[str, Any]]:
        """The most recent ``limit`` jobs, newest first."""
        return sorted(self._rows(None), key=lambda r: r["created_at"] or "", reverse=True)[:limit]
