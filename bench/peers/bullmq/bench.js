// The BullMQ peer of exportd-bench: BullMQ on a running redis-server (bench/run.sh starts one on
// loopback with appendonly yes and appendfsync always, so every acknowledged write is fsynced
// like exportd's synced commits), driven the way its users drive it. One JSON line per run and a
// summary line (median, min, max over the runs) per measurement, in the shape exportd-bench
// prints, on stdout; progress on stderr.
//
//   node bench.js --redis=127.0.0.1:PORT --measurements=add,cycle,events [--runs=5] [sizes]
//
//   add     (lines "bullmq_add") Queue.add with exactly C calls in flight in one process, for each
//           C in --add_concurrency (default 1,64), --warmup_seconds then --add_seconds measured:
//           ops/s and p50/p99 latency. The job data has the shape of a CreateExportJobRequest
//           (entity_type, fields, filters), varied like exportd-bench's create requests.
//           Maps onto exportd's "create" (CreateExportJob with C calls in flight).
//   cycle   (lines "bullmq_cycle") --cycle_jobs jobs added untimed (Queue.addBulk), then
//           --cycle_processes worker processes, each one Worker with concurrency
//           --cycle_concurrency (default 4 x 16 = 64 job slots, as exportd's 64 loops over 4
//           connections), whose processor calls job.updateProgress once and returns. Timed from
//           starting the workers (Worker.run) to the last job's 'completed' event: jobs/s.
//           Maps onto exportd's "cycle" (claim, one progress report, an empty part upload,
//           complete; the part upload has no BullMQ counterpart).
//   events  (lines "bullmq_events") --events_listeners QueueEvents instances, spread over
//           --events_processes processes, each with its own Redis connection (XREAD BLOCK on the
//           queue's event stream) and a 'progress' listener; a Worker in this process runs one
//           job whose processor calls job.updateProgress at --events_rate per second for
//           --events_seconds. Latency from just before each updateProgress call to each
//           listener's 'progress' event (process.hrtime, CLOCK_MONOTONIC, shared by the
//           processes): p50/p99.
//           Maps onto exportd's "watch" (1,000 WatchExportJobs streams, each on its own stream,
//           receiving every one of 10 job changes per second): a BullMQ user's QueueEvents is
//           one Redis connection that receives every event of the queue, so 1,000 QueueEvents
//           are 1,000 remote watchers each receiving every update, and the fan-out happens in
//           the server (Redis) as in exportd.
//
// Redis is shared by every run; the data of a run is deleted (FLUSHALL, untimed) after it.
'use strict';

const { fork } = require('node:child_process');
const { Queue, QueueEvents, Worker } = require('bullmq');
const IORedis = require('ioredis');

// ------------------------------------------------------------------------------------------------
// Flags: --name=value; every value is a string until used.

const DEFAULTS = {
  redis: '',
  measurements: 'add,cycle,events',
  runs: '1',
  add_concurrency: '1,64',
  add_seconds: '5',
  warmup_seconds: '1',
  cycle_jobs: '5000',
  cycle_processes: '4',
  cycle_concurrency: '16',
  events_listeners: '1000',
  events_processes: '4',
  events_rate: '10',
  events_seconds: '10',
  timeout_seconds: '120',
};

function parseFlags(argv) {
  const flags = { ...DEFAULTS };
  for (const arg of argv) {
    const match = /^--([a-z_]+)=(.*)$/.exec(arg);
    if (!match || !(match[1] in DEFAULTS) && match[1] !== 'child') {
      throw new Error(`unknown argument "${arg}" (flags: ${Object.keys(DEFAULTS).join(', ')})`);
    }
    flags[match[1]] = match[2];
  }
  return flags;
}

function positive(flags, name) {
  const value = Number(flags[name]);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`--${name}: "${flags[name]}" is not a positive number`);
  }
  return value;
}

function connectionOf(flags) {
  const match = /^([^:]+):(\d+)$/.exec(flags.redis);
  if (!match) throw new Error(`--redis: "${flags.redis}" is not HOST:PORT`);
  // maxRetriesPerRequest null: what BullMQ requires of the connections its Workers use.
  return { host: match[1], port: Number(match[2]), maxRetriesPerRequest: null };
}

// ------------------------------------------------------------------------------------------------
// Clocks, statistics, output.

// Microseconds on CLOCK_MONOTONIC: comparable between the processes of one machine.
const nowUs = () => Number(process.hrtime.bigint() / 1000n);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

// Nearest-rank percentiles in microseconds, like exportd-bench's Latency.
function latencyOf(values) {
  if (values.length === 0) return { p50_us: 0, p99_us: 0, max_us: 0 };
  const sorted = Float64Array.from(values).sort();
  const at = (q) => sorted[Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length))) - 1];
  return { p50_us: at(0.5), p99_us: at(0.99), max_us: sorted[sorted.length - 1] };
}

// Median, min and max over the runs, like exportd-bench's Spread.
function spreadOf(values) {
  if (values.length === 0) return { median: 0, min: 0, max: 0 };
  const sorted = [...values].sort((a, b) => a - b);
  const n = sorted.length;
  const median = n % 2 === 1 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  const round = (x) => Math.round(x * 1000) / 1000;
  return { median: round(median), min: round(sorted[0]), max: round(sorted[n - 1]) };
}

function round1(x) {
  return Math.round(x * 10) / 10;
}

function printLine(object) {
  process.stdout.write(`${JSON.stringify(object)}\n`);
}

function log(message) {
  process.stderr.write(`bullmq: ${message}\n`);
}

// Deletes every key; fails fast (no reconnects) when Redis cannot be reached.
async function flushAll(connection) {
  const admin = new IORedis({ ...connection, maxRetriesPerRequest: 1, retryStrategy: () => null,
    connectTimeout: 5000 });
  try {
    await admin.flushall();
  } finally {
    admin.disconnect();
  }
}

// A job's data: the shape of exportd-bench's CreateExportJobRequest n (MakeRequest).
const ENTITY_TYPES = ['accounts', 'people', 'opportunities', 'activities', 'campaigns',
  'buying_groups'];
function exportJobData(n) {
  const entityType = ENTITY_TYPES[n % 6];
  let fields = ['id'];
  if (n % 2 === 0 && entityType !== 'accounts') fields.push('account_id');
  if (entityType === 'campaigns') fields = [];
  const filters = n % 3 === 0 ? { id: n } : {};
  return { entity_type: entityType, fields, filters };
}

// ------------------------------------------------------------------------------------------------
// add: C calls of Queue.add always in flight.

async function runAddOnce(connection, run, inFlight, warmupS, measureS) {
  const queue = new Queue(`bench-add-${run}-${inFlight}`, { connection });
  await queue.waitUntilReady();
  const windowStart = nowUs() + warmupS * 1e6;
  const windowEnd = windowStart + measureS * 1e6;
  const latencies = [];
  let errors = 0;
  let firstError = '';
  let stop = false;
  const slot = async (index) => {
    for (let n = index; !stop; n += inFlight) {
      const start = nowUs();
      try {
        await queue.add('export', exportJobData(n));
        const end = nowUs();
        if (end >= windowStart && end <= windowEnd) latencies.push(end - start);
      } catch (error) {
        errors += 1;
        if (!firstError) firstError = String(error);
      }
    }
  };
  const slots = [];
  for (let i = 0; i < inFlight; i += 1) slots.push(slot(i));
  await sleep((warmupS + measureS) * 1000);
  stop = true;
  await Promise.all(slots);
  await queue.close();
  await flushAll(connection);
  const latency = latencyOf(latencies);
  return {
    bench: 'bullmq_add', in_flight: inFlight, ops: latencies.length, seconds: measureS,
    ops_per_sec: round1(latencies.length / measureS), p50_us: round1(latency.p50_us),
    p99_us: round1(latency.p99_us), max_us: round1(latency.max_us), errors,
    ...(firstError ? { first_error: firstError } : {}),
  };
}

async function runAdd(flags, connection, runs) {
  let failures = 0;
  for (const part of flags.add_concurrency.split(',')) {
    const inFlight = Number(part);
    if (!Number.isInteger(inFlight) || inFlight <= 0) {
      throw new Error(`--add_concurrency: "${part}" is not a positive integer`);
    }
    const results = [];
    for (let run = 0; run < runs; run += 1) {
      const result = await runAddOnce(connection, run, inFlight, Number(flags.warmup_seconds),
        positive(flags, 'add_seconds'));
      printLine(result);
      if (result.errors > 0) failures += 1;
      results.push(result);
    }
    printLine({
      bench: 'bullmq_add', summary: true, in_flight: inFlight, runs,
      ops_per_sec: spreadOf(results.map((r) => r.ops_per_sec)),
      p50_us: spreadOf(results.map((r) => r.p50_us)),
      p99_us: spreadOf(results.map((r) => r.p99_us)),
      max_us: spreadOf(results.map((r) => r.max_us)),
    });
  }
  return failures;
}

// ------------------------------------------------------------------------------------------------
// Child processes: started with fork(); they talk to the parent with process.send messages.

// Starts `count` children of `role`; resolves when each has sent {type: 'ready'}.
async function startChildren(role, count, args, onMessage, timeoutMs) {
  const children = [];
  const ready = [];
  for (let i = 0; i < count; i += 1) {
    const child = fork(__filename, [`--child=${role}`, ...args(i)], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(child);
    ready.push(new Promise((resolve, reject) => {
      child.on('message', (message) => {
        if (message.type === 'ready') resolve();
        else onMessage(i, message);
      });
      child.on('exit', (code, signal) => reject(new Error(
        `${role} process ${i} ended (${signal || `exit code ${code}`}) before it was ready`)));
    }));
  }
  try {
    await withTimeout(Promise.all(ready), timeoutMs, `${role} processes to get ready`);
  } catch (error) {
    for (const child of children) child.kill('SIGKILL');
    throw error;
  }
  return children;
}

// Asks each child to stop and waits for it to exit (killing it after `timeoutMs`).
async function stopChildren(children, timeoutMs) {
  await Promise.all(children.map((child) => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.send({ type: 'stop' });
  })));
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms / 1000} s waiting for ${what}`)),
      ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// ------------------------------------------------------------------------------------------------
// cycle: pre-added jobs, Workers in several processes, one updateProgress per job.

// A worker process: one Worker with `concurrency`, started on {type: 'go'}; reports its
// completions (count and the time of the latest) every 20 ms while they change.
async function cycleChild(flags) {
  const connection = connectionOf(flags);
  let completed = 0;
  let failed = 0;  // Jobs that failed.
  let errors = 0;  // Errors of the Worker itself.
  let lastUs = 0;
  let firstError = '';
  const worker = new Worker(flags.queue, async (job) => {
    await job.updateProgress(1);
  }, { connection, concurrency: positive(flags, 'cycle_concurrency'), autorun: false });
  worker.on('completed', () => {
    completed += 1;
    lastUs = nowUs();
  });
  worker.on('failed', (job, error) => {
    failed += 1;
    if (!firstError) firstError = String(error);
  });
  worker.on('error', (error) => {
    errors += 1;
    if (!firstError) firstError = String(error);
  });
  await worker.waitUntilReady();
  let reported = -1;
  const report = () => {
    if (completed + failed + errors === reported) return;
    reported = completed + failed + errors;
    process.send({
      type: 'progress', completed, failed, errors, last_us: lastUs, first_error: firstError,
    });
  };
  const timer = setInterval(report, 20);
  process.on('message', async (message) => {
    if (message.type === 'go') {
      worker.run().catch((error) => {
        errors += 1;
        if (!firstError) firstError = String(error);
      });
    } else if (message.type === 'stop') {
      clearInterval(timer);
      report();
      await worker.close();
      process.exit(0);
    }
  });
  process.send({ type: 'ready' });
}

async function runCycleOnce(flags, connection, run) {
  const jobs = positive(flags, 'cycle_jobs');
  const processes = positive(flags, 'cycle_processes');
  const concurrency = positive(flags, 'cycle_concurrency');
  const timeoutMs = positive(flags, 'timeout_seconds') * 1000;
  const name = `bench-cycle-${run}`;

  // The jobs, added untimed (the data of exportd-bench's cycle jobs: accounts, field id).
  const queue = new Queue(name, { connection });
  const addStart = nowUs();
  for (let i = 0; i < jobs; i += 1000) {
    const batch = [];
    for (let j = i; j < Math.min(jobs, i + 1000); j += 1) {
      batch.push({ name: 'export', data: { entity_type: 'accounts', fields: ['id'], filters: {} } });
    }
    await queue.addBulk(batch);
  }
  const addSeconds = (nowUs() - addStart) / 1e6;

  const state = Array.from({ length: processes },
    () => ({ completed: 0, failed: 0, errors: 0, last_us: 0 }));
  let firstError = '';
  let notify = () => {};
  const children = await startChildren('cycle', processes,
    () => [`--redis=${flags.redis}`, `--queue=${name}`, `--cycle_concurrency=${concurrency}`],
    (i, message) => {
      if (message.type !== 'progress') return;
      state[i] = message;
      if (!firstError && message.first_error) firstError = message.first_error;
      notify();
    }, timeoutMs);
  const total = () => state.reduce((sum, s) => sum + s.completed + s.failed, 0);
  const done = new Promise((resolve) => {
    notify = () => {
      if (total() >= jobs) resolve();
    };
  });

  const start = nowUs();
  for (const child of children) child.send({ type: 'go' });
  let timedOut = false;
  try {
    await withTimeout(done, timeoutMs, `${jobs} jobs to complete`);
  } catch (error) {
    timedOut = true;
    if (!firstError) firstError = String(error.message);
  }
  await stopChildren(children, 30000);
  const completed = state.reduce((sum, s) => sum + s.completed, 0);
  const failed = state.reduce((sum, s) => sum + s.failed + s.errors, 0);
  const end = Math.max(...state.map((s) => s.last_us));
  const seconds = completed > 0 ? (end - start) / 1e6 : 0;
  await queue.close();
  await flushAll(connection);
  return {
    bench: 'bullmq_cycle', processes, concurrency_per_process: concurrency,
    slots: processes * concurrency, jobs, completed, seconds: Math.round(seconds * 1000) / 1000,
    jobs_per_sec: seconds > 0 ? round1(completed / seconds) : 0,
    add_seconds: Math.round(addSeconds * 1000) / 1000,
    errors: failed + (timedOut ? 1 : 0), ...(firstError ? { first_error: firstError } : {}),
  };
}

async function runCycle(flags, connection, runs) {
  let failures = 0;
  const results = [];
  for (let run = 0; run < runs; run += 1) {
    const result = await runCycleOnce(flags, connection, run);
    printLine(result);
    if (result.errors > 0 || result.completed !== result.jobs) failures += 1;
    results.push(result);
  }
  printLine({
    bench: 'bullmq_cycle', summary: true, slots: results[0].slots, jobs: results[0].jobs, runs,
    jobs_per_sec: spreadOf(results.map((r) => r.jobs_per_sec)),
  });
  return failures;
}

// ------------------------------------------------------------------------------------------------
// events: QueueEvents 'progress' listeners in several processes, one job's progress at a rate.

// A listener process: `listeners` QueueEvents, each with its own connection. Reports when every
// one has seen a warm-up event (seq -1: the XREAD is live), counts measured deliveries, and sends
// its latencies on {type: 'stop'}.
async function eventsChild(flags) {
  const connection = connectionOf(flags);
  const count = positive(flags, 'events_listeners');
  const updates = positive(flags, 'updates');
  const latencies = [];
  const live = new Set();
  let deliveries = 0;
  let reported = -1;
  const queues = [];
  for (let i = 0; i < count; i += 1) {
    const events = new QueueEvents(flags.queue, { connection });
    const received = new Uint8Array(updates);
    events.on('progress', ({ data }) => {
      const now = nowUs();
      if (data.seq < 0) {
        if (!live.has(i)) {
          live.add(i);
          if (live.size === count) process.send({ type: 'live' });
        }
        return;
      }
      if (data.seq < updates && !received[data.seq]) {
        received[data.seq] = 1;
        latencies.push(now - data.t_us);
        deliveries += 1;
      }
    });
    events.on('error', (error) => log(`QueueEvents: ${error}`));
    queues.push(events);
  }
  await Promise.all(queues.map((events) => events.waitUntilReady()));
  const timer = setInterval(() => {
    if (deliveries === reported) return;
    reported = deliveries;
    process.send({ type: 'deliveries', deliveries });
  }, 20);
  process.on('message', async (message) => {
    if (message.type !== 'stop') return;
    clearInterval(timer);
    process.send({ type: 'latencies', latencies });
    await Promise.all(queues.map((events) => events.close()));
    process.exit(0);
  });
  process.send({ type: 'ready' });
}

async function runEventsOnce(flags, connection, run) {
  const listeners = positive(flags, 'events_listeners');
  const processes = Math.min(positive(flags, 'events_processes'), listeners);
  const rate = positive(flags, 'events_rate');
  const updates = Math.max(1, Math.floor(rate * positive(flags, 'events_seconds')));
  const timeoutMs = positive(flags, 'timeout_seconds') * 1000;
  const name = `bench-events-${run}`;

  const liveChildren = new Set();
  const delivered = new Array(processes).fill(0);
  const latencies = [];
  let latencyReports = 0;
  let notify = () => {};
  const children = await startChildren('events', processes, (i) => {
    const share = Math.floor(listeners / processes) + (i < listeners % processes ? 1 : 0);
    return [`--redis=${flags.redis}`, `--queue=${name}`, `--events_listeners=${share}`,
      `--updates=${updates}`];
  }, (i, message) => {
    if (message.type === 'live') liveChildren.add(i);
    if (message.type === 'deliveries') delivered[i] = message.deliveries;
    if (message.type === 'latencies') {
      for (const value of message.latencies) latencies.push(value);
      latencyReports += 1;
    }
    notify();
  }, timeoutMs);
  const waitFor = (predicate, ms, what) => withTimeout(new Promise((resolve) => {
    notify = () => {
      if (predicate()) resolve();
    };
    notify();
  }), ms, what);

  // The source of the updates: one job whose processor reports progress, as a user's would.
  const queue = new Queue(name, { connection });
  let errors = 0;
  let firstError = '';
  const noteError = (error) => {
    errors += 1;
    if (!firstError) firstError = String(error);
  };
  let allLive = false;
  const worker = new Worker(name, async (job) => {
    while (!allLive) {
      await job.updateProgress({ seq: -1, t_us: nowUs() });
      await sleep(50);
    }
    const start = nowUs();
    const sends = [];
    for (let seq = 0; seq < updates; seq += 1) {
      await sleep((start + (seq * 1e6) / rate - nowUs()) / 1000);
      sends.push(job.updateProgress({ seq, t_us: nowUs() }).catch(noteError));
    }
    await Promise.all(sends);
  }, { connection, concurrency: 1 });
  worker.on('error', noteError);
  await queue.add('progress-source', {});

  try {
    await waitFor(() => liveChildren.size === processes, 60000, 'every listener to be live');
    allLive = true;
    log(`events: ${listeners} QueueEvents live in ${processes} processes; ` +
      `${updates} progress updates at ${rate}/s`);
    const expected = updates * listeners;
    const drainMs = (updates / rate) * 1000 + 10000;
    await waitFor(() => delivered.reduce((a, b) => a + b, 0) >= expected, drainMs,
      `${expected} deliveries`).catch(noteError);
  } catch (error) {
    noteError(error.message);
  }
  allLive = true;
  const latenciesIn = waitFor(() => latencyReports === processes, 30000, 'the latencies');
  await stopChildren(children, 30000);
  await latenciesIn.catch(noteError);
  await worker.close();
  await queue.close();
  await flushAll(connection);
  const latency = latencyOf(latencies);
  return {
    bench: 'bullmq_events', listeners, processes, updates_per_sec: rate, updates,
    deliveries: latencies.length, expected_deliveries: updates * listeners,
    p50_us: round1(latency.p50_us), p99_us: round1(latency.p99_us),
    max_us: round1(latency.max_us), errors, ...(firstError ? { first_error: firstError } : {}),
  };
}

async function runEvents(flags, connection, runs) {
  let failures = 0;
  const results = [];
  for (let run = 0; run < runs; run += 1) {
    const result = await runEventsOnce(flags, connection, run);
    printLine(result);
    if (result.errors > 0 || result.deliveries !== result.expected_deliveries) failures += 1;
    results.push(result);
  }
  printLine({
    bench: 'bullmq_events', summary: true, listeners: results[0].listeners,
    processes: results[0].processes, updates_per_sec: results[0].updates_per_sec, runs,
    delivered_fraction: spreadOf(results.map((r) => r.deliveries / r.expected_deliveries)),
    p50_us: spreadOf(results.map((r) => r.p50_us)),
    p99_us: spreadOf(results.map((r) => r.p99_us)),
    max_us: spreadOf(results.map((r) => r.max_us)),
  });
  return failures;
}

// ------------------------------------------------------------------------------------------------

async function main() {
  const args = process.argv.slice(2);
  const child = args.find((arg) => arg.startsWith('--child='));
  if (child) {
    const flags = {};
    for (const arg of args) {
      const match = /^--([a-z_]+)=(.*)$/.exec(arg);
      if (match) flags[match[1]] = match[2];
    }
    if (child === '--child=cycle') return cycleChild(flags);
    if (child === '--child=events') return eventsChild(flags);
    throw new Error(`unknown child role ${child}`);
  }

  const flags = parseFlags(args);
  const connection = connectionOf(flags);
  const runs = positive(flags, 'runs');
  const selected = flags.measurements.split(',').filter((name) => name !== '');
  for (const name of selected) {
    if (!['add', 'cycle', 'events'].includes(name)) {
      throw new Error(`--measurements: unknown measurement "${name}" (add, cycle, events)`);
    }
  }
  await flushAll(connection);
  let failures = 0;
  if (selected.includes('add')) failures += await runAdd(flags, connection, runs);
  if (selected.includes('cycle')) failures += await runCycle(flags, connection, runs);
  if (selected.includes('events')) failures += await runEvents(flags, connection, runs);
  return failures === 0 ? 0 : 1;
}

main().then((code) => {
  if (typeof code === 'number') process.exit(code);
}, (error) => {
  log(error.stack || String(error));
  process.exit(2);
});
