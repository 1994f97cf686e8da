// The server stream of DownloadExport: a completed job's file (part 0) or one part, in chunks of
// up to 1 MiB, read on the I/O executor one chunk ahead of nothing (the next read starts when
// the previous write is done), so memory per download is one chunk.
//
// Thread safety: driven by gRPC and the executor from any thread.
#pragma once

#include <string>

#include "common/clock.h"
#include "exportjobs/v1/export_service.pb.h"
#include "grpcpp/grpcpp.h"
#include "server/call_tracker.h"
#include "server/executor.h"
#include "storage/blob_store.h"
#include "storage/job_store.h"

namespace exportd {

// Starts a download for `tenant`. The request must have a well-formed id and part >= 0.
// Errors end the stream: NOT_FOUND (unknown job or part), FAILED_PRECONDITION (not completed,
// or expired). `calls` has counted the call in; the stream counts it out when done.
grpc::ServerWriteReactor<exportjobs::v1::DownloadExportResponse>* StartDownload(
    const JobStore* store, const BlobStore* blobs, Executor* io, const Clock* clock,
    CallTracker* calls, std::string tenant, const exportjobs::v1::DownloadExportRequest& request);

}  // namespace exportd
