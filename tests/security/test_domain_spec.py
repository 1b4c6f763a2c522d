"""pyxl.domain.spec in-process: what crosses to a domain process, and what a
domain process refuses to start from."""

from __future__ import annotations

import os

import pytest

from pyxl.domain import spec as domspec


def _spec(**over):
    s = domspec.make(domid=3, name="vm", uuid="u", kernel="/k", cmdline="pw=secret", memkb=1,
                     vcpus=1, paused=False, status="/s", xenbus="/x", disks=[], hv_fd=5,
                     block={})
    s.update(over)
    return s


def test_the_spec_crosses_by_fd_and_the_argv_holds_only_the_domid():
    fd = domspec.to_fd(_spec())
    argv = domspec.argv(3, fd)
    assert argv == ["pyxl-domain", "domid=3", "spec-fd=%d" % fd]
    assert "secret" not in " ".join(argv)
    assert domspec.load(argv) == _spec()
    with pytest.raises(OSError):
        os.fstat(fd)                        # load closed it


def test_a_spec_beyond_the_bound_is_refused_both_ways():
    with pytest.raises(domspec.SpecError):
        domspec.to_fd(_spec(cmdline="x" * domspec.SPEC_MAX))
    fd = os.memfd_create("big")
    os.write(fd, b" " * (domspec.SPEC_MAX + 1))
    os.lseek(fd, 0, os.SEEK_SET)
    with pytest.raises(domspec.SpecError, match="larger than"):
        domspec.load(["spec-fd=%d" % fd])


@pytest.mark.parametrize("args, data", [([], None), (["spec-fd=x"], None),
                                        (["spec-fd=%d"], b"{not json"), (["spec-fd=%d"], b"[1]")])
def test_no_or_a_bad_spec_is_a_clear_error(args, data):
    if data is not None:
        fd = os.memfd_create("bad")
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
        args = [a % fd for a in args]
    with pytest.raises(domspec.SpecError):
        domspec.load(args)
