"""`save`, `migrate` and `remus` on the simulated host, whose Linux guest
cannot suspend: its kernel is built without CONFIG_HIBERNATE_CALLBACKS, so
drivers/xen/manage.c neither advertises control/feature-suspend nor
acknowledges a "suspend" request, and libxl's suspend times out after its
60 s (libxl_dom_suspend.c domain_suspend_common_pvcontrol_suspending)."""

from __future__ import annotations


def test_guest_ignores_suspend_and_does_not_acknowledge_it(host):
    """manage.c shutdown_handler: "Only acknowledge commands which we are
    prepared to handle"; the request stays, the guest logs (pr_info, on the
    console at Debian's default loglevel 7) and goes on running."""
    assert host.create("vm").returncode == 0
    host.wait_for(lambda: "login:" in host.console_log("vm"), what="boot")
    host.wait_for(lambda: host.run("xenstore-read", "/local/domain/1/control/feature-poweroff")
                  .stdout == "1\n", what="the guest's control watch")
    assert host.run("xenstore-read", "/local/domain/1/control/feature-suspend").stdout == "\n"
    assert host.run("xenstore-write", "/local/domain/1/control/shutdown", "suspend").returncode == 0
    host.wait_for(lambda: "xen:manage: Ignoring shutdown request: suspend"
                  in host.console_log("vm"), what="the guest's answer")
    assert host.run("xenstore-read", "/local/domain/1/control/shutdown").stdout == "suspend\n"
    assert host.domains()["vm"]["reason"] is None
    # a request it handles is still acknowledged and obeyed
    assert host.run("xenstore-write", "/local/domain/1/control/shutdown", "poweroff").returncode == 0
    host.wait_for(lambda: "vm" not in host.domains(), what="poweroff")
