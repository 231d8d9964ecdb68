"""Label sets: named positive / negative marks on stored rows, kept in the ``_labels`` table.

A label set belongs to one model table (its keys are rows of that table, so its
examples share one embedding space). One row per ``(set_name, key)``: ``label``
(``positive`` or ``negative``), ``who`` made the last change and ``at`` (UTC). Writes
are conflict-checked ``merge_insert`` on ``(set_name, key)`` (``store.commit``), one atomic
commit per call.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from rsembed_db.errors import NotFound, SpecError
from rsembed_db.store.commit import upsert
from rsembed_db.store.lance_store import EmbeddingStore, sql_quote
from rsembed_db.store.schema import LABEL_SCHEMA, LABELS_TABLE

LABELS = ("positive", "negative")
SET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
KEY_CHUNK = 512


def check_set_name(name: str, field: str = "set") -> str:
    """``name`` if it is a valid label-set name (letters, digits, ``_``, ``-``; 1-64 chars)."""
    if not isinstance(name, str) or not SET_NAME.match(name):
        raise SpecError(field, f"a label set name is 1-64 letters, digits, '_' or '-' (starting with a letter "
                               f"or digit), got {name!r}")
    return name


@dataclass(frozen=True)
class LabelSetInfo:
    name: str
    table: str
    positives: int
    negatives: int
    updated_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "table": self.table, "positives": self.positives,
                "negatives": self.negatives, "count": self.positives + self.negatives,
                "updated_at": self.updated_at.isoformat()}


class LabelSets:
    """The label sets of ``store`` (the ``_labels`` table, created on first write)."""

    def __init__(self, store: EmbeddingStore) -> None:
        self.store = store

    def _table(self):
        return self.store.internal_table(LABELS_TABLE, LABEL_SCHEMA)

    def _rows(self, where: str | None = None) -> list[dict[str, Any]]:
        if not self.store.has_table(LABELS_TABLE):
            return []
        return self._table().to_lance().to_table(filter=where).to_pylist()

    def sets(self) -> list[LabelSetInfo]:
        """Every label set with its counts, by name."""
        summary: dict[str, dict[str, Any]] = {}
        for row in self._rows():
            info = summary.setdefault(row["set_name"], {"table": row["table_name"], "positive": 0, "negative": 0,
                                                        "at": row["at"]})
            info[row["label"]] += 1
            info["at"] = max(info["at"], row["at"])
        return [LabelSetInfo(name, s["table"], s["positive"], s["negative"], s["at"])
                for name, s in sorted(summary.items())]

    def table_of(self, name: str) -> str | None:
        """The table set ``name`` belongs to, or None when the set does not exist."""
        rows = self._rows(f"set_name = {sql_quote([check_set_name(name)])}")
        return rows[0]["table_name"] if rows else None

    def labels(self, name: str) -> list[dict[str, Any]]:
        """The labels of set ``name`` (``key``, ``label``, ``who``, ``at``), by key; NotFound if empty."""
        rows = self._rows(f"set_name = {sql_quote([check_set_name(name)])}")
        if not rows:
            raise NotFound("set", f"no label set {name!r}")
        return sorted(({"key": r["key"], "label": r["label"], "who": r["who"], "at": r["at"], "table": r["table_name"]}
                       for r in rows), key=lambda r: r["key"])

    def put(self, name: str, table: str, labels: Iterable[tuple[str, str]], who: str) -> int:
        """Set the label of each ``(key, label)`` in set ``name`` of ``table``; keys must be
        stored in ``table``. Returns the number written (one commit)."""
        check_set_name(name)
        items = list(labels)
        if not items:
            raise SpecError("labels", "give at least one label")
        for i, (key, label) in enumerate(items):
            if label not in LABELS:
                raise SpecError(f"labels[{i}].label", f"must be one of {', '.join(LABELS)}, got {label!r}", LABELS)
            if not isinstance(key, str) or not key:
                raise SpecError(f"labels[{i}].key", f"must be a stored key, got {key!r}")
        if table not in self.store.table_names():
            raise NotFound("table", f"no table {table!r}")
        existing = self.table_of(name)
        if existing is not None and existing != table:
            raise SpecError("table", f"label set {name!r} holds rows of table {existing!r}, not {table!r}")
        keys = list(dict.fromkeys(key for key, _ in items))
        missing = sorted(set(keys) - self.store.existing_keys(table, keys))
        if missing:
            raise SpecError("labels", f"not stored in table {table!r}: {missing[0]}")
        last = dict(items)  # a key given twice keeps its last label
        now = dt.datetime.now(dt.timezone.utc)
        data = pa.Table.from_pylist([{"set_name": name, "key": key, "table_name": table, "label": last[key],
                                      "who": who, "at": now} for key in keys], schema=LABEL_SCHEMA)
        with self.store.write_lock:
            upsert(self._table().to_lance(), data, ["set_name", "key"])
        return len(keys)

    def delete(self, name: str, keys: Iterable[str] | None = None) -> int:
        """Remove ``keys`` from set ``name`` (all of them when None); returns how many were removed."""
        where = f"set_name = {sql_quote([check_set_name(name)])}"
        if not self.store.has_table(LABELS_TABLE):
            return 0
        table = self._table()
        clauses = [where] if keys is None else [
            f"{where} AND key IN ({sql_quote(chunk)})" for chunk in _chunks(list(keys))]
        removed = 0
        with self.store.write_lock:
            for clause in clauses:
                removed += self.store.delete_where(table, clause, f"removing labels of set {name!r}")
        return removed


def _chunks(keys: list[str]) -> list[list[str]]:
    return [keys[i:i + KEY_CHUNK] for i in range(0, len(keys), KEY_CHUNK)]
