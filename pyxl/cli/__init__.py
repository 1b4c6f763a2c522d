"""The `pyxl` command line: one command table (table.py) drives dispatch, help and man/pyxl.1."""
