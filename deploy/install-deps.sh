#!/usr/bin/env bash
# Installs every Debian 12 package that exportd's build, service and tests need.
# Idempotent: packages already present are left as they are, and apt is only
# consulted when something is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config clang-format
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev librocksdb-dev libgtest-dev libgmock-dev libbenchmark-dev
  libssl-dev openssl zlib1g-dev libsqlite3-dev sqlite3 curl procps libcpp-httplib-dev
  nlohmann-json3-dev libspdlog-dev prometheus-cpp-dev libcli11-dev libjemalloc-dev
  python3 python3-grpcio python3-protobuf python3-yaml
  clang-14 libclang-rt-14-dev llvm-14
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# Node.js and npm run the Node.js client test, buf and the JSON Schema checks. A machine that
# already has them (from Debian or elsewhere) keeps its own; otherwise Debian's are installed.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
else
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The npm packages of tests/node, exactly as its lock file pins them; skipped when installed.
node_dir="$(cd "$(dirname "$0")/../tests/node" && pwd)"
if [ ! -f "$node_dir/node_modules/.package-lock.json" ] ||
   ! cmp -s "$node_dir/package-lock.json" "$node_dir/node_modules/.lock-installed"; then
  echo "install-deps: npm ci in tests/node"
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error &&
   cp package-lock.json node_modules/.lock-installed)
fi
