"""Which published layout a directory or URL holds, and the tile source that reads it.

Layouts (``layout=auto`` detects them, in this order):

- ``zarr``: a per-UTM-zone Zarr v3 store: ``<dir or url>/zarr.json`` with ``utmNN`` groups,
  or a mirror root holding ``zarr/<store of the dataset>/zarr.json``;
- ``npy``: today's mirror tree, ``npy/<dataset>/manifest.parquet`` (sizes, no hashes);
- ``legacy``: the geotessera 0.7 tree with a SHA-256 ``registry.parquet``, which is also
  the directory geotessera downloads into.

A local directory holding tiles is read in place (a geotessera download directory needs
no copying); missing tiles are downloaded from ``url`` when it serves NPY files. Stores
are never copied: they are read by range requests. The dataset a directory records
(``tessera_metadata.json``) or a store's directory name says must be the configured one.
"""

from __future__ import annotations

from pathlib import Path

from rsembed_db.errors import SpecError
from rsembed_db.sources.tessera import layout
from rsembed_db.sources.tessera.datasets import Dataset, Recorded, check_recorded, read_sidecar, zarr_dataset
from rsembed_db.sources.tessera.probe import detect_remote, store_url
from rsembed_db.sources.tessera.tiles import TesseraTiles
from rsembed_db.sources.tessera.zarr_tiles import ZarrTiles
from rsembed_db.specs.validate import require_choice

LAYOUTS = ("auto", "legacy", "npy", "zarr")


def open_tiles(root: Path, url: str | None, dataset: Dataset, layout_name: str = "auto",
               verify_local: bool = False) -> TesseraTiles | ZarrTiles:
    """The tile source for a local directory ``root`` and a mirror ``url`` (None: offline)."""
    require_choice("tessera.layout", layout_name, LAYOUTS)
    root = Path(root).expanduser()
    check_recorded(str(root), read_sidecar(root), dataset)
    local_store = _local_store(root, dataset)
    if layout_name == "zarr" or (layout_name == "auto" and local_store is not None):
        if local_store is not None:
            return _zarr(str(local_store), dataset)
        if url is None:
            raise SpecError("tessera.url", f"layout=zarr needs a store: {root} holds none (zarr.json) and "
                            "no url is configured")
        return _zarr(store_url(url, dataset), dataset)
    if layout_name in ("legacy", "npy"):
        return TesseraTiles(root, url, dataset, verify_local, layout_name)
    if url is None or _has_tiles(root):
        return TesseraTiles(root, url, dataset, verify_local)  # the mirror is probed if a tile is missing
    found = detect_remote(url, dataset)
    if found == "zarr":
        return _zarr(store_url(url, dataset), dataset)
    return TesseraTiles(root, url, dataset, verify_local, found)


def _zarr(location: str, dataset: Dataset) -> ZarrTiles:
    named = zarr_dataset(location.rstrip("/").rsplit("/", 1)[-1])
    if named is not None:
        check_recorded(location, Recorded(named.version, named.variant, "the store's directory name"), dataset)
    return ZarrTiles(location)


def _local_store(root: Path, dataset: Dataset) -> Path | None:
    if (root / "zarr.json").is_file():
        return root
    if dataset.zarr_dir and (root / "zarr" / dataset.zarr_dir / "zarr.json").is_file():
        return root / "zarr" / dataset.zarr_dir
    return None


def _has_tiles(root: Path) -> bool:
    """Whether ``root`` holds NPY tiles or an index in a known layout."""
    if not root.is_dir():
        return False
    names = {p.name for p in root.iterdir()}
    return bool(names & {layout.EMBEDDINGS_DIR, layout.REGISTRY_FILE, "npy"}) or any(
        n.startswith(layout.EMBEDDINGS_DIR + ".") for n in names)
