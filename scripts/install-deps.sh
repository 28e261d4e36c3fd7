#!/usr/bin/env bash
# Install the system packages scalems' real backends need (Debian/Ubuntu):
#   redis-server            -> bullmq() backend
#   slurm-wlm + munge       -> slurm() backend (a cluster of 2 nodes on localhost)
#   openmpi-bin + libopenmpi-dev -> processes() with ranks > 1 (mpirun, mpicc)
#   gcc/libc6-dev           -> compiling MPI test programs with mpicc, and the native forker (native/forker.c,
#                              built by `npm ci`: run this script before it)
#   chromium                -> the browser tests (test/browser.test.ts: /usr/bin/chromium, driven by playwright-core)
# plus small tools the start script uses (procps: pgrep/pkill; hostname).
#
# Idempotent: if every package is already installed the apt step is skipped.
set -euo pipefail

PACKAGES=(
  redis-server redis-tools
  slurm-wlm slurm-client munge
  openmpi-bin libopenmpi-dev
  gcc libc6-dev make
  chromium
  procps hostname
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-deps: must run as root (or have sudo)" >&2; exit 1
  fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all packages already installed (${PACKAGES[*]})"
  exit 0
fi

echo "install-deps: installing: ${missing[*]}"
start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
# policy-rc.d: do not let package scripts try to start daemons (no init system in
# containers/CI); scripts/start-services.sh starts them explicitly.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod +x "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" = 1 ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT
$SUDO apt-get install -y --no-install-recommends "${PACKAGES[@]}"
echo "install-deps: done in $(( $(date +%s) - start ))s"
