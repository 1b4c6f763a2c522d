#!/usr/bin/env bash
# examples/walkthrough-tpm2.sh [DIR]: the vTPM guide's chain with a TPM 2.0
# vTPM (pyxl's `tpm2=1`, examples/vtpm2.cfg) and the guest booted through
# pv-grub: inside the guest, tpm2-tools seal a secret to the PCRs pv-grub
# measured the kernel and its command line into (PCR 4 and 5, SHA-256 bank)
# and keep the sealed object in the vTPM (a persistent handle); then
# everything is shut down in the guide's order, started again, and the
# guest unseals the secret -- the same kernel, measured again, gives the same
# PCRs, and the vTPM's state came back through its encrypted disk and the
# manager.
#
# Paths as in walkthrough.sh: below DIR, or $PYXL_ROOT, or (as root) the
# guide's own.   PYXL=...  the pyxl command (default: pyxl)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYXL=${PYXL:-pyxl}
export PYXL
pyxl() { command $PYXL "$@"; }
con() { python3 "$here/console.py" "$@"; }
console_log() { echo "${PYXL_ROOT:-}/var/log/pyxl/console/guest-$1.log"; }
step() { printf '\n### %s\n' "$*"; }

dir=${1:-${PYXL_ROOT:-}}
if [ -z "$dir" ]; then
    [ "$(id -u)" = 0 ] || { echo "walkthrough-tpm2: give a DIR or run as root" >&2; exit 2; }
    dir=/
fi
dir=$(cd "$dir" && pwd)
p() { local x="$dir/$1"; echo "${x//\/\//\/}"; }
mgr_img=$(p var/vtpmmgr-stubdom.img)
vtpm_img=$(p home/user/domu/vtpm.img)
kernel=$(p home/user/domu/vmlinuz)
args="root=/dev/xvda1 console=hvc0"
handle=0x81000001

for name in vtpmmgr domu-vtpm domu; do
    if pyxl domid "$name" >/dev/null 2>&1; then
        echo "walkthrough-tpm2: a domain called $name is already running; destroy it first" >&2
        exit 1
    fi
done

count() { grep -ac -- "$2" "$(console_log "$1")" 2>/dev/null || true; }
wait_for() {   # DOMAIN TEXT N: until TEXT is on DOMAIN's console N times
    for _ in $(seq 600); do [ "$(count "$1" "$2")" -ge "$3" ] && return 0; sleep 0.1; done
    echo "walkthrough-tpm2: $1 never said: $2" >&2; exit 1
}
mgr_ready="INFO\[VTPM\]: Waiting for commands from vTPM's:"
vtpm_ready="Waiting for frontend domain to connect.."

start_chain() {   # the manager, the TPM 2.0 vTPM; the guest is started by the caller
    local m v
    m=$(count vtpmmgr "$mgr_ready"); v=$(count domu-vtpm "$vtpm_ready")
    pyxl create "$here/vtpmmgr-stubdom.cfg" "disk=[\"file:$mgr_img,hda,w\"]"
    wait_for vtpmmgr "$mgr_ready" $((m + 1))
    pyxl create "$here/vtpm2.cfg" "disk=[\"file:$vtpm_img,hda,w\"]"
    wait_for domu-vtpm "$vtpm_ready" $((v + 1))
}

stop_chain() {    # the guest, then its vTPM follows, the manager last
    pyxl shutdown -w domu
    for _ in $(seq 100); do pyxl domid domu-vtpm >/dev/null 2>&1 || break; sleep 0.1; done
    if pyxl domid domu-vtpm >/dev/null 2>&1; then pyxl destroy domu-vtpm; fi
    wait_for vtpmmgr "$mgr_ready" 1
    pyxl destroy vtpmmgr
}

guest() {         # boot the guest through pv-grub and type the commands given
    con type "$@" -- create -c "$here/domu-pvgrub.cfg" "extra=\"$kernel $args\""
}

step "Disks, kernel: dd, as in the guide"
mkdir -p "$(dirname "$mgr_img")" "$(dirname "$vtpm_img")"
dd if=/dev/zero of="$mgr_img" bs=16M count=1 status=none
dd if=/dev/zero of="$vtpm_img" bs=8M count=1 status=none
[ -e "$kernel" ] || printf 'pyxl: stand-in for the domU kernel image\n' >"$kernel"

step "The manager and a TPM 2.0 vTPM (vtpm2.cfg: extra=\"tpm2=1\")"
start_chain

step "The guest (through pv-grub): seal a secret to PCR 4 and 5"
guest "modprobe xen-tpmfront" \
    "cat /sys/class/tpm/tpm0/tpm_version_major" \
    "tpm2_pcrread sha256:4,5 -o pcrs.bin" \
    "tpm2_createprimary -C o -c primary.ctx > /dev/null" \
    "tpm2_createpolicy --policy-pcr -l sha256:4,5 -f pcrs.bin -L pcr.policy" \
    "echo 'the guest secret' > secret.txt" \
    "tpm2_create -C primary.ctx -L pcr.policy -i secret.txt -u seal.pub -r seal.priv > /dev/null" \
    "tpm2_load -C primary.ctx -u seal.pub -r seal.priv -c seal.ctx" \
    "tpm2_evictcontrol -C o -c seal.ctx $handle" \
    "tpm2_unseal -c $handle -p pcr:sha256:4,5"

step "Shut everything down"
stop_chain

step "Start it all again; the guest unseals the secret"
start_chain
guest "modprobe xen-tpmfront" "tpm2_pcrread sha256:4,5" "tpm2_unseal -c $handle -p pcr:sha256:4,5"

step "Shut down"
stop_chain
pyxl list
