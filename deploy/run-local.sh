#!/usr/bin/env bash
# Installs the dependencies, builds in Release mode and runs exportd on embedded defaults:
# export-server (jobs and part files in ./data, gRPC on 127.0.0.1:50051, downloads on
# 127.0.0.1:8080) and one export-worker reading a demo SQLite database (data/demo.db, seeded
# with 10,000 accounts on first run), and builds exportctl to call it. Every call needs a bearer
# token: on first run it writes a development tokens file, data/tokens, with random tokens for a
# client, a worker and an admin (each also in data/<role>.token), and prints how to use them.
# Ctrl-C stops both. Extra arguments go to the server.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF
cmake --build build-release --target export-server export-worker exportctl

mkdir -p data
if [ ! -f data/demo.db ]; then
  ./build-release/worker/export-worker seed-demo --source data/demo.db --accounts 10000
fi

# The development tokens file (docs/operations.md): one random token per role, tenant "dev".
if [ ! -f data/tokens ]; then
  (
    umask 077
    {
      echo "# Development tokens of deploy/run-local.sh: <token> <principal> <tenant> <role>"
      for role in client worker admin; do
        token=$(od -An -tx1 -N24 /dev/urandom | tr -d ' \n')
        echo "$token" > "data/$role.token"
        echo "$token local-$role dev $role"
      done
    } > data/tokens
  )
fi

out=$(mktemp)
./build-release/server/export-server --data_dir=data --tokens_file=data/tokens "$@" \
  > >(tee "$out") &
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
http=$(sed -n 's/^http listening on //p' "$out")
./build-release/worker/export-worker --server="$address" --source=data/demo.db \
  --worker_id=local-worker --token_file=data/worker.token &
worker=$!
cat <<EOF
exportd is running. Every call needs a token (data/tokens; SIGHUP the server after editing it).
In another terminal, for example:
  export EXPORT_TOKEN=\$(cat data/client.token)    # the development client token
  build-release/client/exportctl --server=$address create --entity accounts --wait
  build-release/client/exportctl --server=$address list
  build-release/client/exportctl --server=$address download JOB_ID
  curl -s -H "Authorization: Bearer \$(cat data/client.token)" http://$http/v1/export-jobs
  curl -s -H "Authorization: Bearer \$(cat data/admin.token)" http://$http/metrics
EOF
wait -n "$server" "$worker"
