#!/usr/bin/env bash
# Installs the dependencies, builds in Release mode and runs exportd on embedded defaults:
# export-server (jobs and part files in ./data, gRPC on 127.0.0.1:50051, downloads on
# 127.0.0.1:8080) and one export-worker reading a demo SQLite database (data/demo.db, seeded
# with 10,000 accounts on first run), and builds exportctl to call it. Ctrl-C stops both. Extra
# arguments go to the server.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF
cmake --build build-release --target export-server export-worker exportctl

mkdir -p data
if [ ! -f data/demo.db ]; then
  ./build-release/worker/export-worker seed-demo --source data/demo.db --accounts 10000
fi

out=$(mktemp)
./build-release/server/export-server --data_dir=data "$@" > >(tee "$out") &
server=$!
worker=""
stop() {
  [ -n "$worker" ] && kill -TERM "$worker" 2>/dev/null || true
  kill -TERM "$server" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -f "$out"
}
trap stop INT TERM EXIT

# The worker connects to the address the server prints once it serves.
address=""
for _ in $(seq 1 300); do
  address=$(sed -n 's/^grpc listening on //p' "$out")
  [ -n "$address" ] && break
  kill -0 "$server" 2>/dev/null || { echo "export-server exited" >&2; exit 1; }
  sleep 0.1
done
[ -n "$address" ] || { echo "export-server did not start" >&2; exit 1; }
./build-release/worker/export-worker --server="$address" --source=data/demo.db \
  --worker_id=local-worker &
worker=$!
cat <<EOF
exportd is running. In another terminal, for example:
  build-release/client/exportctl --server=$address create --entity accounts --wait
  build-release/client/exportctl --server=$address list
  build-release/client/exportctl --server=$address download JOB_ID
EOF
wait -n "$server" "$worker"
