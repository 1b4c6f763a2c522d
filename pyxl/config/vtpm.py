"""vtpm= specifications (xl_parse.c, the vtpm block of parse_config_data).

"backend=DOMAIN[,uuid=UUID]": items split with strtok(","), leading blanks
skipped; the first item without '=' silently ends the spec.  The backend is
kept as a name (backend_domname); resolving it to a domid is the
toolstack's job when the device is attached.
"""

from __future__ import annotations

from pyxl.config.cstr import strtok
from pyxl.config.errors import ConfigError
from pyxl.config.model import DeviceVtpm
from pyxl.config.uuidparse import parse_uuid


def parse_vtpm(spec: str, devid: int) -> DeviceVtpm:
    vtpm = DeviceVtpm(devid=devid)
    got_backend = False
    for item in strtok(spec, ","):
        item = item.lstrip(" ")
        key, eq, val = item.partition("=")
        if not eq:
            break
        if key == "backend":
            vtpm.backend_domname = val
            got_backend = True
        elif key == "uuid":
            u = parse_uuid(val)
            if u is None:
                raise ConfigError("Failed to parse vtpm UUID: %s" % val)
            vtpm.uuid = u
        else:
            raise ConfigError("Unknown string `%s' in vtpm spec" % key)
    if not got_backend:
        raise ConfigError("vtpm spec missing required backend field!")
    return vtpm
