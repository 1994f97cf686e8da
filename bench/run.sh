#!/usr/bin/env bash
# The benchmark in one command: installs what it needs, builds in Release mode, runs exportd-bench
# (create, watch, cycle, upload, export, watch_memory, restart against fresh export-servers on
# loopback, with the export-worker, dd and sqlite3 as references measured in the same run), then
# the BullMQ peer (bench/peers/bullmq) on a redis-server that this script starts on loopback
# (a free port, a temporary directory, appendonly yes, appendfsync always) and stops at the end,
# and writes the report: JSON (--report, default bench/results/latest.json) and a Markdown table
# (--table, default bench/RESULTS.md). Every measurement's JSON lines and summaries are printed as
# they come; progress goes to stderr. docs/performance.md describes each measurement.
#
#   bench/run.sh                      # the full benchmark: 5 runs each, issue 6's sizes
#   bench/run.sh --quick              # a smoke run: small sizes, 1 run (report in bench/results/quick.*)
#   bench/run.sh --runs=3 --measurements=cycle,upload --upload_bytes=268435456
#
# Options of this script: --quick, --report=PATH, --table=PATH, --skip_peers (exportd only).
# Every other argument goes to exportd-bench (`exportd-bench --help` lists them; use the
# --flag=value form). The sizes the peer shares with exportd are passed on to it, so both always
# measure the same thing: --runs, --measurements (create -> add, cycle -> cycle, watch -> events),
# --create_concurrency, --create_seconds, --warmup_seconds, --cycle_jobs, --cycle_workers,
# --cycle_channels (worker processes), --watchers, --update_rate, --watch_seconds.
# BUILD_DIR chooses the build directory (default build-release).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${BUILD_DIR:-build-release}"
quick=false
skip_peers=false
report=""
table=""
runs=5
measurements="all"
declare -A shared=(
  [create_concurrency]=1,64 [create_seconds]=5 [warmup_seconds]=1 [cycle_jobs]=5000
  [cycle_workers]=64 [cycle_channels]=4 [watchers]=1000 [update_rate]=10 [watch_seconds]=10
)
bench_args=()
for arg in "$@"; do
  case "$arg" in
    --quick) quick=true ;;
    --skip_peers) skip_peers=true ;;
    --report=*) report="${arg#*=}" ;;
    --table=*) table="${arg#*=}" ;;
    *)
      if [[ "$arg" =~ ^--([a-z_]+)=(.*)$ ]]; then
        name="${BASH_REMATCH[1]}"
        value="${BASH_REMATCH[2]}"
        if [ "$name" = runs ]; then runs="$value"; fi
        if [ "$name" = measurements ]; then measurements="$value"; fi
        if [ -n "${shared[$name]+set}" ]; then shared[$name]="$value"; fi
      fi
      bench_args+=("$arg")
      ;;
  esac
done

if $quick; then
  # Small sizes that exercise every path in a few minutes; flags given explicitly still win.
  quick_defaults=(--runs=1 --create_seconds=1 --warmup_seconds=0.5 --watchers=100
    --watch_seconds=2 --cycle_jobs=500 --upload_bytes=67108864 --export_accounts=20000
    --idle_watchers=1000 --idle_watch_jobs=20 --restart_jobs=20000 --restart_settle=1s)
  given=" ${bench_args[*]-} "
  for flag in "${quick_defaults[@]}"; do
    name="${flag%%=*}"
    if [[ "$given" != *" $name="* ]]; then
      bench_args=("$flag" "${bench_args[@]}")
      value="${flag#*=}"
      key="${name#--}"
      if [ "$key" = runs ]; then runs="$value"; fi
      if [ -n "${shared[$key]+set}" ]; then shared[$key]="$value"; fi
    fi
  done
  report="${report:-bench/results/quick.json}"
  table="${table:-bench/results/quick.md}"
else
  if [[ " ${bench_args[*]-} " != *" --runs="* ]]; then bench_args=(--runs=5 "${bench_args[@]}"); fi
  report="${report:-bench/results/latest.json}"
  table="${table:-bench/RESULTS.md}"
fi

# The peer's measurements among those selected.
peer_measurements=()
for m in ${measurements//,/ }; do
  case "$m" in
    all) peer_measurements=(add cycle events) ;;
    create) peer_measurements+=(add) ;;
    cycle) peer_measurements+=(cycle) ;;
    watch | watch_fanout) peer_measurements+=(events) ;;
  esac
done
if [ "${#peer_measurements[@]}" -eq 0 ]; then skip_peers=true; fi

# --- Dependencies: the project's, then the benchmark's own (redis-server, the peer's npm packages).
bash deploy/install-deps.sh
if ! $skip_peers; then
  if ! command -v redis-server >/dev/null; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    echo "bench: installing redis-server" >&2
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -q
    $sudo apt-get install -y -q --no-install-recommends redis-server
  fi
  peer_dir="bench/peers/bullmq"
  if [ ! -f "$peer_dir/node_modules/.package-lock.json" ] ||
     ! cmp -s "$peer_dir/package-lock.json" "$peer_dir/node_modules/.lock-installed"; then
    echo "bench: npm ci in $peer_dir" >&2
    (cd "$peer_dir" && npm ci --no-audit --no-fund --loglevel=error &&
     cp package-lock.json node_modules/.lock-installed)
  fi
fi

# --- Build.
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_C_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  "${launcher[@]}" >/dev/null
# exportd-bench depends on export-server and, when worker/ defines it, export-worker.
cmake --build "$build_dir" --target exportd-bench export-server

scratch="$(mktemp -d "${TMPDIR:-/tmp}/exportd-bench-run-XXXXXX")"
redis_pid=""
cleanup() {
  if [ -n "$redis_pid" ] && kill -0 "$redis_pid" 2>/dev/null; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  rm -rf "$scratch"
}
trap cleanup EXIT

# --- exportd.
status=0
"./$build_dir/bench/exportd-bench" "${bench_args[@]}" | tee "$scratch/exportd.jsonl" ||
  status=$?

# --- The peer: BullMQ on a redis-server of its own.
if ! $skip_peers; then
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  mkdir -p "$scratch/redis"
  redis-server --bind 127.0.0.1 --port "$port" --dir "$scratch/redis" --appendonly yes \
    --appendfsync always --save "" --daemonize no --logfile "$scratch/redis/redis.log" &
  redis_pid=$!
  for _ in $(seq 1 300); do  # Up to 30 s for it to answer.
    if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then break; fi
    if ! kill -0 "$redis_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if ! redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
    echo "bench: redis-server did not start on port $port:" >&2
    tail -20 "$scratch/redis/redis.log" >&2 || true
    exit 2
  fi
  echo "bench: redis-server $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/') on 127.0.0.1:$port (appendonly yes, appendfsync always)" >&2
  per_process=$(( ${shared[cycle_workers]} / ${shared[cycle_channels]} ))
  peer_status=0
  node bench/peers/bullmq/bench.js --redis="127.0.0.1:$port" --runs="$runs" \
    --measurements="$(IFS=,; echo "${peer_measurements[*]}")" \
    --add_concurrency="${shared[create_concurrency]}" --add_seconds="${shared[create_seconds]}" \
    --warmup_seconds="${shared[warmup_seconds]}" --cycle_jobs="${shared[cycle_jobs]}" \
    --cycle_processes="${shared[cycle_channels]}" --cycle_concurrency="$per_process" \
    --events_listeners="${shared[watchers]}" --events_rate="${shared[update_rate]}" \
    --events_seconds="${shared[watch_seconds]}" | tee "$scratch/bullmq.jsonl" || peer_status=$?
  if [ "$peer_status" -ne 0 ]; then status=$peer_status; fi
  kill "$redis_pid"
  wait "$redis_pid" || true
  redis_pid=""
fi

# --- The report.
mode=full
if $quick; then mode=quick; fi
python3 bench/report.py --exportd="$scratch/exportd.jsonl" --bullmq="$scratch/bullmq.jsonl" \
  --json="$report" --markdown="$table" --mode="$mode" --command="bench/run.sh $*"
echo "bench: report in $report and $table" >&2
exit "$status"
