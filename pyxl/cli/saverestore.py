"""`pyxl save` and `pyxl restore` (xl_saverestore.c main_save, main_restore)
and `pyxl migrate-receive` (xl_migrate.c).

save writes xl's header and the domain's configuration, then libxl's and
libxc's stream headers, and asks the guest to suspend; the simulated Linux
guest cannot (its kernel has no CONFIG_HIBERNATE_CALLBACKS: it neither
advertises nor acknowledges a suspend request), so after libxl's 60 s the
request is cancelled and xl prints what it prints then, leaves the file as
far as it got, resumes the domain (which was never suspended) and exits 1.

restore and migrate-receive read the save file or incoming stream as
xl_vmcontrol.c create_domain's restore path reads it, make the domain,
and read libxl's and libxc's streams after xl's header
(pyxl.cli.streamread).  The simulated host has no domain memory to
restore into: the restore fails where the stream save writes ends (libxc's
first record), or is refused at a record that carries a guest's memory,
and the domain is destroyed."""

from __future__ import annotations

import os
import struct
import sys

from pyxl.cli.streamread import (DHDR_TYPE_X86_PV, IHDR_ID, IHDR_MARKER, IHDR_OPT_LITTLE_ENDIAN,
                                 IHDR_VERSION, REC_TYPE_LIBXC_CONTEXT, RESTORE_STREAM_IDENT,
                                 RESTORE_STREAM_VERSION, XC_PAGE_SHIFT)

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


ERROR_FAIL = -3            # libxl_types.idl libxl_error
ERROR_INVAL = -6
_FATAL = 1        # CHK_ERRNOVAL's exit(EXIT_FAILURE)
POS_REBUILD = "libxl_create.c:1640:domcreate_rebuild_done"
POS_COLO_PV = "libxl_create.c:1437:domcreate_bootloader_done"


class _Exit(Exception):
    """xl exits inside create_domain (CHK_ERRNOVAL, parse_config_data)."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def _load(fd: int, source: str) -> tuple[int, bytes | None]:
    """create_domain's restore path through xl's own header: its magic,
    byte order and mandatory flags, then the optional data (the domain's
    config).  -> (0, the saved config or None) if xl goes on, (ERROR_INVAL,
    None) if it refuses the stream (xl's create_domain result); raises _Exit
    once xl has exited inside a read."""
    hdr = _read_exactly(fd, _HEADER.size, source, "header", _READ_HEADER)
    if hdr is None:
        raise _Exit(_FATAL)
    magic, byteorder, mandatory, optional, optlen = _HEADER.unpack(hdr)
    if magic != SAVEFILE_MAGIC:
        _err("File has wrong magic number - corrupt or for a different tool?\n")
        return ERROR_INVAL, None
    if byteorder != SAVEFILE_BYTEORDER_VALUE:
        _err("File has wrong byte order\n")
        return ERROR_INVAL, None
    _err("Loading new save file %s (new xl fmt info 0x%x/0x%x/%d)\n"
         % (source, mandatory, optional, optlen))
    bad = mandatory & ~XL_MANDATORY_FLAG_ALL
    if bad:
        _err("Savefile has mandatory flag(s) 0x%x which are not supported;"
             " need newer xl\n" % bad)
        return ERROR_INVAL, None
    optdata: bytes | None = b""
    if optlen:
        optdata = _read_exactly(fd, optlen, source, "optdata", _READ_OPTDATA)
        if optdata is None:
            raise _Exit(_FATAL)
    config = None
    if optdata:
        _err(" Savefile contains xl domain config%s\n"
             % (" in JSON format" if mandatory & XL_MANDATORY_FLAG_JSON else ""))
        if len(optdata) < 4:
            _err("Savefile truncated.\n")
            return ERROR_INVAL, None
        (config_len,) = struct.unpack("=I", optdata[:4])
        if len(optdata) - 4 < config_len:
            _err("Savefile truncated.\n")
            return ERROR_INVAL, None
        config = optdata[4:4 + config_len]
    return mandatory, config


def _domain_config(mandatory: int, saved: bytes | None, config_file: str | None) -> dict | int:
    """create_domain between the header and libxl: the config file given
    on the command line, else the saved one ("Parsing config from ...");
    JSON as libxl_domain_config_from_json reads it (which stops at the
    config's '\\0'; xl does not check its result), xl's config language
    as parse_config_data does.  -> the libxl_domain_config JSON object,
    or create_domain's result where it returns; raises _Exit where xl
    exits."""
    import json

    from pyxl.config import ConfigError, load_data, to_json

    if config_file is not None:
        if config_file == "/dev/null":
            text = b""
        else:
            try:
                with open(config_file, "rb") as f:
                    text = f.read()
            except OSError as e:
                _err("Failed to read config file: %s: %s\n"
                     % (config_file, os.strerror(e.errno or 0)))
                return ERROR_FAIL
        source, in_json = config_file, False
    else:
        if saved is None:
            _err("Config file not specified and none in save file\n")
            return ERROR_INVAL
        text, source = saved, "<saved>"
        in_json = bool(mandatory & XL_MANDATORY_FLAG_JSON)
    _err("Parsing config from %s\n" % source)
    if in_json:
        try:
            config = json.loads(text.split(b"\0", 1)[0].decode("utf-8", "surrogateescape"))
        except ValueError:
            config = None
        return config if isinstance(config, dict) else {}
    try:
        d_config = load_data(text, source, warn=lambda line: _err(line + "\n"),
                             warn_partial=_err)
    except ConfigError as e:
        _err(e.text())
        raise _Exit(e.exit_code) from None
    return json.loads(to_json(d_config))


def create_restoring(fd: int, source: str, config_file: str | None, migrating: bool,
                     colo: bool = False) -> int:
    """create_domain (xl_vmcontrol.c) restoring from FD, then
    libxl_domain_create_restore (libxl_create.c): the domain made
    (initiate_domain_create), its stream read (libxl__stream_read_start,
    pyxl.cli.streamread), which on the simulated host never completes the
    restore: domcreate_stream_done fails, domcreate_rebuild_done logs it,
    domcreate_complete destroys the domain, and xl's error_out destroys it
    again (libxl_domain_destroy, which finds no such domain).  A COLO
    stream (migrate-receive --colo) of a PV domain fails before the stream
    is read (domcreate_bootloader_done).  -> xl's create_domain result
    (< 0); raises _Exit where xl exits."""
    import json

    from pyxl.cli._common import call
    from pyxl.cli.streamread import Refused
    from pyxl.toolstack.errors import Fault

    mandatory, saved = _load(fd, source)
    if mandatory < 0:
        return mandatory
    config = _domain_config(mandatory, saved, config_file)
    if isinstance(config, int):
        return config
    c_info = config.setdefault("c_info", {})
    if migrating and c_info.get("name"):
        # when we receive a domain we get its name from the config file;
        # and we receive it to a temporary name
        c_info["name"] = "%s--incoming" % c_info["name"]
    try:
        domid = call("restore_make", config=json.dumps(config))["domid"]
    except Fault as f:
        f.report()
        return ERROR_FAIL
    hvm = c_info.get("type", "pv") != "pv"
    if colo and not hvm:
        _logd(POS_COLO_PV, domid, "COLO only supports HVM, unable to restore domain")
        rc = ERROR_FAIL
    else:
        try:
            rc = _read_streams(fd, mandatory, hvm)
        except Refused as r:
            _err("pyxl: the simulated host cannot restore domain %d: %s\n" % (domid, r))
            _destroy(domid, quiet=True)
            return ERROR_FAIL
    _logd(POS_REBUILD, domid, "cannot (re-)build domain: %d" % rc)
    _destroy(domid)
    return ERROR_FAIL


def _read_streams(fd: int, mandatory: int, hvm: bool) -> int:
    """libxl__stream_read_start (a v2 stream; libxl's conversion of an
    older one is not there): -> the stream's rc; raises Refused."""
    from pyxl.cli.streamread import Refused, stream_read

    if not mandatory & XL_MANDATORY_FLAG_STREAMv2:
        raise Refused("a stream of Xen before 4.6 (libxl's legacy conversion)")
    return stream_read(fd, hvm)


def _destroy(domid: int, quiet: bool = False) -> None:
    """xl's error_out: libxl_domain_destroy of the domain libxl has already
    destroyed: its log lines (xl's main_destroy would add its own)."""
    from pyxl.cli._common import call
    from pyxl.toolstack.errors import Fault

    try:
        call("destroy", dom=str(domid))
    except Fault as f:
        if f.name != "DESTROY_FAILED":
            raise
        if not quiet:
            _err("".join(f.message.splitlines(True)[:-1]))


def restore(opts: Opts | None, args: list[str]) -> int:
    """main_restore: [ConfigFile] CheckpointFile; then create_domain opens
    the checkpoint and restores from it."""
    from pyxl.cli.main import print_help

    config_file = None
    if len(args) == 1:
        checkpoint = args[0]
    elif len(args) == 2:
        config_file, checkpoint = args
    else:
        print_help("restore")
        return 1
    try:
        fd = os.open(checkpoint, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        _err("Can't open restore file: %s\n" % os.strerror(e.errno or 0))
        return 1
    try:
        create_restoring(fd, checkpoint, config_file, migrating=False)
    except _Exit as e:
        return e.status
    finally:
        os.close(fd)
    return 1                   # create_domain < 0: exit(EXIT_FAILURE)


MIGRATE_RECEIVER_BANNER = b"xl migration receiver ready, send binary domain data.\n"


def migrate_receive(opts: Opts | None, args: list[str]) -> int:
    """main_migrate_receive / migrate_receive (xl_migrate.c): the banner to
    the sender on stdout, then the stream from stdin restored as
    create_domain restores it."""
    colo = 256 in {k for k, _ in opts or []}        # --colo
    _err("migration target: Ready to receive domain.\n")
    os.write(1, MIGRATE_RECEIVER_BANNER)
    try:
        rc = create_restoring(0, "<incoming migration stream>", None, migrating=True, colo=colo)
    except _Exit as e:
        return e.status
    _err("migration target: Domain creation failed (code %d).\n" % rc)
    return 1


# -- save (xl_saverestore.c save_domain) --------------------------------------

ERROR_GUEST_TIMEDOUT = -8      # libxl_types.idl libxl_error

# where libxl logs what follows (Debian's libxenlight 4.17: see
# tests/toolstack/test_libxl_positions.py)
_NO_ACK = ("libxl_dom_suspend.c:269:domain_suspend_common_pvcontrol_suspending",
           "guest didn't acknowledge suspend, cancelling request")
_NO_SUSPEND = "libxl_dom_suspend.c:372:suspend_common_wait_guest_timeout"
_DESTROYED = "libxl_dom_suspend.c:342:suspend_common_wait_guest_check"
_SAVE_DONE = "libxl_stream_write.c:347:libxl__xc_domain_save_done"
_RESUME_DONE = "libxl_dom_suspend.c:666:domain_resume_done"


def _logd(pos: str, domid: int, msg: str) -> None:
    """LOGD(ERROR, domid, ...): "libxl: error: FILE:LINE:FUNC: Domain N:MSG"."""
    _err("libxl: error: %s: Domain %d:%s\n" % (pos, domid, msg))


def domain_type_error(domid: int) -> None:
    """libxl__domain_type's log line for a domain that is not there (the
    fault table's text, which unpause prints alone)."""
    from pyxl.toolstack.errors import Fault

    _err(Fault("UNPAUSE_NO_DOMAIN", domid=domid).message + "\n")


def _xc_error(msg: str) -> None:
    """libxc's ERROR()/PERROR() (xc_private.c xc_reportv): context "xc", the
    code's description XC_INTERNAL_ERROR appended."""
    _err("xc: error: %s: Internal error\n" % msg)


def find(dom: str) -> dict | None:
    """find_domain (xl_utils.c) and the domain's row as `list -l` gives it;
    None for a domain id that names no domain."""
    from pyxl.cli._common import call
    from pyxl.toolstack.errors import Fault

    try:
        rows = call("list", dom=dom, long=True)
    except Fault as f:
        if f.name == "NO_SUCH_DOMID":
            return None
        raise
    return dict(rows[0])


def config_data(d: dict, preserve_domid: bool, override: str | None) -> bytes:
    """save_domain_core_begin: the domain's configuration as libxl JSON, from
    OVERRIDE (parsed as xl parses a config file) or as
    libxl_retrieve_domain_configuration gives it; c_info.domid is the
    domain's id with -D, else 0.  Ends xl (SystemExit) where xl exits."""
    if override is not None:
        from pyxl.config import ConfigError, load_data, to_json

        try:
            with open(override, "rb") as f:
                text = f.read()
        except OSError:
            _err("unable to read overridden config file\n")
            raise SystemExit(1) from None
        try:
            d_config = load_data(text, override, warn=lambda line: _err(line + "\n"),
                                 warn_partial=_err)
        except ConfigError as e:
            _err(e.text())
            raise SystemExit(e.exit_code) from None
        d_config.c_info.domid = d["domid"] if preserve_domid else 0
        json_text = to_json(d_config)
    else:
        from pyxl.cli.info import retrieved_config
        from pyxl.config.libxl_json import render

        d = dict(d, config=dict(d.get("config") or {}))
        c_info = dict(d["config"].get("c_info") or {})
        c_info.pop("domid", None)           # 0, libxl's default, is not written
        if preserve_domid:
            c_info["domid"] = d["domid"]
        d["config"]["c_info"] = c_info
        json_text = render(retrieved_config(d))
    return json_text.encode("utf-8", "surrogateescape") + b"\0"   # with its '\0'


# xl_saverestore.c save_domain_core_writeconfig: its CHK_ERRNOVAL(libxl_write_exactly(...))
_WRITE_HEADER = (112, 'libxl_write_exactly( ctx, fd, &hdr, sizeof(hdr), source, "header")')
_WRITE_OPTDATA = (114, 'libxl_write_exactly( ctx, fd, optdata_begin, hdr.optional_data_len, '
                       'source, "header")')


def write_config(fd: int, source: str, config: bytes) -> bool:
    """save_domain_core_writeconfig: xl's header, then the optional data (the
    config's length and the config).  False where xl has exited (1)."""
    optdata = struct.pack("=I", len(config)) + config
    mandatory = XL_MANDATORY_FLAG_STREAMv2 | (XL_MANDATORY_FLAG_JSON if config else 0)
    hdr = _HEADER.pack(SAVEFILE_MAGIC, SAVEFILE_BYTEORDER_VALUE, mandatory, 0, len(optdata))
    for chunk, chk in ((hdr, _WRITE_HEADER), (optdata, _WRITE_OPTDATA)):
        if not _write_exactly(fd, chunk, source, "header", chk):
            return False
    _err("Saving to %s new xl format (info 0x%x/0x%x/%d)\n" % (source, mandatory, 0, len(optdata)))
    return True


def _write_exactly(fd: int, data: bytes, source: str, what: str, chk: tuple[int, str]) -> bool:
    """libxl_write_exactly (libxl_utils.c, whose message says "from" for
    writes too) under xl's CHK_ERRNOVAL."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except InterruptedError:
            continue
        except OSError as e:
            reason = os.strerror(e.errno or 0)
            _err("libxl: error: libxl_utils.c:506:libxl_write_exactly: failed to write %s"
                 " from %s: %s\n" % (what, source, reason))
            _err("xl: fatal error: xl_saverestore.c:%d: %s: %s\n" % (chk[0], reason, chk[1]))
            return False
        view = view[n:]
    return True


def _stream_start(fd: int, domid: int) -> None:
    """What reaches the stream before the guest is asked to suspend:
    libxl__stream_write_start's header and the LIBXC_CONTEXT record
    (libxl_stream_write.c), then the save helper's xc_domain_save, which
    logs at info and writes libxc's image and domain headers
    (xg_sr_save.c save, write_headers).  Further records (the guest's
    static data) describe memory the simulated host does not have."""
    from pyxl.hypervisor.host import XEN_MAJOR, XEN_MINOR

    data = struct.pack(">QII", RESTORE_STREAM_IDENT, RESTORE_STREAM_VERSION, 0)
    data += struct.pack("=II", REC_TYPE_LIBXC_CONTEXT, 0)
    try:
        os.write(fd, data)
    except OSError:
        pass
    _err("xc: info: Saving domain %d, type x86 PV\n" % domid)
    data = struct.pack("<Q", IHDR_MARKER) + struct.pack(">IIH", IHDR_ID, IHDR_VERSION,
                                                         IHDR_OPT_LITTLE_ENDIAN) + bytes(6)
    data += struct.pack("=IHHII", DHDR_TYPE_X86_PV, XC_PAGE_SHIFT, 0, XEN_MAJOR, XEN_MINOR)
    try:
        os.write(fd, data)
    except OSError:
        pass


def domain_suspend(domid: int, fd: int) -> int:
    """libxl_domain_suspend (libxl_domain.c) of a PV domain, as xl sees it:
    the stream's start, then the guest's suspend (the daemon asks and waits,
    pyxl.toolstack.suspend).  -> libxl's rc.

    An unacknowledged request is cancelled with rc 0 left in
    domain_suspend_common_pvcontrol_suspending, so the helper's suspend
    callback reports success; xc_domain_save then finds the domain not
    suspended (xg_sr_save.c suspend_domain).  A guest that acknowledges
    (mini-os does, whatever the request) and then does not shut down for a
    suspend fails the callback (suspend_common_wait_guest_check, _timeout).
    The save fails with the errno the helper had, which on the simulated
    host no call in it set (0); libxl__xc_domain_save_done makes the result
    ERROR_GUEST_TIMEDOUT if the guest never responded."""
    from pyxl.cli._common import call

    _stream_start(fd, domid)
    got = call("suspend", dom=str(domid))
    if not got["responded"]:
        _logd(_NO_ACK[0], domid, _NO_ACK[1])
        _xc_error("Domain has not been suspended: shutdown 0, reason 0")
        rc = ERROR_GUEST_TIMEDOUT
    else:
        if got["event"] == "timeout":
            _logd(_NO_SUSPEND, domid, "guest did not suspend, timed out")
            rc = ERROR_GUEST_TIMEDOUT
        elif got["event"] == "destroyed":
            # LOGED: xc_domain_getinfolist found no such domain without
            # failing, so the errno is whatever libxl had; pyxl says ESRCH's
            _logd(_DESTROYED, domid, "guest we were suspending has been destroyed:"
                  " No such process")
            rc = ERROR_FAIL
        else:                          # shut down for another reason (logged at debug)
            rc = ERROR_FAIL
        _xc_error("save callback suspend() failed: 0")
    _xc_error("Save failed (0 = Success)")
    _logd(_SAVE_DONE, domid, "saving domain: %s: Success" % (
        "domain responded to suspend request" if got["responded"]
        else "domain did not respond to suspend request"))
    return rc


def domain_resume(domid: int) -> int:
    """libxl_domain_resume(ctx, domid, suspend_cancel=1): libxl__domain_type,
    then xc_domain_resume's cooperative path, which first checks that the
    domain is shut down for a suspend (xg_resume.c modify_returncode) --
    no domain of the simulated host ever is."""
    d = find(str(domid))
    if d is None:
        domain_type_error(domid)
        return ERROR_FAIL
    reason = d.get("reason")
    _xc_error("Dom %d not suspended: (shutdown %d, reason %d)"
              % (domid, reason is not None, reason or 0))
    _logd(_RESUME_DONE, domid, "xc_domain_resume failed: Invalid argument")
    return ERROR_FAIL


def save(opts: Opts | None, args: list[str]) -> int:
    """main_save and save_domain: [-c] [-p] [-D] Domain CheckpointFile [ConfigFile]."""
    from pyxl.cli._common import faults
    from pyxl.cli.main import print_help

    flags = {k for k, _ in (opts or [])}
    if len(args) > 3:
        print_help("save")
        return 1
    return faults(_save)(args, "D" in flags)


def _save(args: list[str], preserve_domid: bool) -> int:
    d = find(args[0])
    if d is None:
        _err("unable to retrieve domain configuration\n")
        return 1
    domid = d["domid"]
    filename = args[1]
    try:
        config = config_data(d, preserve_domid, args[2] if len(args) >= 3 else None)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        fd = os.open(filename, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError:
        _err("Failed to open temp file %s for writing\n" % filename)
        return 1
    try:
        if not write_config(fd, filename, config):
            return 1
        domain_suspend(domid, fd)
    finally:
        os.close(fd)
    # no suspend succeeds on the simulated host (rc < 0): -c and -p, which
    # say what becomes of a saved domain, do not come into it
    _err("Failed to save domain, resuming domain\n")
    domain_resume(domid)
    return 1
