"""One embedding grid (a georeferenced (D, y, x) DataArray) as a file GIS tools read right.

- ``.tif`` / ``.tiff``: a Cloud-Optimised GeoTIFF, one float32 band per embedding
  dimension (``emb_000``...), NaN as nodata, the grid's CRS and transform;
- ``.nc``: NetCDF with CF conventions: ``x`` / ``y`` projection coordinates in metres and
  a ``spatial_ref`` grid-mapping variable (CF attributes, ``crs_wkt``, ``spatial_ref``,
  ``GeoTransform``) that the ``embedding`` variable names, as rioxarray writes them, so
  GDAL / QGIS place it without guessing;
- ``.npy``: the bare array (no georeferencing).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr
from affine import Affine

from rsembed_db.errors import SpecError
from rsembed_db.export.hdf5 import HDF5_LOCK

if TYPE_CHECKING:
    import pyproj

SUFFIXES = (".tif", ".tiff", ".nc", ".npy")


def write_grid(grid: xr.DataArray, path: str | Path) -> Path:
    """Write ``grid`` (from ``Embedding.data`` of a grid request) by the file's suffix."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise SpecError("out", f"unknown file type {path.suffix!r}", SUFFIXES)
    if suffix == ".npy":
        np.save(path, np.asarray(grid.values))
    elif suffix == ".nc":
        _netcdf(grid, path)
    else:
        _cog(grid, path)
    return path


def _netcdf(grid: xr.DataArray, path: Path) -> None:
    import pyproj

    crs = pyproj.CRS(grid.attrs["crs"])
    transform = Affine(*grid.attrs["transform"])
    mapping = {**crs.to_cf(), "crs_wkt": crs.to_wkt(), "spatial_ref": crs.to_wkt(),
               "GeoTransform": " ".join(str(v) for v in transform.to_gdal())}
    data = grid.copy()
    data.attrs = {k: v for k, v in grid.attrs.items() if k not in ("crs", "transform")}
    data.attrs["grid_mapping"] = "spatial_ref"
    data["x"].attrs = _axis(crs, "x")
    data["y"].attrs = _axis(crs, "y")
    dataset = data.to_dataset(name="embedding").assign_coords(spatial_ref=xr.DataArray(0, attrs=mapping))
    dataset.attrs["Conventions"] = "CF-1.8"
    with HDF5_LOCK:
        dataset.to_netcdf(path, engine="netcdf4")


def _axis(crs: pyproj.CRS, axis: str) -> dict[str, str]:
    if crs.is_projected:
        return {"standard_name": f"projection_{axis}_coordinate", "units": "m", "axis": axis.upper(),
                "long_name": f"{axis}-coordinate in projected coordinate system"}
    name = "longitude" if axis == "x" else "latitude"
    return {"standard_name": name, "units": f"degrees_{'east' if axis == 'x' else 'north'}", "axis": axis.upper()}


def _cog(grid: xr.DataArray, path: Path) -> None:
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as copy_dataset

    values = np.asarray(grid.values, dtype=np.float32)
    bands, height, width = values.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": bands, "dtype": "float32",
               "crs": grid.attrs["crs"], "transform": Affine(*grid.attrs["transform"]), "nodata": float("nan")}
    with MemoryFile() as memory, memory.open(**profile) as dataset:
        dataset.write(values)
        for band in range(bands):
            dataset.set_band_description(band + 1, f"emb_{band:03d}")
        copy_dataset(dataset, str(path), driver="COG", compress="DEFLATE", predictor=3)
