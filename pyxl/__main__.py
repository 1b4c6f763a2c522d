"""`python -m pyxl` is the same program as the `pyxl` console script."""

import sys

from pyxl.cli.main import main

sys.exit(main())
