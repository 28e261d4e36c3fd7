#!/usr/bin/env bash
# Runs examples/cluster.ts on bullmq() with two `scalems worker` processes on this machine:
#
#   worker a   --cores 2   takes 1-core and 2-core tasks (the queues tasks.c1.g0.m0 and tasks.c2.g0.m0)
#   worker b   --cores 1   takes 1-core tasks only
#
# then stops them (SIGTERM: they finish what they run and leave), prints their logs and removes this
# run's keys from Redis. Each run has a BullMQ prefix of its own (scalems-example-<pid>-<time>), so
# runs never meet each other's jobs, nor those of real workflows on the same Redis.
#
#   bash scripts/cluster-example.sh [members]
#
# Redis: SCALEMS_REDIS_URL (default redis://127.0.0.1:6379; `bash scripts/start-services.sh` starts
# one), read by the workers and the driver alike, so a password never shows on a command line.
#
# Workers and driver run from source through tsx's hook (node --require tsx/cjs), which maps
# `scalems` to src/ with tsconfig.json: the task module, the workers and the driver must load the
# same scalems module (its defineTask registry). With the installed package, a worker is
# `npx scalems worker ...` and compiled (.js) task modules.
set -euo pipefail
cd "$(dirname "$0")/.."

export SCALEMS_REDIS_URL="${SCALEMS_REDIS_URL:-redis://127.0.0.1:6379}"
PREFIX="scalems-example-$$-$(date +%s)"
MODULE=examples/tasks/cluster-tasks.ts
STARTUP_TIMEOUT="${STARTUP_TIMEOUT:-60}"
LOGS="$(mktemp -d "${TMPDIR:-/tmp}/scalems-cluster-example.XXXXXX")"
NAMES=()
PIDS=()

log() { echo "cluster-example: $*"; }

# Removes every key of this run's prefix (the queues, their jobs and events, the workers' keys).
remove_keys() {
  node -e '
    const Redis = require(require.resolve("ioredis", { paths: [require.resolve("bullmq")] }));
    const redis = new Redis(process.env.SCALEMS_REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: true });
    (async () => {
      await redis.connect();
      let cursor = "0", removed = 0;
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", `${process.argv[1]}:*`, "COUNT", 1000);
        cursor = next;
        if (keys.length > 0) removed += await redis.unlink(...keys);
      } while (cursor !== "0");
      await redis.quit();
      console.log(`cluster-example: removed ${removed} keys of prefix ${process.argv[1]} from Redis`);
    })().catch((err) => {
      console.error(`cluster-example: could not remove the keys of prefix ${process.argv[1]}: ${err.message}`);
      process.exit(0);
    });' "$PREFIX" || true
}

cleanup() {
  local status=$? i pid name
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in $(seq 1 40); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.5
  done
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      log "worker pid $pid did not stop within 20 s of SIGTERM: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
  for i in "${!NAMES[@]}"; do
    name="${NAMES[$i]}"
    echo "--- worker $name (pid ${PIDS[$i]}) ---"
    sed "s/^/[$name] /" "$LOGS/$name.log" 2>/dev/null || true
  done
  remove_keys
  rm -rf "$LOGS"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_worker NAME CORES: a worker of this run's prefix, loading the example's task module.
start_worker() {
  node --require tsx/cjs src/cli/main.ts worker \
    --prefix "$PREFIX" --modules "$MODULE" --cores "$2" >"$LOGS/$1.log" 2>&1 &
  NAMES+=("$1")
  PIDS+=("$!")
}

# wait_ready NAME PID: until the worker says it serves (its first line), or fail with its log.
wait_ready() {
  local deadline=$(( $(date +%s) + STARTUP_TIMEOUT ))
  until grep -q 'tasks at once' "$LOGS/$1.log" 2>/dev/null; do
    if ! kill -0 "$2" 2>/dev/null; then
      log "worker $1 exited at start:"; cat "$LOGS/$1.log" >&2; exit 1
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "worker $1 did not start within ${STARTUP_TIMEOUT} s:"; cat "$LOGS/$1.log" >&2; exit 1
    fi
    sleep 0.2
  done
  log "worker $1: $(head -n 1 "$LOGS/$1.log")"
}

log "prefix $PREFIX at ${SCALEMS_REDIS_URL//\/\/*@/\/\/}"
start_worker a 2
start_worker b 1
wait_ready a "${PIDS[0]}"
wait_ready b "${PIDS[1]}"

node --require tsx/cjs examples/cluster.ts "$@" --prefix "$PREFIX"
