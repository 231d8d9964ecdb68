"""One process-wide lock for NetCDF (HDF5) file access.

The HDF5 library under netCDF4 is not thread-safe and netCDF4 releases the GIL, so two
threads writing NetCDF at once (the export pool, a service serving two requests) can
crash the process. Every NetCDF read and write in the package holds this lock.
"""

from __future__ import annotations

import threading

HDF5_LOCK = threading.Lock()
