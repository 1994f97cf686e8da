#!/usr/bin/env bash
# Re-creates the binary seeds of tests/fuzz/corpus/ from the text-format protos here:
#   *.create.txtpb -> fuzz_create_request (CreateExportJobRequest)
#   *.job.txtpb    -> fuzz_job_json (ExportJob)
#   *.list.txtpb   -> fuzz_job_json (ListExportJobsResponse)
# Run it after changing a .txtpb file, and commit the results.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
corpus="$here/../corpus"
encode() {  # <message type> <proto file> <input> <output>
  protoc -I "$root/proto" --encode="$1" "$2" <"$3" >"$4"
}
for f in "$here"/*.create.txtpb; do
  encode exportjobs.v1.CreateExportJobRequest exportjobs/v1/export_service.proto "$f" \
    "$corpus/fuzz_create_request/$(basename "$f" .create.txtpb).bin"
done
for f in "$here"/*.job.txtpb; do
  encode exportjobs.v1.ExportJob exportjobs/v1/export_job.proto "$f" \
    "$corpus/fuzz_job_json/$(basename "$f" .job.txtpb).bin"
done
for f in "$here"/*.list.txtpb; do
  encode exportjobs.v1.ListExportJobsResponse exportjobs/v1/export_service.proto "$f" \
    "$corpus/fuzz_job_json/$(basename "$f" .list.txtpb).bin"
done
