#!/usr/bin/env bash
# Installs the dependencies, builds in Release mode and runs exportd-bench: every measurement
# (create, watch, cycle, upload, export) against fresh export-servers on loopback, with the
# export-worker, dd and sqlite3 as the references measured in the same run. Prints one JSON line
# per run and a summary line (median, min, max) per measurement; progress goes to stderr.
# Extra arguments go to exportd-bench (default here: 5 runs of each measurement), e.g.
#   bench/run.sh --runs=3 --measurements=cycle,upload --upload_bytes=268435456
# BUILD_DIR chooses the build directory (default build-release).
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir="${BUILD_DIR:-build-release}"
bash deploy/install-deps.sh
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
# exportd-bench depends on export-server and, when worker/ defines it, export-worker.
cmake --build "$build_dir" --target exportd-bench export-server
exec "./$build_dir/bench/exportd-bench" --runs=5 "$@"
