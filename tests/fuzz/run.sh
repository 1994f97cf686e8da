#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for a while (docs/fuzzing.md).
#
#   tests/fuzz/run.sh [seconds-per-target] [target...]
#
# Seconds default to 10 (about a minute for all five, plus the build). Each target starts from
# a copy of its seed corpus (tests/fuzz/corpus/<target>) in a temporary directory, so the
# repository is never written to; set EXPORTD_FUZZ_CORPUS=<dir> to keep the grown corpora in
# <dir>/<target> across runs instead. EXPORTD_FUZZ_BUILD_DIR overrides the build directory
# (default build-fuzz).
#
# Exits non-zero when the build fails or any target finds a crash, a timeout or a memory
# blow-up; the reproducer's path and the command to rerun it are printed, and the temporary
# directory holding it is kept.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

seconds="${1:-10}"
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [seconds-per-target] [target...]" >&2
  exit 2
fi
shift || true
all_targets=(fuzz_create_request fuzz_filters_sql fuzz_download_url fuzz_http_range fuzz_job_json)
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then targets=("${all_targets[@]}"); fi
for target in "${targets[@]}"; do
  if [[ " ${all_targets[*]} " != *" $target "* ]]; then
    echo "run.sh: unknown target $target (one of: ${all_targets[*]})" >&2
    exit 2
  fi
done

build="${EXPORTD_FUZZ_BUILD_DIR:-build-fuzz}"
cxx="$(command -v clang++-14 || command -v clang++ || true)"
if [ -z "$cxx" ]; then
  echo "run.sh: clang++ not found; install clang-14 libclang-rt-14-dev llvm-14" >&2
  exit 2
fi
if ! echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' |
    "$cxx" -x c++ -fsanitize=fuzzer,address,undefined -o /dev/null - 2>/dev/null; then
  echo "run.sh: $cxx cannot link -fsanitize=fuzzer; install libclang-rt-14-dev" >&2
  exit 2
fi

# The compiler is chosen when the build directory is first configured (changing it later
# makes CMake throw the cache away).
configure=(-G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEXPORTD_FUZZ=ON -DBUILD_TESTING=OFF)
if [ ! -f "$build/CMakeCache.txt" ]; then configure+=(-DCMAKE_CXX_COMPILER="$cxx"); fi
cmake -S . -B "$build" "${configure[@]}" >/dev/null
cmake --build "$build" --target "${targets[@]}"

# Symbolized stack traces (llvm-symbolizer, from llvm-14); UBSan with a stack trace. Every
# sanitizer report is fatal: the targets are built with -fno-sanitize-recover=all.
symbolizer="$(command -v llvm-symbolizer-14 || command -v llvm-symbolizer || true)"
if [ -n "$symbolizer" ]; then export ASAN_SYMBOLIZER_PATH="$symbolizer"; fi
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"

work="$(mktemp -d "${TMPDIR:-/tmp}/exportd-fuzz.XXXXXX")"
failed=()
for target in "${targets[@]}"; do
  if [ -n "${EXPORTD_FUZZ_CORPUS:-}" ]; then
    corpus="$EXPORTD_FUZZ_CORPUS/$target"
  else
    corpus="$work/$target/corpus"
  fi
  artifacts="$work/$target/artifacts"
  mkdir -p "$corpus" "$artifacts"
  cp -n "tests/fuzz/corpus/$target/"* "$corpus/"
  dict=""
  case "$target" in
    fuzz_create_request | fuzz_filters_sql) dict="tests/fuzz/dict/filters.dict" ;;
    fuzz_download_url) dict="tests/fuzz/dict/download_url.dict" ;;
    fuzz_http_range) dict="tests/fuzz/dict/http_range.dict" ;;
  esac
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
        -artifact_prefix="$artifacts/")
  if [ -n "$dict" ]; then args+=(-dict="$dict"); fi
  log="$work/$target/log.txt"
  echo "== $target: ${seconds}s"
  if "$build/tests/fuzz/$target" "${args[@]}" "$corpus" >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^Done ' "$log" | tr '\n' ' '
    echo "corpus: $(find "$corpus" -type f | wc -l) inputs"
  else
    failed+=("$target")
    echo "!! $target FAILED; log: $log"
    grep -E 'invariant violated|ERROR: |SUMMARY: ' "$log" | head -5 || true
    for reproducer in "$artifacts"/*; do
      [ -e "$reproducer" ] || continue
      echo "   reproducer: $reproducer"
      echo "   rerun:      $build/tests/fuzz/$target $reproducer"
    done
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "run.sh: ${#failed[@]} target(s) failed: ${failed[*]} (work directory kept: $work)"
  exit 1
fi
rm -rf "$work"
echo "run.sh: ${#targets[@]} target(s), ${seconds}s each, no findings"
