#!/usr/bin/env python3
"""Drive a domain console the way a person at the terminal would.

    console.py until TEXT  -- create -c vtpmmgr-stubdom.cfg   # wait for TEXT, detach
    console.py type CMD... -- console domu                    # type at the shell prompt
    console.py show        -- console domu-vtpm               # print what is new, detach

Everything after `--` is a pyxl command line that ends up attached to a
console (`create -c ...` or `console DOM`); $PYXL (default "pyxl") is the
program.  Like a pty, a console shows what nobody has read yet: the whole
history is in the console log (var/log/pyxl/console/guest-NAME.log).  The console's output is copied to stdout as it arrives (for
`type`, from the first typed command on).  Detaching is Ctrl-] as with
xenconsole, so the domains keep running.  Exit status 1 when TEXT or a
shell prompt does not appear within $CONSOLE_TIMEOUT seconds (120), or
the pyxl command's own status if it failed before attaching.
"""

import os
import re
import select
import shlex
import subprocess
import sys
import time

PROMPT = re.compile(rb"root@[^ \r\n]+:[^ \r\n]*# $")
TIMEOUT = float(os.environ.get("CONSOLE_TIMEOUT", "120"))


class Console:
    def __init__(self, argv, echo=True):
        pyxl = shlex.split(os.environ.get("PYXL", "pyxl"))
        self.proc = subprocess.Popen(pyxl + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.buf = bytearray()
        self.echo = echo
        self.eof = False

    def _read(self, timeout):
        fd = self.proc.stdout.fileno()
        if self.eof or not select.select([fd], [], [], timeout)[0]:
            return False
        data = os.read(fd, 65536)
        if not data:
            self.eof = True
            return False
        self.buf += data
        if self.echo:
            sys.stdout.buffer.write(data.replace(b"\r\n", b"\n"))
            sys.stdout.flush()
        return True

    def wait(self, done, start=0, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while not done(bytes(self.buf[start:])):
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                return False
            self._read(min(left, 0.2))
        return True

    def drain(self, quiet=0.5):
        while self._read(quiet):
            pass

    def type(self, text):
        self.proc.stdin.write(text.encode() + b"\r")
        self.proc.stdin.flush()

    def detach(self):
        try:
            self.proc.stdin.write(b"\x1d")              # Ctrl-]
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return 1


def at_prompt(data):
    return PROMPT.search(data) is not None


def main(argv):
    if "--" not in argv or not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    i = argv.index("--")
    mode, args, cmd = argv[0], argv[1:i], argv[i + 1:]
    if mode == "until" and len(args) == 1:
        con = Console(cmd)
        ok = con.wait(lambda b: args[0].encode() in b)
    elif mode == "show" and not args:
        con = Console(cmd)
        con.wait(lambda b: len(b) > 0, timeout=3.0)   # pyxl takes a moment to attach
        con.drain()
        ok = True
    elif mode == "type" and args:
        con = Console(cmd, echo=False)
        # the console replays what it showed so far: normally that ends at a prompt
        ok = con.wait(at_prompt, timeout=2.0)
        if not ok and not con.eof:
            con.type("")
            ok = con.wait(at_prompt)
            con.drain(0.3)
        con.echo = True
        for line in args:
            if not ok:
                break
            start = len(con.buf)
            con.type(line)
            ok = con.wait(at_prompt, start)
        print()
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    rc = con.detach()
    if not ok:
        if con.eof and rc:
            return rc                        # pyxl itself failed (its message is on stderr)
        print("console.py: %s did not show %s in time" % (" ".join(cmd),
              repr(args[0]) if mode == "until" else "a shell prompt"), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
