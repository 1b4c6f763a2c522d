"""What runs inside one domain process: the runtime that connects it to the
hypervisor (xen.py, drivers/), and the kernels it can boot: Linux (linux/),
pv-grub (pvgrub.py) and the stub domains (vtpm/, vtpmmgr/, on minios.py).
Domain processes import the standard library, this package, the
hypervisor's wire ABI (pyxl.hypervisor.wire, .tis), the TPM engines
(pyxl.tpm, in the stub domains), pyxl.fsutil and cryptography: no typer,
rich or lark, so each one stays a few MB."""
