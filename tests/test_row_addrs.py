"""The numpy encoding of row-address allow-lists is byte for byte Lance's own."""

from __future__ import annotations

import numpy as np
import pytest
from lance.dataset import serialize_row_addrs

from rsembed_db.query.row_addrs import allowlist_bytes


def _addresses(rng: np.random.Generator, count: int, fragments: int, rows_per_fragment: int) -> np.ndarray:
    fragment = rng.integers(0, fragments, count).astype(np.uint64)
    offset = rng.integers(0, rows_per_fragment, count).astype(np.uint64)
    return np.unique((fragment << np.uint64(32)) | offset)


@pytest.mark.parametrize(("count", "fragments", "rows_per_fragment"), [
    (0, 1, 1), (1, 1, 10), (10, 3, 100), (5000, 40, 300_000),  # sparse: array containers
    (300_000, 2, 400_000), (2_000_000, 3, 1_000_000),  # dense: bitmap containers
    (70_000, 1000, 2_000_000),  # many fragments, mixed
])
def test_same_bytes_as_lance(count, fragments, rows_per_fragment):
    addresses = _addresses(np.random.default_rng(count), count, fragments, rows_per_fragment)
    assert allowlist_bytes(addresses) == serialize_row_addrs(addresses.tolist())


def test_edges_of_containers_and_fragments():
    edges = np.array([0, 1, 4095, 4096, 65535, 65536, 65537, 2**32 - 1], np.uint64)
    full = np.arange(4097, dtype=np.uint64) + np.uint64(3 * 65536)  # one container just past the array limit
    addresses = np.unique(np.concatenate([edges, full, edges + (np.uint64(7) << np.uint64(32)),
                                          np.array([(2**32 - 1) << 32], np.uint64)]))
    assert allowlist_bytes(addresses) == serialize_row_addrs(addresses.tolist())


def test_any_order_and_duplicates():
    addresses = np.array([5, (3 << 32) + 1, 5, 2, (3 << 32)], np.uint64)
    assert allowlist_bytes(addresses) == serialize_row_addrs(sorted(set(addresses.tolist())))
