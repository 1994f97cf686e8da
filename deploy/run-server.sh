#!/usr/bin/env bash
# Installs the dependencies, builds export-server in Release mode and runs it on embedded
# defaults: the job database in ./data, gRPC on 127.0.0.1:50051. Extra arguments go to the
# server, e.g. deploy/run-server.sh --grpc_address=0.0.0.0:50051
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF
cmake --build build-release --target export-server
exec ./build-release/server/export-server --data_dir=data "$@"
