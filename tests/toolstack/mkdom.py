"""Test helper: `python mkdom.py '<libxl json>' [-c] [-p] [-e] [-F]` calls
pyxl.toolstack.create.create_domain the way `pyxl create` does
after parsing, so the toolstack is tested without depending on the config
layer's parser."""

import sys

from pyxl.toolstack.create import create_domain

flags = set(sys.argv[2:])
sys.exit(create_domain(sys.argv[1], config_file="test.cfg", console="-c" in flags, paused="-p" in flags,
                       monitor="-e" not in flags, foreground="-F" in flags))
