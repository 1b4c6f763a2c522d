"""The project's own oracles for Xen 4.17's config handling.

oracle.xl      the real `xl -N create` under an LD_PRELOAD shim (xlshim.c):
               messages, exit status and JSON, one process per config.
oracle.libxlu  libxlu's parser in-process via ctypes: the config language
               only, ~20 us a parse, for differential tests on many inputs.
"""
