#!/usr/bin/env bash
# Stop the services started by scripts/start-services.sh (the slurmd of every node,
# slurmctld, redis, munged). Only the processes recorded in their pid files are signalled. Safe to
# run when nothing is running. Generated config (/etc/slurm/slurm.conf) and the
# munge key are left in place, so the next start is fast.
set -euo pipefail

log() { echo "stop-services: $*"; }
if [ "$(id -u)" -ne 0 ]; then echo "stop-services: must run as root" >&2; exit 1; fi

# stop PIDFILE NAME: TERM the process in PIDFILE if it is NAME; KILL after 10s.
stop() {
  local pidfile=$1 name=$2 pid i
  if [ -s "$pidfile" ]; then
    pid=$(cat "$pidfile")
    if [ -n "$pid" ] && [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = "$name" ]; then
      kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 1 20); do
        [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = "$name" ] || break
        sleep 0.5
      done
      if [ "$(ps -o comm= -p "$pid" 2>/dev/null)" = "$name" ]; then
        kill -KILL "$pid" 2>/dev/null || true
        log "$name (pid $pid) killed"
      else
        log "$name (pid $pid) stopped"
      fi
    else
      log "$name not running (stale pid file)"
    fi
    rm -f "$pidfile"
  else
    log "$name not running"
  fi
}

# one slurmd per node (/run/slurmd-<node>.pid); /run/slurmd.pid: the single-node cluster of earlier versions
for pidfile in /run/slurmd-*.pid /run/slurmd.pid; do
  if [ -e "$pidfile" ]; then stop "$pidfile" slurmd; fi
done
stop /run/slurmctld.pid slurmctld
# Redis: a clean shutdown first (no save: persistence is off anyway); redis removes
# its own pid file then. Otherwise signal the pid.
if [ -s /run/redis-scalems.pid ] && command -v redis-cli >/dev/null 2>&1 \
  && redis-cli -h 127.0.0.1 -p 6379 shutdown nosave >/dev/null 2>&1; then
  for i in $(seq 1 20); do [ -e /run/redis-scalems.pid ] || break; sleep 0.25; done
  log "redis-server stopped"
  rm -f /run/redis-scalems.pid
else
  stop /run/redis-scalems.pid redis-server
fi
stop /run/munge/munged.pid munged
