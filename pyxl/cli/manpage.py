"""Generate man/pyxl.1 from the command table and the handlers' signatures.

    python -m pyxl.cli.manpage > man/pyxl.1

Nothing here is written by hand per command: names, usage, descriptions and
xl's option text come from pyxl/cli/table.py, the options of the commands
whose handlers declare them through typer (names, metavars, help) from
those parameters,
exit statuses from the fault table.  A test
checks that the committed page equals the generated one.
"""

from __future__ import annotations

import sys

from pyxl import __version__
from pyxl.cli import table
from pyxl.cli.main import typer_options


def esc(text: str) -> str:
    text = text.replace("\\", "\\\\").replace("-", "\\-")
    return "\n".join(("\\&" + l if l.startswith((".", "'")) else l) for l in text.split("\n"))


def render() -> str:
    from pyxl.toolstack.errors import KINDS

    L = [
        '.TH PYXL 1 "" "pyxl %s" "pyxl manual"' % __version__,
        ".SH NAME",
        "pyxl \\- Xen's xl toolstack on a simulated Xen host",
        ".SH SYNOPSIS",
        ".B pyxl",
        "[\\fB\\-vfNtT\\fR] \\fIsubcommand\\fR [\\fIargs\\fR]",
        ".SH DESCRIPTION",
        esc("pyxl manages domains the way xl(1) does, with xl's commands, output formats, "
            "messages and exit statuses, so scripts written for xl work with s/xl/pyxl/. "
            "The host is simulated: one daemon per host root holds the hypervisor "
            "(domains, xenstore, event channels, grants, consoles); each domain is a "
            "process of its own. The first command that needs the daemon starts it."),
        ".PP",
        esc("Every xl 4.17 subcommand is accepted, with xl's options and argument checks: "
            "options end at the first argument that is not one (as in xl, `pyxl list d -l` "
            "has two arguments), arguments beyond those a command uses are ignored, and "
            "a command may be abbreviated to a prefix no other xl command shares. pyxl's "
            "own commands (PYXL SUBCOMMANDS) are recognised by their full name only. "
            "pyxl help lists the commands, pyxl help COMMAND (or pyxl COMMAND -h) "
            "describes one."),
        ".PP",
        esc("The simulated host has no FLASK security module, no pciback driver and no "
            "PCI devices: getenforce, setenforce and loadpolicy answer as Xen without "
            "FLASK does (\"Flask XSM disabled\", exit status 255), pci-assignable-list "
            "lists nothing. The simulated Linux guest cannot suspend (its userland runs "
            "real programs that cannot be checkpointed; see pyxl-vtpm(7), Save and "
            "migration): save and migrate write what xl writes, ask the guest to suspend, "
            "and after libxl's 60 seconds fail with xl's messages, the domain still "
            "running; remus fails at libxl's first check (no network buffering, no "
            "COLO, a disk that is not a DRBD device) or at the suspend, as migrate. "
            "restore and migrate-receive make the domain and read the stream as xl, libxl "
            "and libxc read it, and fail where the stream save and migrate write ends "
            "(libxc's first record) with their messages, the domain destroyed; a saved "
            "guest's memory cannot be loaded (pyxl-vtpm(7), Restoring a saved domain)."),
        ".PP",
        esc("devd runs in the host's dom0 as libxl's device-events handler: each vbd or "
            "vif backend written under dom0's backend directory that reaches InitWait "
            "gets its hotplug script's end (hotplug-status connected), and one that went "
            "offline and Closed is removed from xenstore. Without -F the command returns "
            "once the daemon has started, which logs to var/log/pyxl/xldevd.log (0600); "
            "-p FILE writes its pid to FILE, never through a symbolic link. SIGTERM stops "
            "it."),
        ".PP",
        esc("A domain's console output goes onto its console ring page, as on Xen (struct "
            "xencons_interface: 2048 bytes of output), and stays there until the daemon "
            "has written it to console/guest-NAME.log and its console buffer. Output a "
            "killed daemon had not taken is taken by the next one, when it adopts the "
            "domain, before anything newer: none is lost, and a byte is logged twice only "
            "if the daemon was killed between writing it to the log and marking it taken. "
            "What does not fit on the ring while no daemon takes it waits in the domain, "
            "which never stops for it: the newest 64 KiB are kept, older bytes dropped. "
            "Keyboard input (pyxl console) goes onto the same page, as on Xen (its 1024 "
            "bytes of input), and is the domain's once it is there: input a killed daemon "
            "had put on the page is read by the domain, once and in order, after the next "
            "daemon adopts it. What does not fit waits in the daemon (at most 64 KiB, "
            "oldest dropped) and follows as the domain reads; input the killed daemon was "
            "still holding there is lost."),
        ".SH GLOBAL OPTIONS",
        ".TP", ".B \\-v", "Verbose.",
        ".TP", ".B \\-N", "Dry run: print what would be done (commands that support it).",
        ".TP", ".B \\-f", "Force (commands that modify domains).",
        ".TP", ".B \\-t, \\-T", "Timestamps.",
    ]
    for title, xl in (("DOMAIN SUBCOMMANDS", True), ("PYXL SUBCOMMANDS", False)):
        L.append(".SH " + title)
        for cmd in table.COMMANDS:
            if cmd.xl != xl:
                continue
            usage = " ".join(cmd.usage.split("\n")[0].split())
            L += [".TP", "\\fB%s\\fR %s" % (esc(cmd.name), esc(usage)),
                  esc(cmd.desc.replace("\n", " ")) + "."]
            more = cmd.usage.split("\n", 1)[1:]       # console, vncviewer: options in the usage
            text = "\n".join(t.strip("\n") for t in more + [cmd.options or ""] if t.strip())
            if not cmd.typer:
                if text:
                    L += [".RS", ".nf", esc(text), ".fi", ".RE"]
                continue
            opts = typer_options(cmd)
            if opts:
                L.append(".RS")
                for names, helptext in opts:
                    L += [".TP", ".B " + esc(names), esc(helptext) if helptext else "\\&"]
                L.append(".RE")
    L += [
        ".SH ENVIRONMENT",
        ".TP", ".B PYXL_ROOT",
        esc("Root of the simulated host (default /). Everything lives below it: "
            "run/pyxl (control socket, 0600; lock), var/lib/pyxl (domain table), "
            "var/log/pyxl (daemon log, xl-NAME.log monitor logs, console/guest-NAME.log). "
            "These directories are the daemon's own (0700, files 0600): pyxl refuses to "
            "start a host whose directories, or any directory above them, another user "
            "owns or may write (a sticky directory such as /tmp excepted on the way). "
            "In file names NAME is the domain name with every byte other than letters, "
            "digits and -_.+,=@ written as %XX (and a leading dot as %2E)."),
        ".TP", ".B PYXL_HOST_MEMORY, PYXL_HOST_CPUS",
        esc("Size of a new host, in MiB and CPUs (default 16384 and 2)."),
        ".TP", ".B PYXL_DEVICE_TIMEOUT",
        esc("Seconds create, vtpm-attach and vtpm-detach wait for a device's backend "
            "(libxl's LIBXL_INIT_TIMEOUT, default 10)."),
        ".SH EXIT STATUS",
        esc("0 on success; otherwise xl's status for the failure:"),
    ]
    for k in sorted(KINDS.values(), key=lambda k: k.code):
        lines = k.message.strip().split("\n")
        first = lines[-1] if k.name == "DESTROY_FAILED" else lines[0]   # xl's own words
        L += [".TP", ".B %s (%d)" % (esc(k.name), k.exit), esc(first)]
    L += [".SH SEE ALSO", "xl(1), xl.cfg(5), xenstore(7)", ""]
    return "\n".join(L)


if __name__ == "__main__":
    sys.stdout.write(render())
