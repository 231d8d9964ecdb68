"""Which published layout a mirror URL serves, found with a few HEAD requests."""

from __future__ import annotations

from rsembed_db.errors import SpecError
from rsembed_db.sources.download import DownloadError, OfflineError
from rsembed_db.sources.ranged import open_files
from rsembed_db.sources.tessera import layout
from rsembed_db.sources.tessera.datasets import Dataset


def detect_remote(url: str, dataset: Dataset) -> str:
    """``zarr``, ``npy`` or ``legacy`` for a mirror URL (the default mirror is not probed)."""
    if url.rstrip("/") == layout.MIRROR:
        return "npy" if dataset.npy_dir else "zarr"
    probes = [("zarr", "zarr.json"), ("legacy", layout.REGISTRY_FILE)]
    if dataset.npy_dir:
        probes.append(("npy", layout.mirror_manifest_path(dataset)))
    if dataset.zarr_dir:
        probes.append(("zarr", f"zarr/{dataset.zarr_dir}/zarr.json"))
    files = open_files(url)
    try:
        for name, path in probes:
            if files.exists(path):
                return name
    except OfflineError as exc:
        raise SpecError("tessera.url", f"{exc}; download the tiles beforehand (geotessera download "
                        "--format npy --output DIR, then --config dir=DIR) or set url to a reachable "
                        "mirror") from None
    except DownloadError as exc:
        raise SpecError("tessera.url", f"cannot read {url}: {exc}") from None
    expected = ", ".join(p for _, p in probes)
    raise SpecError("tessera.url", f"no Tessera layout at {url}: expected one of {expected} "
                    f"(for {dataset.label})")


def store_url(url: str, dataset: Dataset) -> str:
    """The Zarr store: ``url`` itself when it is one, else ``url/zarr/<store of the dataset>``."""
    if not dataset.zarr_dir:
        raise SpecError("tessera.variant", f"{dataset.label} is not published as a Zarr store")
    base = url.rstrip("/")
    if base == layout.MIRROR:
        return f"{layout.ZARR_MIRROR}/{dataset.zarr_dir}"
    try:
        if open_files(base).exists("zarr.json"):
            return base
    except DownloadError as exc:
        raise SpecError("tessera.url", f"cannot read {base}: {exc}") from None
    return f"{base}/zarr/{dataset.zarr_dir}"
