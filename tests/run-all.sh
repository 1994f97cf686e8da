#!/usr/bin/env bash
# Installs the dependencies, builds everything and runs every test with ctest, then each fuzz
# target briefly, then the test suite again under ASan+UBSan and under TSan. Exits non-zero when
# the build, any test, any fuzz target or any sanitizer report fails.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build
ctest --test-dir build --output-on-failure --timeout 600 -j2
# The fuzz targets, 10 s each, in their own clang build (docs/fuzzing.md).
bash tests/fuzz/run.sh 10
# The test suite under AddressSanitizer+LeakSanitizer+UndefinedBehaviorSanitizer, then under
# ThreadSanitizer, each in its own clang build (docs/testing.md).
bash tests/sanitizers/run.sh address
bash tests/sanitizers/run.sh thread
