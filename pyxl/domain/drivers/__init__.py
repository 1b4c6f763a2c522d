"""Split-driver plumbing shared by frontends and backends (xenbus, tpmif)."""
