"""The ``rsembed-db`` command line."""
