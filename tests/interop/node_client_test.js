// A Node.js client of exportjobs.v1 against the real export-server and export-worker.
//
// The client loads proto/ at run time with @grpc/proto-loader (keepCase: field names exactly as
// in the .proto files) and calls the server with @grpc/grpc-js, both from tests/node/node_modules:
//
//   NODE_PATH=tests/node/node_modules node node_client_test.js \
//       --export_server=PATH --export_worker=PATH --proto_dir=proto
//
// It seeds a small demo SQLite database with `export-worker seed-demo`, starts export-server
// (ports 0) and one export-worker, creates a filtered multi-part CSV export of accounts, follows
// it with WatchExportJob until COMPLETED, downloads the file from download_url over HTTP and every
// part with DownloadExport, and checks sizes, SHA-256s and record counts against the job. Error
// paths: NOT_FOUND and INVALID_ARGUMENT (naming the field), UNAUTHENTICATED without a token and
// PERMISSION_DENIED with the worker's token. The server runs with a tokens file of random tokens;
// the client sends its token on every call (a client interceptor). Both processes are stopped with
// SIGTERM and must exit 0. Every call has a deadline; waits read the processes' output or the
// watch stream, never sleep.
'use strict';

const childProcess = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');
const readline = require('readline');

let grpc;
let protoLoader;
try {
  grpc = require('@grpc/grpc-js');
  protoLoader = require('@grpc/proto-loader');
} catch (error) {
  console.error(`FAIL: ${error.message}\n@grpc/grpc-js and @grpc/proto-loader come from ` +
                `tests/node/node_modules (NODE_PATH=${process.env.NODE_PATH || ''}); ` +
                'run deploy/install-deps.sh (npm ci in tests/node)');
  process.exit(1);
}

const CALL_TIMEOUT_MS = 10000;  // every unary call and each download
const JOB_TIMEOUT_MS = 30000;   // create -> COMPLETED on the watch stream
const PROCESS_TIMEOUT_MS = 20000;  // process start and exit

const FIELDS = ['id', 'name', 'country', 'employee_count'];
const COUNTRIES = ['DE', 'US'];

class TestFailure extends Error {}

function check(condition, message) {
  if (!condition) throw new TestFailure(message);
}

function deadline(ms) {
  return Date.now() + ms;
}

// --- Processes -------------------------------------------------------------------------------

function onPath(command) {
  return (process.env.PATH || '').split(path.delimiter)
      .some((dir) => dir && fs.existsSync(path.join(dir, command)));
}

// A child process whose stdout lines and stderr are collected as they come.
class Child {
  constructor(name, args) {
    this.name = name;
    // setpriv --pdeathsig: the child is killed if this test dies without stopping it.
    const argv = onPath('setpriv') ? ['setpriv', '--pdeathsig', 'KILL', '--', ...args] : args;
    this.proc = childProcess.spawn(argv[0], argv.slice(1), {stdio: ['ignore', 'pipe', 'pipe']});
    this.stdout = [];
    this.stderr = '';
    this.waiters = [];
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => {
      this.exit = {code, signal};
      resolve(this.exit);
    }));
    this.proc.on('error', (error) => {
      this.stderr += `spawn: ${error.message}\n`;
    });
    readline.createInterface({input: this.proc.stdout}).on('line', (line) => {
      this.stdout.push(line);
      this.wake();
    }).on('close', () => {
      this.stdoutClosed = true;
      this.wake();
    });
    this.proc.stderr.on('data', (chunk) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-65536);
    });
  }

  wake() {
    for (const waiter of this.waiters.splice(0)) waiter();
  }

  output() {
    return `${this.name} stdout:\n${this.stdout.join('\n')}\n${this.name} stderr:\n${this.stderr}`;
  }

  // The first stdout line starting with `prefix`, waiting at most `timeoutMs`.
  awaitLine(prefix, timeoutMs = PROCESS_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new TestFailure(
          `${this.name} printed no '${prefix}' line in ${timeoutMs} ms\n${this.output()}`)),
                               timeoutMs);
      const look = () => {
        const line = this.stdout.find((l) => l.startsWith(prefix));
        if (line !== undefined) {
          clearTimeout(timer);
          resolve(line);
        } else if (this.stdoutClosed) {
          clearTimeout(timer);
          reject(new TestFailure(
              `${this.name} closed its stdout before printing '${prefix}'\n${this.output()}`));
        } else {
          this.waiters.push(look);
        }
      };
      look();
    });
  }

  // SIGTERM, then the exit ({code, signal}); a failure if it takes over PROCESS_TIMEOUT_MS.
  async terminate() {
    this.proc.kill('SIGTERM');
    let timer;
    const timeout = new Promise((resolve, reject) => {
      timer = setTimeout(() => {
        this.kill();
        reject(new TestFailure(
            `${this.name} still ran ${PROCESS_TIMEOUT_MS} ms after SIGTERM\n${this.output()}`));
      }, PROCESS_TIMEOUT_MS);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill() {
    if (this.exit === undefined) this.proc.kill('SIGKILL');
  }
}

// --- The client: load, create, watch, download (docs/clients.md quotes these) ----------------

// Sends `authorization: Bearer <token>` with every call of a client.
function bearerToken(token) {
  return (options, nextCall) => new grpc.InterceptingCall(nextCall(options), {
    start(metadata, listener, next) {
      metadata.set('authorization', `Bearer ${token}`);
      next(metadata, listener);
    },
  });
}

// An ExportService client; with a token, it sends it on every call.
function loadExportService(protoDir, address, token) {
  const definition = protoLoader.loadSync('exportjobs/v1/export_service.proto', {
    includeDirs: [protoDir],  // google/protobuf/*.proto are built into proto-loader
    keepCase: true,           // download_url, not downloadUrl
    longs: String,            // int64 as decimal strings
    enums: String,            // 'EXPORT_JOB_STATUS_COMPLETED'
    defaults: true,           // unset fields as their zero values
  });
  const {ExportService} = grpc.loadPackageDefinition(definition).exportjobs.v1;
  const interceptors = token === undefined ? [] : [bearerToken(token)];
  return new ExportService(address, grpc.credentials.createInsecure(), {interceptors});
}

// google.protobuf.Struct from a plain object. proto-loader builds the well-known types in from
// its own definitions, whose field names are camelCase (stringValue) even with keepCase.
function toValue(value) {
  if (value === null) return {nullValue: 'NULL_VALUE'};
  if (Array.isArray(value)) return {listValue: {values: value.map(toValue)}};
  switch (typeof value) {
    case 'string': return {stringValue: value};
    case 'number': return {numberValue: value};
    case 'boolean': return {boolValue: value};
    default: return {structValue: toStruct(value)};
  }
}
function toStruct(object) {
  return {fields: Object.fromEntries(Object.entries(object).map(([k, v]) => [k, toValue(v)]))};
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, {deadline: deadline(CALL_TIMEOUT_MS)},
                   (error, response) => (error ? reject(error) : resolve(response)));
  });
}

function createAccountsExport(client) {
  return unary(client, 'CreateExportJob', {
    entity_type: 'ENTITY_TYPE_ACCOUNTS',
    fields: FIELDS,
    filters: toStruct({country: {in: COUNTRIES}}),
    format: 'EXPORT_FORMAT_CSV',
    part_size_bytes: 1024,  // the smallest allowed: several parts
  });
}

// Follows the job until it is COMPLETED, FAILED or CANCELLED; resolves to that ExportJob.
function watchUntilTerminal(client, id) {
  const terminal = ['EXPORT_JOB_STATUS_COMPLETED', 'EXPORT_JOB_STATUS_FAILED',
                    'EXPORT_JOB_STATUS_CANCELLED'];
  return new Promise((resolve, reject) => {
    const call = client.WatchExportJob({id}, {deadline: deadline(JOB_TIMEOUT_MS)});
    call.on('data', (event) => {
      if (terminal.includes(event.job.status)) {
        resolve(event.job);
        call.cancel();  // its CANCELLED error below comes after the resolve
      }
    });
    call.on('error', reject);
    call.on('end', () => reject(new TestFailure(`the watch of ${id} ended before a final state`)));
  });
}

// DownloadExport: part 0 is the whole file, 1..file_parts one part.
function downloadPart(client, id, part) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    const call = client.DownloadExport({id, part}, {deadline: deadline(CALL_TIMEOUT_MS)});
    call.on('data', (response) => chunks.push(response.chunk));
    call.on('error', reject);  // grpc-js emits a failed status before 'end'
    call.on('end', () => resolve(Buffer.concat(chunks)));
  });
}

async function downloadUrl(url) {
  const response = await fetch(url, {signal: AbortSignal.timeout(CALL_TIMEOUT_MS)});
  check(response.status === 200, `GET ${url}: HTTP ${response.status}`);
  const body = Buffer.from(await response.arrayBuffer());
  const length = response.headers.get('content-length');
  check(length === String(body.length), `Content-Length ${length}, body ${body.length} bytes`);
  return body;
}

// --- The test --------------------------------------------------------------------------------

// RFC 4180 records: fields separated by commas, records ending with CRLF, quoted fields may hold
// commas, line breaks and doubled quotes.
function parseCsv(text) {
  const records = [];
  let record = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; ++i) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        ++i;
      } else if (c === '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c === '"') {
      quoted = true;
    } else if (c === ',') {
      record.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      record.push(field);
      records.push(record);
      record = [];
      field = '';
      ++i;
    } else {
      field += c;
    }
  }
  check(!quoted && field === '' && record.length === 0, 'the CSV does not end with CRLF');
  return records;
}

// `promise` must fail with `code` and a message containing every one of `words`.
async function expectRpcError(promise, code, ...words) {
  const name = Object.keys(grpc.status).find((k) => grpc.status[k] === code);
  let error;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  check(error !== undefined, `the call succeeded; want ${name}`);
  check(error.code === code, `got code ${error.code} (${error.details}), want ${name}`);
  for (const word of words) {
    check(error.details.includes(word), `${name} message '${error.details}' does not name ${word}`);
  }
  return error.details;
}

async function run(args, temp) {
  const db = path.join(temp, 'demo.db');
  const seed = childProcess.spawnSync(
      args.export_worker, ['seed-demo', `--source=${db}`, '--accounts=300', '--seed=7'],
      {timeout: PROCESS_TIMEOUT_MS, encoding: 'utf8'});
  check(seed.status === 0,
        `seed-demo exited ${seed.status} ${seed.error || ''}: ${seed.stdout}${seed.stderr}`);

  // A tokens file with random tokens: a client's and a worker's.
  const clientToken = crypto.randomBytes(24).toString('hex');
  const workerToken = crypto.randomBytes(24).toString('hex');
  const tokens = path.join(temp, 'tokens');
  fs.writeFileSync(tokens, `# token principal tenant role\n${clientToken} node-client acme client\n` +
                           `${workerToken} node-worker ops worker\n`);
  const workerTokenFile = path.join(temp, 'worker.token');
  fs.writeFileSync(workerTokenFile, `${workerToken}\n`);

  const children = [];
  let client;
  try {
    const server = new Child('export-server', [
      args.export_server, `--data_dir=${path.join(temp, 'server')}`,
      '--grpc_address=127.0.0.1:0', '--http_address=127.0.0.1:0', `--tokens_file=${tokens}`]);
    children.push(server);
    const httpAddress = (await server.awaitLine('http listening on ')).split(' ').pop();
    const grpcAddress = (await server.awaitLine('grpc listening on ')).split(' ').pop();
    const worker = new Child('export-worker', [
      args.export_worker, `--server=${grpcAddress}`, `--source=${db}`, '--worker_id=node1',
      '--heartbeat_interval=200ms', '--claim_wait=5s', '--rpc_timeout=10s', `--work_dir=${temp}`,
      `--token_file=${workerTokenFile}`]);
    children.unshift(worker);
    await worker.awaitLine('export-worker node1 ready');

    client = loadExportService(args.proto_dir, grpcAddress, clientToken);
    await new Promise((resolve, reject) => client.waitForReady(
        deadline(CALL_TIMEOUT_MS), (error) => (error ? reject(error) : resolve())));

    const created = await createAccountsExport(client);
    check(created.id.length === 24, `job id ${created.id}`);
    check(created.fields.join() === FIELDS.join(), `fields ${created.fields}`);
    const job = await watchUntilTerminal(client, created.id);
    check(job.status === 'EXPORT_JOB_STATUS_COMPLETED',
          `job ended ${job.status}: '${job.error_message}'\n${worker.output()}`);
    const recordCount = Number(job.record_count);
    const fileSize = Number(job.file_size_bytes);
    console.log(`ok: job ${job.id} completed: ${recordCount} records, ${job.file_parts} parts, ` +
                `${fileSize} bytes`);

    // The manifest.
    check(job.file_parts > 1, `${job.file_parts} parts; want several with 1 KiB parts`);
    check(job.parts.length === job.file_parts,
          `${job.parts.length} parts in the manifest, file_parts ${job.file_parts}`);
    check(job.parts.reduce((sum, p) => sum + Number(p.size_bytes), 0) === fileSize,
          'part sizes do not add up to file_size_bytes');
    check(job.parts.reduce((sum, p) => sum + Number(p.record_count), 0) === recordCount,
          'part record counts do not add up to record_count');
    check(job.download_url.startsWith(`http://${httpAddress}/`),
          `download_url ${job.download_url} is not on ${httpAddress}`);

    // The whole file over HTTP.
    const file = await downloadUrl(job.download_url);
    check(file.length === fileSize, `HTTP file ${file.length} bytes, file_size_bytes ${fileSize}`);
    const rows = parseCsv(file.toString('utf8'));
    check(rows.length > 0 && rows[0].join() === FIELDS.join(), `header ${rows[0]}`);
    check(rows.length - 1 === recordCount,
          `${rows.length - 1} data lines, record_count ${recordCount}`);
    check(recordCount > 0, 'the filter selected no accounts');
    for (const row of rows.slice(1)) {
      check(COUNTRIES.includes(row[2]), `account ${row[0]} has country '${row[2]}'`);
    }
    console.log(`ok: HTTP download: ${file.length} bytes, ${rows.length - 1} data lines`);

    // Each part over gRPC, against the manifest; joined in order they are the file.
    const parts = [];
    for (const part of job.parts) {
      const data = await downloadPart(client, job.id, part.part_number);
      check(data.length === Number(part.size_bytes),
            `part ${part.part_number}: ${data.length} bytes, manifest ${part.size_bytes}`);
      const digest = crypto.createHash('sha256').update(data).digest('hex');
      check(digest === part.sha256,
            `part ${part.part_number}: SHA-256 ${digest}, manifest ${part.sha256}`);
      parts.push(data);
    }
    check(Buffer.concat(parts).equals(file), 'the parts joined differ from the HTTP file');
    check((await downloadPart(client, job.id, 0)).equals(file),
          'DownloadExport part 0 differs from the HTTP file');
    console.log(`ok: ${parts.length} parts over DownloadExport match their SHA-256s`);

    // BatchCreateExportJobs: a result per item, in order; a bad item fails alone; a repeated
    // request_id gives the same job.
    const requestId = `node-batch-${crypto.randomBytes(8).toString('hex')}`;
    const good = {
      entity_type: 'ENTITY_TYPE_ACCOUNTS',
      fields: ['id', 'name'],
      request_id: requestId,
    };
    const batch = await unary(client, 'BatchCreateExportJobs',
                              {requests: [good, {fields: ['id']}, good]});
    check(batch.results.length === 3, `${batch.results.length} results for 3 requests`);
    const [first, bad, again] = batch.results;
    check(first.job && first.job.request_id === requestId, `item 0: ${JSON.stringify(first)}`);
    check(!bad.job && bad.error && bad.error.code === grpc.status.INVALID_ARGUMENT &&
              bad.error.message.startsWith('requests[1].entity_type'),
          `item 1: ${JSON.stringify(bad)}`);
    check(again.job && again.job.id === first.job.id,
          `item 2 (the same request_id) is ${JSON.stringify(again)}, not job ${first.job.id}`);
    console.log(`ok: BatchCreateExportJobs: job ${first.job.id}, '${bad.error.message}', ` +
                'the same job again');

    // Error paths.
    const unknown = '0'.repeat(24);
    await expectRpcError(unary(client, 'GetExportJob', {id: unknown}), grpc.status.NOT_FOUND,
                         unknown);
    await expectRpcError(downloadPart(client, unknown, 0), grpc.status.NOT_FOUND, unknown);
    await expectRpcError(unary(client, 'GetExportJob', {id: 'not-a-job'}),
                         grpc.status.INVALID_ARGUMENT, 'id', 'not-a-job');
    const message = await expectRpcError(
        unary(client, 'CreateExportJob',
              {entity_type: 'ENTITY_TYPE_ACCOUNTS', fields: ['id', 'no_such_field']}),
        grpc.status.INVALID_ARGUMENT, 'fields[1]', 'no_such_field');
    await expectRpcError(unary(client, 'CreateExportJob', {fields: ['id']}),
                         grpc.status.INVALID_ARGUMENT, 'entity_type');
    await expectRpcError(downloadPart(client, job.id, job.file_parts + 1), grpc.status.NOT_FOUND);
    console.log(`ok: error paths (e.g. '${message}')`);

    // Authentication: no token, an unknown one, the worker's token.
    for (const [token, code, words] of [
      [undefined, grpc.status.UNAUTHENTICATED, ['authorization']],
      [crypto.randomBytes(24).toString('hex'), grpc.status.UNAUTHENTICATED, ['unknown token']],
      [workerToken, grpc.status.PERMISSION_DENIED, ['role worker', 'GetExportJob']],
    ]) {
      const other = loadExportService(args.proto_dir, grpcAddress, token);
      try {
        await expectRpcError(unary(other, 'GetExportJob', {id: job.id}), code, ...words);
      } finally {
        other.close();
      }
    }
    console.log('ok: UNAUTHENTICATED without a token, PERMISSION_DENIED for the worker\'s');
    client.close();
    client = undefined;

    // Workers first: on SIGTERM they give their jobs back to the server.
    while (children.length > 0) {
      const child = children[0];
      const exit = await child.terminate();
      children.shift();
      check(exit.code === 0, `${child.name} exited with code ${exit.code} signal ${exit.signal} ` +
                             `after SIGTERM\n${child.output()}`);
    }
    console.log('ok: worker and server exited 0 after SIGTERM');
  } finally {
    if (client !== undefined) client.close();
    for (const child of children) child.kill();
  }
}

function parseArgs(argv) {
  const args = {};
  for (const arg of argv) {
    const match = /^--([a-z_]+)=(.*)$/.exec(arg);
    if (!match) throw new TestFailure(`unknown argument ${arg}`);
    args[match[1]] = match[2];
  }
  for (const name of ['export_server', 'export_worker', 'proto_dir']) {
    if (!args[name]) throw new TestFailure(`--${name} is required`);
  }
  return args;
}

async function main() {
  const started = Date.now();
  const temp = fs.mkdtempSync(path.join(os.tmpdir(), 'exportd-interop-node-'));
  try {
    await run(parseArgs(process.argv.slice(2)), temp);
  } catch (error) {
    console.error(`FAIL: ${error instanceof TestFailure ? error.message : error.stack}`);
    return 1;
  } finally {
    fs.rmSync(temp, {recursive: true, force: true});
  }
  console.log(`PASS in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return 0;
}

main().then((code) => {
  process.exitCode = code;
});
