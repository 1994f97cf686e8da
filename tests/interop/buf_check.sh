#!/usr/bin/env bash
# The buf checks of the API module (proto/, configured by buf.yaml at the repository root):
#
#   buf_check.sh lint      SOURCE_DIR BUF   `buf lint` passes.
#   buf_check.sh breaking  SOURCE_DIR BUF   `buf breaking` finds nothing against the previous
#                                           commit (HEAD~1), or against $EXPORTD_BUF_AGAINST when
#                                           set (any buf input, e.g. '.git#tag=v1.2.0,subdir=proto'
#                                           or a directory). Without a previous commit (no .git,
#                                           a shallow clone, proto/ absent in HEAD~1) the test is
#                                           skipped: exit 77, ctest's SKIP_RETURN_CODE.
#   buf_check.sh detects   SOURCE_DIR BUF   The check can fail: a copy of proto/ with a field's type
#                                           and another's number changed, checked with the same
#                                           buf.yaml against an unchanged copy, is reported.
#
# BUF is the buf binary that deploy/install-deps.sh puts in tests/node/node_modules/.bin.
set -uo pipefail

readonly kSkip=77

if [ "$#" -ne 3 ]; then
  echo "usage: $0 lint|breaking|detects SOURCE_DIR BUF" >&2
  exit 2
fi
mode="$1"
source_dir="$2"
buf="$3"

if [ ! -x "$buf" ]; then
  echo "FAIL: no buf at $buf: run deploy/install-deps.sh (npm ci in tests/node)" >&2
  exit 1
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/exportd-buf-check.XXXXXX")" || exit 1
trap 'rm -rf "$work"' EXIT
# A cache of its own: nothing outside the temporary directory is written.
export BUF_CACHE_DIR="$work/cache"

# Runs buf with its output captured in $work/out; returns buf's exit code.
run_buf() {
  "$buf" "$@" >"$work/out" 2>&1
}

case "$mode" in
  lint)
    cd "$source_dir" || exit 1
    if ! run_buf lint; then
      echo "FAIL: buf lint found problems in proto/:" >&2
      cat "$work/out" >&2
      exit 1
    fi
    echo "PASS: buf lint"
    ;;

  breaking)
    cd "$source_dir" || exit 1
    against="${EXPORTD_BUF_AGAINST:-}"
    if [ -z "$against" ]; then
      if [ ! -d .git ]; then
        echo "SKIP: $source_dir is not a git checkout (no .git directory), so there is no" \
          "previous commit to compare proto/ with; set EXPORTD_BUF_AGAINST to a buf input"
        exit "$kSkip"
      fi
      if ! command -v git >/dev/null; then
        echo "SKIP: git is not installed, so the previous commit cannot be read; set" \
          "EXPORTD_BUF_AGAINST to a buf input"
        exit "$kSkip"
      fi
      if ! git rev-parse --verify --quiet 'HEAD~1^{commit}' >/dev/null; then
        echo "SKIP: no previous commit (HEAD~1) to compare proto/ with (the first commit, or a" \
          "shallow clone); set EXPORTD_BUF_AGAINST to a buf input"
        exit "$kSkip"
      fi
      if ! git cat-file -e 'HEAD~1:proto' 2>/dev/null; then
        echo "SKIP: the previous commit (HEAD~1) has no proto/ directory"
        exit "$kSkip"
      fi
      against='.git#ref=HEAD~1,subdir=proto'
    fi
    echo "buf breaking against $against"
    if ! run_buf breaking --against "$against"; then
      echo "FAIL: buf breaking against $against:" >&2
      cat "$work/out" >&2
      exit 1
    fi
    echo "PASS: no breaking change against $against"
    ;;

  detects)
    # base/: proto/ as it is; changed/: the same with two wire-breaking edits. Both have the
    # repository's buf.yaml, so that its module (with its excludes) and its breaking rules are
    # the ones that must catch them.
    mkdir -p "$work/base" "$work/changed" || exit 1
    cp -R "$source_dir/proto" "$work/base/" || exit 1
    cp -R "$source_dir/proto" "$work/changed/" || exit 1
    cp "$source_dir/buf.yaml" "$work/base/" || exit 1
    cp "$source_dir/buf.yaml" "$work/changed/" || exit 1
    cd "$work/changed" || exit 1

    # The unchanged copy passes: a failure below comes from the edits, not from the setup.
    if ! run_buf breaking --against "$work/base"; then
      echo "FAIL: an unchanged copy of proto/ is reported as breaking:" >&2
      cat "$work/out" >&2
      exit 1
    fi

    job="proto/exportjobs/v1/export_job.proto"
    # record_count int64 -> string (same number: a type change), and error_message 13 -> 30.
    sed -i -e 's/^  int64 record_count = 6;$/  string record_count = 6;/' \
      -e 's/^  string error_message = 13;$/  string error_message = 30;/' "$job" || exit 1
    if ! grep -q '^  string record_count = 6;$' "$job" ||
       ! grep -q '^  string error_message = 30;$' "$job"; then
      echo "FAIL: the edits did not apply to $job; update this test with the proto" >&2
      exit 1
    fi

    run_buf breaking --against "$work/base"
    rc=$?
    if [ "$rc" -eq 0 ]; then
      echo "FAIL: buf breaking accepted a field type change and a field number change" >&2
      exit 1
    fi
    # Exit code 100 means "breaking changes found"; anything else is buf failing to run.
    if [ "$rc" -ne 100 ]; then
      echo "FAIL: buf breaking exited $rc, not 100 (breaking changes found):" >&2
      cat "$work/out" >&2
      exit 1
    fi
    for expected in 'Field "6" with name "record_count" .* changed type from "int64" to "string"' \
                    'Previously present field "13" with name "error_message" .* was deleted'; do
      if ! grep -Eq "$expected" "$work/out"; then
        echo "FAIL: buf breaking did not report /$expected/; it said:" >&2
        cat "$work/out" >&2
        exit 1
      fi
    done
    echo "PASS: buf breaking reported the changes:"
    cat "$work/out"
    ;;

  *)
    echo "unknown mode '$mode': lint, breaking or detects" >&2
    exit 2
    ;;
esac
