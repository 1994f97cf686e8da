#!/usr/bin/env bash
# Installs the dependencies, builds in Release mode and runs exportd-bench against a fresh
# export-server on loopback. Prints one JSON line per run and a summary line per measurement.
# Extra arguments go to exportd-bench (default here: 5 runs of each measurement).
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
cmake --build build-release --target exportd-bench export-server
exec ./build-release/bench/exportd-bench --runs=5 "$@"
