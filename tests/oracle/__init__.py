"""The project's own oracle: the real Xen 4.17 `xl`, run as a dry run."""
