"""`pyxl restore` (xl_saverestore.c main_restore) and `pyxl migrate-receive`
(xl_migrate.c): the save file or incoming stream is read and checked as
xl_vmcontrol.c create_domain's restore path reads it.  The simulated host
has no domain memory to restore into, so a stream that passes xl's own
checks is refused after them."""

from __future__ import annotations

import os
import struct
import sys

TYPE_CHECKING = False      # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from pyxl.cli.xlopt import Opts

# xl.h: savefileheader_magic, SAVEFILE_BYTEORDER_VALUE, XL_MANDATORY_FLAG_*
SAVEFILE_MAGIC = b"Xen saved domain, xl format\n \0 \r"
SAVEFILE_BYTEORDER_VALUE = 0x01020304
XL_MANDATORY_FLAG_JSON = 1 << 0
XL_MANDATORY_FLAG_STREAMv2 = 1 << 1
XL_MANDATORY_FLAG_ALL = XL_MANDATORY_FLAG_JSON | XL_MANDATORY_FLAG_STREAMv2
_HEADER = struct.Struct("=32sIIII")       # struct save_file_header, host order

# xl_vmcontrol.c: the CHK_ERRNOVAL(libxl_read_exactly(...)) statements
_READ_HEADER = (713, 'libxl_read_exactly( ctx, restore_fd, &hdr, sizeof(hdr), '
                     'restore_source, "header")')
_READ_OPTDATA = (740, 'libxl_read_exactly( ctx, restore_fd, optdata_begin, '
                      'hdr.optional_data_len, restore_source, "optdata")')


def _err(text: str) -> None:
    sys.stdout.flush()
    sys.stderr.write(text)
    sys.stderr.flush()


def _read_exactly(fd: int, n: int, source: str, what: str, chk: tuple[int, str]) -> bytes | None:
    """libxl_read_exactly (libxl_utils.c) under xl's CHK_ERRNOVAL: a short
    read is EPROTO, logged by libxl and fatal to xl (None: xl exits 1)."""
    data = b""
    while len(data) < n:
        try:
            chunk = os.read(fd, n - len(data))
        except OSError as e:
            reason = os.strerror(e.errno or 0)
            _err("libxl: error: libxl_utils.c:505:libxl_read_exactly: failed to read %s"
                 " from %s: %s\n" % (what, source, reason))
            _err("xl: fatal error: xl_vmcontrol.c:%d: %s: %s\n" % (chk[0], reason, chk[1]))
            return None
        if not chunk:
            _err("libxl: error: libxl_utils.c:505:libxl_read_exactly: file/stream truncated"
                 " reading %s from %s\n" % (what, source))
            _err("xl: fatal error: xl_vmcontrol.c:%d: Protocol error: %s\n" % chk)
            return None
        data += chunk
    return data


ERROR_INVAL = -6
_FATAL = 1        # CHK_ERRNOVAL's exit(EXIT_FAILURE)


def _load(fd: int, source: str) -> int:
    """create_domain's restore path up to the memory image: the header, its
    magic, byte order and mandatory flags, then the optional data (the
    domain's config).  -> 0 if xl would go on, ERROR_INVAL (xl's
    create_domain result) if it refuses the stream, _FATAL once xl has
    exited inside a read."""
    hdr = _read_exactly(fd, _HEADER.size, source, "header", _READ_HEADER)
    if hdr is None:
        return _FATAL
    magic, byteorder, mandatory, optional, optlen = _HEADER.unpack(hdr)
    if magic != SAVEFILE_MAGIC:
        _err("File has wrong magic number - corrupt or for a different tool?\n")
        return ERROR_INVAL
    if byteorder != SAVEFILE_BYTEORDER_VALUE:
        _err("File has wrong byte order\n")
        return ERROR_INVAL
    _err("Loading new save file %s (new xl fmt info 0x%x/0x%x/%d)\n"
         % (source, mandatory, optional, optlen))
    bad = mandatory & ~XL_MANDATORY_FLAG_ALL
    if bad:
        _err("Savefile has mandatory flag(s) 0x%x which are not supported;"
             " need newer xl\n" % bad)
        return ERROR_INVAL
    optdata: bytes | None = b""
    if optlen:
        optdata = _read_exactly(fd, optlen, source, "optdata", _READ_OPTDATA)
        if optdata is None:
            return _FATAL
    if optdata:
        _err(" Savefile contains xl domain config%s\n"
             % (" in JSON format" if mandatory & XL_MANDATORY_FLAG_JSON else ""))
        if len(optdata) < 4:
            _err("Savefile truncated.\n")
            return ERROR_INVAL
        (config_len,) = struct.unpack("=I", optdata[:4])
        if len(optdata) - 4 < config_len:
            _err("Savefile truncated.\n")
            return ERROR_INVAL
    return 0


def _no_memory_image() -> int:
    """What follows the header is the domain's memory image, which only Xen
    can load: pyxl stops here."""
    from pyxl.cli.main import Globals

    _err("pyxl: command %s is not available on the simulated host\n" % Globals.command)
    return 1


def restore(opts: Opts | None, args: list[str]) -> int:
    """main_restore: [ConfigFile] CheckpointFile; then create_domain opens
    the checkpoint and checks it before anything else."""
    from pyxl.cli.main import print_help

    if len(args) == 1:
        checkpoint = args[0]
    elif len(args) == 2:
        checkpoint = args[1]
    else:
        print_help("restore")
        return 1
    try:
        fd = os.open(checkpoint, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        _err("Can't open restore file: %s\n" % os.strerror(e.errno or 0))
        return 1
    try:
        rc = _load(fd, checkpoint)
    finally:
        os.close(fd)
    return 1 if rc else _no_memory_image()


MIGRATE_RECEIVER_BANNER = b"xl migration receiver ready, send binary domain data.\n"


def migrate_receive(opts: Opts | None, args: list[str]) -> int:
    """main_migrate_receive / migrate_receive (xl_migrate.c): the banner to
    the sender on stdout, then the stream from stdin read as a restore."""
    _err("migration target: Ready to receive domain.\n")
    os.write(1, MIGRATE_RECEIVER_BANNER)
    rc = _load(0, "<incoming migration stream>")
    if rc == _FATAL:
        return 1
    if rc:
        _err("migration target: Domain creation failed (code %d).\n" % rc)
        return 1
    return _no_memory_image()
