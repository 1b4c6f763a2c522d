#!/usr/bin/env bash
# examples/walkthrough.sh [DIR]: Xen's vTPM guide (docs/misc/vtpm.txt), step
# by step, with pyxl in place of xl.
#
# The guide's configuration files (vtpmmgr-stubdom.cfg, vtpm.cfg, domu.cfg next
# to this script) are used unchanged.  Their disk images and the guest kernel
# live where the guide puts them (/var/vtpmmgr-stubdom.img,
# /home/user/domu/vtpm.img, /home/user/domu/vmlinuz) -- below DIR when one is
# given, or below $PYXL_ROOT when that is set, passed to `pyxl create` as
# KEY=VALUE overrides the way xl takes them.  Without DIR or PYXL_ROOT it must
# run as root and writes the guide's own paths.
#
#   PYXL=...        the pyxl command (default: pyxl)
#   KEEP_RUNNING=1  leave the three domains running at the end
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYXL=${PYXL:-pyxl}
export PYXL
pyxl() { command $PYXL "$@"; }   # `command`: PYXL=pyxl must not call this function again
con() { python3 "$here/console.py" "$@"; }
console_log() { echo "${PYXL_ROOT:-}/var/log/pyxl/console/guest-$1.log"; }
step() { printf '\n### %s\n' "$*"; }
show() { printf '# %s\n' "$*"; }

dir=${1:-${PYXL_ROOT:-}}
if [ -z "$dir" ]; then
    [ "$(id -u)" = 0 ] || { echo "walkthrough: give a DIR or run as root (the guide writes /var and /home/user)" >&2; exit 2; }
    dir=/
fi
dir=$(cd "$dir" && pwd)
p() { local x="$dir/$1"; echo "${x//\/\//\/}"; }   # a guide path below DIR
mgr_img=$(p var/vtpmmgr-stubdom.img)
vtpm_img=$(p home/user/domu/vtpm.img)
kernel=$(p home/user/domu/vmlinuz)

for name in vtpmmgr domu-vtpm domu; do
    if pyxl domid "$name" >/dev/null 2>&1; then
        echo "walkthrough: a domain called $name is already running; destroy it first" >&2
        exit 1
    fi
done

step "VTPM MANAGER SETUP: the manager's disk image"
mkdir -p "$(dirname "$mgr_img")" "$(dirname "$vtpm_img")"
show "dd if=/dev/zero of=$mgr_img bs=16M count=1"
dd if=/dev/zero of="$mgr_img" bs=16M count=1

step "Starting the manager: pyxl create -c vtpmmgr-stubdom.cfg"
con until "INFO[VTPM]: Waiting for commands from vTPM's:" -- \
    create -c "$here/vtpmmgr-stubdom.cfg" "disk=[\"file:$mgr_img,hda,w\"]"

step "VTPM AND LINUX PVM SETUP: the vTPM's disk image"
show "dd if=/dev/zero of=$vtpm_img bs=8M count=1"
dd if=/dev/zero of="$vtpm_img" bs=8M count=1
if [ ! -e "$kernel" ]; then
    # the guest is simulated: its "kernel" only has to exist (xl opens it)
    printf 'pyxl: stand-in for the domU kernel image of the vTPM guide\n' >"$kernel"
fi

step "Launching: pyxl create -c vtpm.cfg"
con until "Waiting for frontend domain to connect.." -- \
    create -c "$here/vtpm.cfg" "disk=[\"file:$vtpm_img,hda,w\"]"

step "Launching the guest: pyxl create -c domu.cfg; in it: modprobe, tcsd, tpm_version"
con type "modprobe xen-tpmfront" "tcsd" "tpm_version" -- \
    create -c "$here/domu.cfg" "kernel=\"$kernel\""

step "On the vtpm console: the guest attached, the command, the state saved"
# (from the console logs xenconsoled-style logging keeps: the whole history)
vlog=$(console_log domu-vtpm)
grep -aE "VTPM attached to Frontend|Frontend [0-9]+/0 connected" "$vlog" || true
# (a command that changed nothing the vTPM stores is not saved again: the
# save shown is the new vTPM's first, made for tcsd's first command)
grep -aE "TPM_ORD_" "$vlog" | tail -n 1 || true
grep -aE "Wrote [0-9]+ bytes to NVM|Sending encryption key" "$vlog" | tail -n 2 || true
step "On the vtpmmgr console: the vTPM's key encrypted and stored"
grep -aE "Registered vtpm|Saved hash and key" "$(console_log vtpmmgr)" | tail -n 2 || true

step "pyxl list"
pyxl list
step "pyxl vtpm-list domu"
pyxl vtpm-list domu

[ "${KEEP_RUNNING:-}" = 1 ] && exit 0

step "Shutting down: the guest, then its vTPM follows (seed vtpm-stubdom), the manager last"
pyxl shutdown -w domu
for _ in $(seq 100); do pyxl domid domu-vtpm >/dev/null 2>&1 || break; sleep 0.1; done
if pyxl domid domu-vtpm >/dev/null 2>&1; then pyxl destroy domu-vtpm; fi
# destroy the manager only while it waits for commands (its last word; tpmback's
# notes about the departed vTPM may follow)
grep -a "^[A-Z]*\[VTPM\]" "$(console_log vtpmmgr)" | tail -n 1 | grep -q "Waiting for commands from vTPM's:" || {
    echo "walkthrough: the manager is busy; not destroying it" >&2; exit 1; }
show "pyxl destroy vtpmmgr"
pyxl destroy vtpmmgr
pyxl list
