#!/usr/bin/python3
"""A Python client of exportjobs.v1 against the real export-server and export-worker.

Stubs are generated from proto/ at build time (protoc + grpc_python_plugin, see CMakeLists.txt)
into a directory that PYTHONPATH names; the test runs with Debian's python3-grpcio and
python3-protobuf:

  PYTHONPATH=BUILD/tests/interop/python /usr/bin/python3 python_client_test.py \
      --export_server=PATH --export_worker=PATH

It seeds a small demo SQLite database with `export-worker seed-demo`, starts export-server
(ports 0) and one export-worker, creates a filtered multi-part CSV export of accounts, follows
it with WatchExportJob until COMPLETED, downloads the file from download_url over HTTP and every
part with DownloadExport, and checks sizes, SHA-256s and record counts against the job. Error
paths: NOT_FOUND and INVALID_ARGUMENT (naming the field), UNAUTHENTICATED without a token and
PERMISSION_DENIED with the worker's token. The server runs with a tokens file of random
tokens; the client sends its token on every call (a client interceptor). Both processes are stopped with
SIGTERM and must exit 0. Every call has a deadline; waits read the processes' output or the
watch stream, never sleep.
"""

import argparse
import csv
import hashlib
import io
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

try:
    import grpc
    from exportjobs.v1 import export_job_pb2 as job_pb2
    from exportjobs.v1 import export_service_pb2 as service_pb2
    from exportjobs.v1 import export_service_pb2_grpc as service_grpc
except ImportError as error:
    sys.exit("FAIL: %s: the generated stubs must be on PYTHONPATH (build the target "
             "interop_python_stubs; ctest sets PYTHONPATH), and python3-grpcio and "
             "python3-protobuf installed" % error)

CALL_TIMEOUT = 10  # seconds, every unary call and each download
JOB_TIMEOUT = 30  # seconds, create -> COMPLETED on the watch stream
PROCESS_TIMEOUT = 20  # seconds, process start and exit

FIELDS = ["id", "name", "country", "employee_count"]
COUNTRIES = {"US", "DE"}


class TestFailure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise TestFailure(message)


class Child:
    """A child process whose stdout lines and stderr are drained by threads of their own."""

    def __init__(self, name, args):
        self.name = name
        # setpriv --pdeathsig: the child is killed if this test dies without stopping it.
        prefix = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
        self.proc = subprocess.Popen(prefix + args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines = queue.Queue()
        self.stdout = []
        self.stderr = bytearray()
        self._threads = [threading.Thread(target=self._drain_stdout, daemon=True),
                         threading.Thread(target=self._drain_stderr, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _drain_stdout(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)  # EOF

    def _drain_stderr(self):
        while True:
            chunk = self.proc.stderr.read1(65536)
            if not chunk:
                return
            self.stderr += chunk
            del self.stderr[:-65536]

    def output(self):
        return "%s stdout:\n%s\n%s stderr:\n%s" % (
            self.name, "\n".join(self.stdout), self.name,
            self.stderr.decode("utf-8", "replace"))

    def await_line(self, prefix, timeout=PROCESS_TIMEOUT):
        """The first stdout line starting with `prefix`, waiting at most `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(remaining, 0))
            except queue.Empty:
                raise TestFailure("%s printed no '%s' line in %ss\n%s" %
                                  (self.name, prefix, timeout, self.output()))
            if line is None:
                self.proc.wait(timeout=PROCESS_TIMEOUT)
                raise TestFailure("%s exited (%s) before printing '%s'\n%s" %
                                  (self.name, self.proc.returncode, prefix, self.output()))
            if line.startswith(prefix):
                return line

    def terminate(self):
        """SIGTERM, then the exit code (a failure if it takes longer than PROCESS_TIMEOUT)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=PROCESS_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure("%s still ran %ss after SIGTERM\n%s" %
                              (self.name, PROCESS_TIMEOUT, self.output()))
        for thread in self._threads:
            thread.join(timeout=PROCESS_TIMEOUT)
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# --- The client: create, watch, download (docs/clients.md quotes these) ---------------------

class _CallDetails(grpc.ClientCallDetails):
    def __init__(self, method, timeout, metadata, credentials, wait_for_ready, compression):
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


class BearerToken(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Sends `authorization: Bearer <token>` with every call of the channel it intercepts."""

    def __init__(self, token):
        self._header = ("authorization", "Bearer " + token)

    def _details(self, details):
        metadata = list(details.metadata or []) + [self._header]
        return _CallDetails(details.method, details.timeout, metadata, details.credentials,
                            getattr(details, "wait_for_ready", None),
                            getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._details(details), request)


def write_tokens(temp):
    """A tokens file with a random client and worker token; returns (path, client, worker)."""
    client, worker = secrets.token_hex(24), secrets.token_hex(24)
    path = os.path.join(temp, "tokens")
    with open(path, "w") as out:
        out.write("# token principal tenant role\n")
        out.write("%s python-client acme client\n%s py-worker ops worker\n" % (client, worker))
    worker_file = os.path.join(temp, "worker.token")
    with open(worker_file, "w") as out:
        out.write(worker + "\n")
    return path, client, worker, worker_file


def create_accounts_export(stub):
    request = service_pb2.CreateExportJobRequest(
        entity_type=job_pb2.ENTITY_TYPE_ACCOUNTS,
        fields=FIELDS,
        format=job_pb2.EXPORT_FORMAT_CSV,
        part_size_bytes=1024,  # the smallest allowed: several parts
    )
    request.filters.update({"country": {"in": sorted(COUNTRIES)}})
    return stub.CreateExportJob(request, timeout=CALL_TIMEOUT)


def watch_until_terminal(stub, job_id):
    """Follows the job until it is COMPLETED, FAILED or CANCELLED; returns that ExportJob."""
    terminal = {job_pb2.EXPORT_JOB_STATUS_COMPLETED, job_pb2.EXPORT_JOB_STATUS_FAILED,
                job_pb2.EXPORT_JOB_STATUS_CANCELLED}
    request = service_pb2.WatchExportJobRequest(id=job_id)
    stream = stub.WatchExportJob(request, timeout=JOB_TIMEOUT)
    try:
        for event in stream:
            if event.job.status in terminal:
                return event.job
    finally:
        stream.cancel()
    raise TestFailure("the watch of %s ended before a terminal state" % job_id)


def download_part(stub, job_id, part):
    """DownloadExport: part 0 is the whole file, 1..file_parts one part."""
    request = service_pb2.DownloadExportRequest(id=job_id, part=part)
    return b"".join(response.chunk
                    for response in stub.DownloadExport(request, timeout=CALL_TIMEOUT))


def download_url(url):
    with urllib.request.urlopen(url, timeout=CALL_TIMEOUT) as response:
        check(response.status == 200, "GET %s: HTTP %s" % (url, response.status))
        body = response.read()
        length = response.headers.get("Content-Length")
        check(length == str(len(body)), "Content-Length %s, body %d bytes" % (length, len(body)))
        return body


# --- The test --------------------------------------------------------------------------------

def expect_rpc_error(call, code, *words):
    """Runs `call`; it must fail with `code` and a message containing every one of `words`."""
    try:
        call()
    except grpc.RpcError as error:
        check(error.code() == code, "got %s (%s), want %s" % (error.code(), error.details(), code))
        for word in words:
            check(word in error.details(),
                  "%s message %r does not name %r" % (code, error.details(), word))
        return error.details()
    raise TestFailure("the call succeeded; want %s" % code)


def run(args, temp):
    db = os.path.join(temp, "demo.db")
    seed = subprocess.run([args.export_worker, "seed-demo", "--source=" + db, "--accounts=300",
                           "--seed=7"], capture_output=True, timeout=PROCESS_TIMEOUT)
    check(seed.returncode == 0, "seed-demo exited %d: %s%s" %
          (seed.returncode, seed.stdout.decode(), seed.stderr.decode()))

    tokens, client_token, worker_token, worker_token_file = write_tokens(temp)
    server = Child("export-server", [
        args.export_server, "--data_dir=" + os.path.join(temp, "server"),
        "--grpc_address=127.0.0.1:0", "--http_address=127.0.0.1:0", "--tokens_file=" + tokens])
    children = [server]
    try:
        http_address = server.await_line("http listening on ").split()[-1]
        grpc_address = server.await_line("grpc listening on ").split()[-1]
        worker = Child("export-worker", [
            args.export_worker, "--server=" + grpc_address, "--source=" + db,
            "--worker_id=py1", "--heartbeat_interval=200ms", "--claim_wait=5s",
            "--rpc_timeout=10s", "--work_dir=" + temp, "--token_file=" + worker_token_file])
        children.insert(0, worker)
        worker.await_line("export-worker py1 ready")

        with grpc.insecure_channel(grpc_address) as plain:
            grpc.channel_ready_future(plain).result(timeout=CALL_TIMEOUT)
            channel = grpc.intercept_channel(plain, BearerToken(client_token))
            stub = service_grpc.ExportServiceStub(channel)

            created = create_accounts_export(stub)
            check(len(created.id) == 24, "job id %r" % created.id)
            check(list(created.fields) == FIELDS, "fields %s" % list(created.fields))
            job = watch_until_terminal(stub, created.id)
            check(job.status == job_pb2.EXPORT_JOB_STATUS_COMPLETED,
                  "job ended %s: %r\n%s" % (job_pb2.ExportJobStatus.Name(job.status),
                                            job.error_message, worker.output()))
            print("ok: job %s completed: %d records, %d parts, %d bytes" %
                  (job.id, job.record_count, job.file_parts, job.file_size_bytes))

            # The manifest.
            check(job.file_parts > 1, "%d parts; want several with 1 KiB parts" % job.file_parts)
            check(len(job.parts) == job.file_parts,
                  "%d parts in the manifest, file_parts %d" % (len(job.parts), job.file_parts))
            check(sum(p.size_bytes for p in job.parts) == job.file_size_bytes,
                  "part sizes do not add up to file_size_bytes")
            check(sum(p.record_count for p in job.parts) == job.record_count,
                  "part record counts do not add up to record_count")
            check(job.download_url.startswith("http://%s/" % http_address),
                  "download_url %s is not on %s" % (job.download_url, http_address))

            # The whole file over HTTP.
            file = download_url(job.download_url)
            check(len(file) == job.file_size_bytes,
                  "HTTP file %d bytes, file_size_bytes %d" % (len(file), job.file_size_bytes))
            rows = list(csv.reader(io.StringIO(file.decode("utf-8"), newline="")))
            check(rows and rows[0] == FIELDS, "header %s" % (rows[:1],))
            check(len(rows) - 1 == job.record_count,
                  "%d data lines, record_count %d" % (len(rows) - 1, job.record_count))
            check(job.record_count > 0, "the filter selected no accounts")
            for row in rows[1:]:
                check(row[2] in COUNTRIES, "account %s has country %r" % (row[0], row[2]))
            print("ok: HTTP download: %d bytes, %d data lines" % (len(file), len(rows) - 1))

            # Each part over gRPC, against the manifest; joined in order they are the file.
            joined = b""
            for part in job.parts:
                data = download_part(stub, job.id, part.part_number)
                check(len(data) == part.size_bytes, "part %d: %d bytes, manifest %d" %
                      (part.part_number, len(data), part.size_bytes))
                digest = hashlib.sha256(data).hexdigest()
                check(digest == part.sha256, "part %d: SHA-256 %s, manifest %s" %
                      (part.part_number, digest, part.sha256))
                joined += data
            check(joined == file, "the parts joined differ from the HTTP file")
            check(download_part(stub, job.id, 0) == file,
                  "DownloadExport part 0 differs from the HTTP file")
            print("ok: %d parts over DownloadExport match their SHA-256s" % len(job.parts))

            # BatchCreateExportJobs: a result per item, in order; a bad item fails alone; a
            # repeated request_id gives the same job.
            request_id = "py-batch-" + secrets.token_hex(8)
            good = service_pb2.CreateExportJobRequest(
                entity_type=job_pb2.ENTITY_TYPE_ACCOUNTS, fields=["id", "name"],
                request_id=request_id)
            batch = stub.BatchCreateExportJobs(service_pb2.BatchCreateExportJobsRequest(
                requests=[good, service_pb2.CreateExportJobRequest(fields=["id"]), good]),
                timeout=CALL_TIMEOUT)
            check(len(batch.results) == 3, "%d results for 3 requests" % len(batch.results))
            first, bad, again = batch.results
            check(first.WhichOneof("result") == "job", "item 0: %s" % first)
            check(first.job.request_id == request_id, "item 0 request_id %r" % first.job.request_id)
            check(bad.WhichOneof("result") == "error", "item 1: %s" % bad)
            check(bad.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0],
                  "item 1 code %d" % bad.error.code)
            check(bad.error.message.startswith("requests[1].entity_type"),
                  "item 1 message %r" % bad.error.message)
            check(again.WhichOneof("result") == "job" and again.job.id == first.job.id,
                  "item 2 (the same request_id) is %s, not job %s" % (again, first.job.id))
            print("ok: BatchCreateExportJobs: job %s, %r, the same job again" %
                  (first.job.id, bad.error.message))

            # Error paths.
            unknown = "0" * 24
            expect_rpc_error(lambda: stub.GetExportJob(
                service_pb2.GetExportJobRequest(id=unknown), timeout=CALL_TIMEOUT),
                grpc.StatusCode.NOT_FOUND, unknown)
            expect_rpc_error(lambda: download_part(stub, unknown, 0),
                             grpc.StatusCode.NOT_FOUND, unknown)
            expect_rpc_error(lambda: stub.GetExportJob(
                service_pb2.GetExportJobRequest(id="not-a-job"), timeout=CALL_TIMEOUT),
                grpc.StatusCode.INVALID_ARGUMENT, "id", "not-a-job")
            message = expect_rpc_error(lambda: stub.CreateExportJob(
                service_pb2.CreateExportJobRequest(entity_type=job_pb2.ENTITY_TYPE_ACCOUNTS,
                                          fields=["id", "no_such_field"]),
                timeout=CALL_TIMEOUT),
                grpc.StatusCode.INVALID_ARGUMENT, "fields[1]", "no_such_field")
            expect_rpc_error(lambda: stub.CreateExportJob(
                service_pb2.CreateExportJobRequest(fields=["id"]), timeout=CALL_TIMEOUT),
                grpc.StatusCode.INVALID_ARGUMENT, "entity_type")
            expect_rpc_error(lambda: download_part(stub, job.id, job.file_parts + 1),
                             grpc.StatusCode.NOT_FOUND)
            print("ok: error paths (e.g. %r)" % message)

            # Authentication: no token, an unknown one, the worker's token.
            anonymous = service_grpc.ExportServiceStub(plain)
            expect_rpc_error(lambda: anonymous.GetExportJob(
                service_pb2.GetExportJobRequest(id=job.id), timeout=CALL_TIMEOUT),
                grpc.StatusCode.UNAUTHENTICATED, "authorization")
            stranger = service_grpc.ExportServiceStub(
                grpc.intercept_channel(plain, BearerToken(secrets.token_hex(24))))
            expect_rpc_error(lambda: stranger.GetExportJob(
                service_pb2.GetExportJobRequest(id=job.id), timeout=CALL_TIMEOUT),
                grpc.StatusCode.UNAUTHENTICATED, "unknown token")
            as_worker = service_grpc.ExportServiceStub(
                grpc.intercept_channel(plain, BearerToken(worker_token)))
            expect_rpc_error(lambda: as_worker.GetExportJob(
                service_pb2.GetExportJobRequest(id=job.id), timeout=CALL_TIMEOUT),
                grpc.StatusCode.PERMISSION_DENIED, "role worker", "GetExportJob")
            print("ok: UNAUTHENTICATED without a token, PERMISSION_DENIED for the worker's")

        # Workers first: on SIGTERM they give their jobs back to the server.
        for child in list(children):
            code = child.terminate()
            children.remove(child)
            check(code == 0, "%s exited %s after SIGTERM\n%s" % (child.name, code, child.output()))
        print("ok: worker and server exited 0 after SIGTERM")
    finally:
        for child in children:
            child.kill()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export_server", required=True)
    parser.add_argument("--export_worker", required=True)
    args = parser.parse_args()
    started = time.monotonic()
    temp = tempfile.mkdtemp(prefix="exportd-interop-py-")
    try:
        run(args, temp)
    except TestFailure as failure:
        print("FAIL: %s" % failure, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    print("PASS in %.1f s" % (time.monotonic() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
