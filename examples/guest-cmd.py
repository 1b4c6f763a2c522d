#!/usr/bin/env python3
"""Type commands at a guest's console, as a person at `pyxl console` would.

    guest-cmd.py DOMAIN 'tcsd' 'tpm_version'

Attaches with `$PYXL console DOMAIN` (PYXL defaults to "pyxl"), waits for the
shell prompt, types each command followed by Enter, waits for the next
prompt, prints what the console showed from the typed command on, and
detaches with Ctrl-] like xenconsole.  Exit status 1 if a prompt never came.
"""

import os
import re
import select
import shlex
import subprocess
import sys
import time

PROMPT = re.compile(rb"root@[^ \r\n]+:[^ \r\n]*# $")
TIMEOUT = float(os.environ.get("GUEST_CMD_TIMEOUT", "120"))


def read_until_prompt(proc, buf: bytearray, start: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    fd = proc.stdout.fileno()
    while not PROMPT.search(bytes(buf[start:])):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        r, _, _ = select.select([fd], [], [], min(left, 0.2))
        if r:
            data = os.read(fd, 65536)
            if not data:
                return False
            buf += data
    return True


def drain(proc, buf: bytearray, quiet: float = 0.3) -> None:
    fd = proc.stdout.fileno()
    while select.select([fd], [], [], quiet)[0]:
        data = os.read(fd, 65536)
        if not data:
            return
        buf += data


def main(argv):
    if len(argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    dom, commands = argv[0], argv[1:]
    pyxl = shlex.split(os.environ.get("PYXL", "pyxl"))
    proc = subprocess.Popen(pyxl + ["console", dom], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    buf = bytearray()
    ok = True
    try:
        # the console replays what it showed so far: normally that ends at the prompt
        if not read_until_prompt(proc, buf, 0, 2.0):
            proc.stdin.write(b"\r")              # something came after it: ask for a new one
            proc.stdin.flush()
            time.sleep(0.3)
            if not read_until_prompt(proc, buf, 0, TIMEOUT):
                sys.stdout.buffer.write(bytes(buf[-2000:]))
                print("\nguest-cmd: no shell prompt on %s" % dom, file=sys.stderr)
                return 1
            drain(proc, buf)
        for cmd in commands:
            start = len(buf)
            proc.stdin.write(cmd.encode() + b"\r")
            proc.stdin.flush()
            ok = read_until_prompt(proc, buf, start, TIMEOUT)
            out = bytes(buf[start:]).replace(b"\r\n", b"\n")
            sys.stdout.buffer.write(out if ok else out + b"\n")
            sys.stdout.flush()
            if not ok:
                print("guest-cmd: %r did not return to the prompt" % cmd, file=sys.stderr)
                return 1
        print()
        return 0
    finally:
        try:
            proc.stdin.write(b"\x1d")             # Ctrl-]: detach
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
