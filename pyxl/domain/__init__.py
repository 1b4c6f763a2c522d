"""What runs inside one domain process: the runtime that connects it to the
hypervisor, and the kernels it can boot (linux/, later the stub domains).
Domain processes import only the standard library, this package and the
leaf pyxl.fsutil: no typer, rich or lark, so each one stays a few MB."""
