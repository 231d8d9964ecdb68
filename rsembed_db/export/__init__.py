"""``export_batch``: many ROIs x many models into files (npz, NetCDF, Parquet) or the store."""

from rsembed_db.export.batch import export_batch

__all__ = ["export_batch"]
