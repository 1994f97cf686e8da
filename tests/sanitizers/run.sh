#!/usr/bin/env bash
# Builds the whole tree with sanitizers (clang, -DEXPORTD_SANITIZE) and runs the test suite
# under them (docs/testing.md).
#
#   tests/sanitizers/run.sh address|thread [ctest arguments...]
#
# address: AddressSanitizer + LeakSanitizer + UndefinedBehaviorSanitizer, in build-asan.
# thread:  ThreadSanitizer, in build-tsan.
# EXPORTD_SANITIZE_BUILD_DIR overrides the build directory. Extra arguments go to ctest (e.g.
# -R '^storage\.'); by default every test runs except those listed in `skip` below.
#
# Every process of the run writes its sanitizer reports to a fresh report directory
# (log_path), not to its stderr: the test binaries, and also the export-server, export-worker
# and exportctl binaries that end-to-end tests start as children, whose exit status and stderr
# a test does not always look at (a server killed with SIGKILL, a worker stopped at the end).
# The run fails when ctest fails or when any report was written; the reports are printed.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

mode="${1:-}"
case "$mode" in
  address) sanitize=address,undefined; build="${EXPORTD_SANITIZE_BUILD_DIR:-build-asan}" ;;
  thread) sanitize=thread; build="${EXPORTD_SANITIZE_BUILD_DIR:-build-tsan}" ;;
  *)
    echo "usage: $0 address|thread [ctest arguments...]" >&2
    exit 2
    ;;
esac
shift

cxx="$(command -v clang++-14 || command -v clang++ || true)"
if [ -z "$cxx" ]; then
  echo "run.sh: clang++ not found; install clang-14 libclang-rt-14-dev llvm-14" >&2
  exit 2
fi
if ! echo 'int main() { return 0; }' |
    "$cxx" -x c++ "-fsanitize=$sanitize" -o /dev/null - 2>/dev/null; then
  echo "run.sh: $cxx cannot link -fsanitize=$sanitize; install libclang-rt-14-dev" >&2
  exit 2
fi

supp="$root/tests/sanitizers"
reports="$(mktemp -d "${TMPDIR:-/tmp}/exportd-$mode-reports.XXXXXX")"
symbolizer="$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)"
common="log_path=$reports/report:print_suppressions=0"
if [ -n "$symbolizer" ]; then common+=":external_symbolizer_path=$symbolizer"; fi
# halt_on_error: the first report ends the process with a failure, so the test fails too.
# ignore_noninstrumented_modules: a memcpy, recvmsg or free called by an uninstrumented library
# (gRPC, protobuf, RocksDB) is as invisible to TSan as the library's own accesses
# (docs/testing.md, "What is suppressed, and why").
export UBSAN_OPTIONS="$common:print_stacktrace=1:halt_on_error=1"
export ASAN_OPTIONS="$common:detect_leaks=1:strict_init_order=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="$common:suppressions=$supp/lsan.supp"
export TSAN_OPTIONS="$common:ignore_noninstrumented_modules=1:halt_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp"

# Fewer kill -9 cycles than the normal suite (30): each cycle restarts a sanitized server, and the
# normal run already covers the count; the sanitizers need the code paths, not the repetitions.
export EXPORTD_KILL_CYCLES="${EXPORTD_KILL_CYCLES:-8}"

# -O1 and line tables only: the usual sanitizer settings, and a much faster build than -O2 -g;
# stack traces still have files and lines. The compiler is chosen when the build directory is
# first configured (changing it later makes CMake throw the cache away).
configure=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DEXPORTD_SANITIZE=$sanitize"
  "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only -DNDEBUG")
if [ ! -f "$build/CMakeCache.txt" ]; then configure+=(-DCMAKE_CXX_COMPILER="$cxx"); fi
start=$SECONDS
cmake -S . -B "$build" "${configure[@]}" >/dev/null
# The build runs the test binaries too (gtest_discover_tests lists their tests), under the
# options above.
cmake --build "$build"

# Tests left out of the sanitizer runs, with the reason (a ctest regex).
skip=()
# buf lint/breaking: they check proto/ with buf; no C++ of ours runs in them.
skip+=('^interop\.buf_')
# The Dockerfile's runtime packages against what the release binaries link: clang links without
# --as-needed (Debian's gcc adds it), so a sanitized binary names more libraries than the release
# one, and it is never shipped. The other deploy checks (which start the server) do run.
skip+=('^deploy\.libraries$')

built=$SECONDS
status=0
ctest --test-dir "$build" --output-on-failure --timeout 900 -j2 -E "$(IFS='|'; echo "${skip[*]}")" "$@" ||
  status=$?

echo "run.sh: $mode: build $((built - start)) s, tests $((SECONDS - built)) s"

found=("$reports"/report.*)
if [ -e "${found[0]}" ]; then
  echo "run.sh: ${#found[@]} sanitizer report(s) in $reports:"
  for report in "${found[@]}"; do
    echo "==== $report"
    cat "$report"
  done
  exit 1
fi
rmdir "$reports"
if [ "$status" -ne 0 ]; then
  echo "run.sh: ctest failed under $mode sanitizers (exit $status)"
  exit "$status"
fi
echo "run.sh: $mode sanitizers: every test passed, no reports"
