"""The one command table.

Like Xen's tools/xl/xl_cmdtable.c, every subcommand is one row here: its name,
where its handler lives, whether it supports the global dry-run flag (-N),
whether it modifies domains (and so accepts -f), a one-line description and a
usage string.  Dispatch, `pyxl help`, `pyxl help CMD` and man/pyxl.1 are all
generated from this table and from the handlers' typer signatures (the
options), so none of them can drift from the code.

Handlers are named as "module:function" strings and imported only when their
command runs: listing or resolving commands never imports typer or any layer.
"""

from __future__ import annotations

from collections import namedtuple

# name; handler: "pyxl.cli.create:create" -- a typer-annotated function;
# can_dryrun: accepts the global -N; modifies: accepts the global -f (xl's
# "modifies" flag); desc: one line, no final full stop (xl adds it in `help
# CMD`); usage: the part after the command name in "Usage: ..."; xl: False
# for pyxl's own commands (daemon, tpm-serve, ...).
# A namedtuple rather than a dataclass: every pyxl run imports this table,
# and dataclasses (with inspect) cost ~10 ms of start-up.
Command = namedtuple("Command", "name handler can_dryrun modifies desc usage xl",
                     defaults=(True,))


COMMANDS: tuple[Command, ...] = (
    Command("create", "pyxl.cli.create:create", True, True,
            "Create a domain from config file <filename>",
            "<ConfigFile> [options] [vars]"),
    Command("list", "pyxl.cli.info:list_", False, False,
            "List information about all/some domains",
            "[options] [Domain]"),
    Command("destroy", "pyxl.cli.vmcontrol:destroy", False, True,
            "Terminate a domain immediately",
            "[options] <Domain>"),
    Command("shutdown", "pyxl.cli.vmcontrol:shutdown", False, True,
            "Issue a shutdown signal to a domain",
            "[options] <-a|Domain>"),
    Command("reboot", "pyxl.cli.vmcontrol:reboot", False, True,
            "Issue a reboot signal to a domain",
            "[options] <-a|Domain>"),
    Command("pause", "pyxl.cli.vmcontrol:pause", False, True,
            "Pause execution of a domain",
            "<Domain>"),
    Command("unpause", "pyxl.cli.vmcontrol:unpause", False, True,
            "Unpause a paused domain",
            "<Domain>"),
    Command("console", "pyxl.cli.console:console", False, False,
            "Attach to domain's console",
            "[options] <Domain>"),
    Command("info", "pyxl.cli.info:info", False, False,
            "Get information about Xen host",
            "[-n]"),
    Command("domid", "pyxl.cli.info:domid", False, False,
            "Convert a domain name to domain id",
            "<DomainName>"),
    Command("domname", "pyxl.cli.info:domname", False, False,
            "Convert a domain id to domain name",
            "<DomainId>"),
    Command("rename", "pyxl.cli.vmcontrol:rename", False, True,
            "Rename a domain",
            "<Domain> <NewDomainName>"),
    Command("dmesg", "pyxl.cli.info:dmesg", False, False,
            "Read and/or clear dmesg buffer",
            "[-c]"),
    Command("vtpm-attach", "pyxl.cli.vtpm:vtpm_attach", True, True,
            "Create a new virtual TPM device",
            "<Domain> [uuid=<uuid>] [backend=<BackDomain>]"),
    Command("vtpm-list", "pyxl.cli.vtpm:vtpm_list", False, False,
            "List virtual TPM devices for a domain",
            "<Domain(s)>"),
    Command("vtpm-detach", "pyxl.cli.vtpm:vtpm_detach", False, True,
            "Destroy a domain's virtual TPM device",
            "<Domain> <DevId|uuid>"),
    Command("uptime", "pyxl.cli.info:uptime", False, False,
            "Print uptime for all/some domains",
            "[-s] [Domain]"),
    # pyxl's own commands: the simulated host's daemons and debugging aids.
    # xenstore-*: Xen's tools/xenstore/xenstore_client.c, over the xenstored socket
    Command("xenstore-ls", "pyxl.cli.xenstore:xenstore_ls", False, False,
            "List a xenstore subtree with values (and permissions with -p)",
            "[-h] [-f] [-p] [-s] [path]", xl=False),
    Command("xenstore-read", "pyxl.cli.xenstore:xenstore_read", False, False,
            "Read xenstore values",
            "[-h] [-p] [-s] [-R] key [...]", xl=False),
    Command("xenstore-write", "pyxl.cli.xenstore:xenstore_write", False, True,
            "Write xenstore values (escapes as \\t \\x41 \\101 unless -R)",
            "[-h] [-s] [-R] key value [...]", xl=False),
    Command("xenstore-rm", "pyxl.cli.xenstore:xenstore_rm", False, True,
            "Remove xenstore nodes (and empty parents with -t)",
            "[-h] [-s] [-t] key [...]", xl=False),
    Command("xenstore-list", "pyxl.cli.xenstore:xenstore_list", False, False,
            "List the children of xenstore nodes",
            "[-h] [-p] [-s] key [...]", xl=False),
    Command("xenstore-exists", "pyxl.cli.xenstore:xenstore_exists", False, False,
            "Exit 0 if every xenstore node exists, 1 otherwise",
            "[-h] [-p] [-s] key [...]", xl=False),
    Command("xenstore-chmod", "pyxl.cli.xenstore:xenstore_chmod", False, True,
            "Set the permissions of a xenstore node (-u: and its parents, -r: and its children)",
            "[-h] [-u] [-r] [-s] key <mode [modes...]>", xl=False),
    Command("xenstore-watch", "pyxl.cli.xenstore:xenstore_watch", False, False,
            "Print the paths of xenstore watch events (-n: stop after NR)",
            "[-h] [-n NR] key", xl=False),
    Command("daemon", "pyxl.cli.daemon:daemon", False, True,
            "Run, query or stop the simulated host's daemon",
            "<start|stop|status> [options]", xl=False),
    Command("tpm-serve", "pyxl.cli.tpm:tpm_serve", False, False,
            "Serve a TPM 1.2 (or with --tpm2 a TPM 2.0) engine on a raw TCP or Unix socket",
            "--state DIR [--port P] [--unix PATH] [options]", xl=False),
    Command("help", "pyxl.cli.help:help_", False, False,
            "Print help on pyxl or on one command",
            "[command]"),
)

BY_NAME = {c.name: c for c in COMMANDS}


def lookup(name: str) -> Command | None:
    """Exact name first, then an unambiguous prefix, as xl's cmdtable_lookup."""
    if name in BY_NAME:
        return BY_NAME[name]
    hits = [c for c in COMMANDS if c.name.startswith(name)]
    return hits[0] if len(hits) == 1 and name else None
