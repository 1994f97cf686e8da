#!/usr/bin/python3
"""Turns the JSON lines of exportd-bench and of the BullMQ peer (bench/peers/bullmq/bench.js)
into the benchmark report: a JSON file and a Markdown table with, per measurement, exportd's
median [min-max], the peer's or reference's, their ratio, issue 6's target and whether it holds.

  bench/report.py --exportd=EXPORTD.jsonl --bullmq=BULLMQ.jsonl --json=OUT.json --markdown=OUT.md \
      [--mode=full|quick] [--command='bench/run.sh ...']

Every figure is a median over the runs, with the minimum and maximum beside it. A ratio is taken
per run against the peer's or reference's run of the same index (for upload and export: measured
in the same run), and the table shows the median and range of those per-run ratios; a target is
judged on medians. Rows whose measurement did not run say so.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys


def read_lines(path):
    lines = []
    if not path or not os.path.exists(path):
        return lines
    with open(path, encoding="utf-8") as f:
        for text in f:
            text = text.strip()
            if not text.startswith("{"):
                continue
            try:
                lines.append(json.loads(text))
            except json.JSONDecodeError:
                print(f"report: not JSON, ignored: {text[:120]}", file=sys.stderr)
    return lines


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": len(values)}


def runs_of(lines, bench, **match):
    """The per-run lines (not summaries) of one measurement."""
    return [l for l in lines if l.get("bench") == bench and not l.get("summary")
            and not l.get("skipped") and all(l.get(k) == v for k, v in match.items())]


def col(lines, key, scale=1.0):
    """One field of every run's line (times `scale`), or None when the measurement did not run."""
    return [l[key] * scale for l in lines] if lines else None


def ratios(ours, theirs):
    """Per-run ratios ours[i] / theirs[i] over the runs both have."""
    return [a / b for a, b in zip(ours, theirs) if a is not None and b]


class Row:
    def __init__(self, key, measurement, unit, ours, peer_name=None, peer=None, ratio=None,
                 target=None, passed=None, digits=1, note=None):
        self.key = key
        self.measurement = measurement
        self.unit = unit
        self.ours = spread(ours) if ours is not None else None
        self.peer_name = peer_name
        self.peer = spread(peer) if peer is not None else None
        self.ratio = spread(ratio) if ratio is not None else None
        self.target = target
        self.passed = passed
        self.digits = digits
        self.note = note

    def judge(self, check, sized=True):
        """Sets passed from check(ours median, ratio median) when both it needs exist and the
        measurement ran at the target's sizes (`sized`); otherwise the row is not judged."""
        if not sized:
            self.passed = None
            self.note = ((self.note + "; ") if self.note else "") + \
                "smaller than the target's sizes: not judged"
            return
        try:
            self.passed = bool(check(self.ours and self.ours["median"],
                                     self.ratio and self.ratio["median"]))
        except TypeError:  # A figure it needs is missing.
            self.passed = None

    def json(self):
        return {"key": self.key, "measurement": self.measurement, "unit": self.unit,
                "exportd": self.ours, "peer": self.peer_name, "peer_value": self.peer,
                "ratio": self.ratio, "target": self.target, "pass": self.passed,
                "note": self.note}


def fmt(value, digits):
    if value is None:
        return ""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def cell(s, digits, unit=""):
    if s is None:
        return "not measured"
    suffix = f" {unit}" if unit else ""
    if s["runs"] == 1:
        return f"{fmt(s['median'], digits)}{suffix}"
    return f"{fmt(s['median'], digits)}{suffix} [{fmt(s['min'], digits)}–{fmt(s['max'], digits)}]"


def build_rows(ours, bullmq):
    rows = []

    # 1. create, 1 and every other in-flight count measured: through the client library
    # (concurrent creates coalesced into BatchCreateExportJobs calls; target 1 is judged on it at
    # 64), and as unary CreateExportJob calls on the raw stub (an extra row each).
    for bench, key, label, judged in (
            ("create_coalesced", "create_coalesced", "client library, coalesced", True),
            ("create", "create", "unary CreateExportJob calls", False)):
        in_flights = sorted({l["in_flight"] for l in runs_of(ours, bench)} |
                            {l["in_flight"] for l in runs_of(bullmq, "bullmq_add")})
        for n in in_flights or [1, 64]:
            a = runs_of(ours, bench, in_flight=n)
            b = runs_of(bullmq, "bullmq_add", in_flight=n)
            ops_a = col(a, "ops_per_sec")
            ops_b = col(b, "ops_per_sec")
            target = judged and n == 64
            row = Row(f"{key}_{n}_ops",
                      f"durable create, {n} in flight, {label} (BullMQ: Queue.add)", "ops/s",
                      ops_a, "BullMQ Queue.add", ops_b,
                      ratios(ops_a or [], ops_b or []) if a and b else None,
                      target=">= 2x BullMQ" if target else None, digits=0)
            if target:
                row.judge(lambda _, r: r >= 2.0)
            rows.append(row)
            for q in ("p50", "p99"):
                la = col(a, f"{q}_us", 1e-3)
                lb = col(b, f"{q}_us", 1e-3)
                rows.append(Row(f"{key}_{n}_{q}",
                                f"durable create, {n} in flight, {label}: {q} latency",
                                "ms", la, "BullMQ Queue.add", lb,
                                ratios(la or [], lb or []) if a and b else None, digits=2))

    # 2. job cycle.
    a = runs_of(ours, "cycle")
    b = runs_of(bullmq, "bullmq_cycle")
    ja = col(a, "jobs_per_sec")
    jb = col(b, "jobs_per_sec")
    slots = (a[0]["loops"] if a else b[0]["slots"] if b else 64)
    row = Row("cycle_jobs", f"job cycle, {slots} slots over 4 connections/processes, empty jobs",
              "jobs/s", ja, "BullMQ Worker", jb, ratios(ja or [], jb or []) if a and b else None,
              target=">= 2x BullMQ", digits=0,
              note="exportd: a connection's slots batch their progress reports and "
                   "completions into one BatchReportExportJobs at a time, whose claim brings "
                   "the completing slots their next jobs (0 records, no parts); "
                   "BullMQ: 4 processes x Worker concurrency 16, processor calls "
                   "job.updateProgress once")
    row.judge(lambda _, r: r >= 2.0, sized=slots == 64)
    rows.append(row)

    # 3. watch latency and idle-watcher memory.
    a = runs_of(ours, "watch_fanout")
    b = runs_of(bullmq, "bullmq_events")
    watchers = a[0]["watchers"] if a else (b[0]["listeners"] if b else 1000)
    rate = a[0]["updates_per_sec"] if a else (b[0]["updates_per_sec"] if b else 10)
    for q in ("p50", "p99"):
        la = col(a, f"{q}_us", 1e-3)
        lb = col(b, f"{q}_us", 1e-3)
        row = Row(f"watch_{q}", f"watch delivery {q}, {watchers:,} watchers x {rate:g} updates/s",
                  "ms", la, "BullMQ QueueEvents 'progress'", lb,
                  ratios(la or [], lb or []) if a and b else None,
                  target="<= 25 ms and <= BullMQ" if q == "p99" else None, digits=1,
                  note="exportd: WatchExportJobs streams; BullMQ: one QueueEvents (own "
                       "connection) per watcher" if q == "p99" else None)
        if q == "p99":
            row.judge(lambda v, r: v <= 25.0 and r <= 1.0, sized=watchers >= 1000 and rate >= 10)
        rows.append(row)
    delivered = [l["deliveries"] / l["expected_deliveries"] for l in a
                 if l.get("expected_deliveries")] if a else None
    delivered_b = [l["deliveries"] / l["expected_deliveries"] for l in b
                   if l.get("expected_deliveries")] if b else None
    rows.append(Row("watch_delivered", "watch: share of events delivered", "fraction",
                    delivered, "BullMQ QueueEvents 'progress'", delivered_b, digits=4))

    a = runs_of(ours, "watch_memory")
    n = a[0]["watchers"] if a else 10000
    row = Row("watch_memory", f"server memory holding {n:,} idle watchers (VmRSS growth)", "MB",
              col(a, "delta_mb"), target="<= 200 MB", digits=1)
    row.judge(lambda v, _: v <= 200.0, sized=n >= 10000)
    rows.append(row)

    # 4. part upload.
    a = runs_of(ours, "upload")
    mb = col(a, "mb_per_sec")
    row = Row("upload", "part upload (one UploadExportPart stream, client library)", "MB/s", mb,
              "dd conv=fdatasync", col(a, "dd_mb_per_sec"),
              col(a, "ratio_vs_dd"), target=">= 0.8x dd", digits=0,
              note=f"{a[0]['bytes'] / 2**20:,.0f} MiB" if a else None)
    row.judge(lambda _, r: r >= 0.8, sized=bool(a) and a[0]["bytes"] >= 2**30)
    rows.append(row)

    # 5. export.
    for variant, reference, target in (("csv", "sqlite3 -csv", ">= 0.8x sqlite3 -csv"),
                                       ("gzip", "sqlite3 -csv | gzip", None)):
        a = runs_of(ours, "export", variant=variant)
        rows_text = f"{a[0]['records']:,} rows, " if a else ""
        row = Row(f"export_{variant}",
                  f"accounts export, {rows_text}{variant}, create -> completed",
                  "records/s", col(a, "records_per_sec"), reference,
                  col(a, "sqlite3_records_per_sec"),
                  col(a, "ratio"), target=target, digits=0)
        if target:
            row.judge(lambda _, r: r >= 0.8, sized=bool(a) and a[0]["records"] >= 2000000)
        rows.append(row)

    # 6. restart.
    a = runs_of(ours, "restart")
    jobs = a[0]["jobs"] if a else 1000000
    row = Row("restart_seconds", f"restart to serving with {jobs:,} jobs stored", "s",
              col(a, "serving_seconds"), target="<= 2 s", digits=3)
    row.judge(lambda v, _: v <= 2.0, sized=jobs >= 1000000)
    rows.append(row)
    row = Row("restart_rss", f"server memory after the restart with {jobs:,} jobs (VmRSS)", "MB",
              col(a, "rss_mb"), target="<= 1 GB", digits=0)
    row.judge(lambda v, _: v <= 1000.0, sized=jobs >= 1000000)
    rows.append(row)
    return rows


# How each BullMQ measurement maps onto exportd's (docs/performance.md says more).
PEER_MAPPING = {
    "create": "C creates outstanding through the client library's ExportClient::CreateAsync "
              "(it coalesces concurrent creates into BatchCreateExportJobs calls, each create "
              "with its own request_id), and C unary CreateExportJob calls on the raw stub "
              "<-> Queue.add with C calls in flight (one process, pipelined on its one Redis "
              "connection); job data of the create request's shape; Redis appendfsync always, "
              "so both answer only after an fsync",
    "cycle": "64 worker loops over 4 connections: claim (a connection's waiting loops share "
             "one ClaimExportJob with max_jobs, as export-worker's slots do), 1 ReportProgress, "
             "CompleteExportJob with no parts (0 records) <-> 4 worker processes x Worker "
             "concurrency 16 (completion fetches the next job in the same call), processor calls "
             "job.updateProgress once; jobs added beforehand, untimed, on both sides",
    "watch": "1,000 WatchExportJobs streams, each receiving every one of 10 creates/s <-> 1,000 "
             "QueueEvents (each its own Redis connection, XREAD BLOCK on the event stream) in 4 "
             "processes, each receiving every one of 10 job.updateProgress/s; latency from the "
             "update's send to each receipt, CLOCK_MONOTONIC on both sides",
}


def machine():
    info = {"platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                    break
        info["loadavg"] = open("/proc/loadavg", encoding="utf-8").read().split()[:3]
    except OSError:
        pass
    return info


def markdown(rows, mode, command, info, generated):
    out = []
    out.append("# exportd benchmark results\n")
    if mode == "quick":
        out.append("**Quick mode: small sizes and few runs, a smoke test of the benchmark. "
                   "These figures say nothing about performance.**\n")
    out.append(f"Generated {generated} by `{command}`, on {info.get('cpu', '?')}, "
               f"{info.get('cpus', '?')} CPUs, {info.get('memory_gib', '?')} GiB, "
               f"{info.get('platform', '?')} (load average at the end: "
               f"{' '.join(info.get('loadavg', []))}).\n")
    out.append("Each figure is the median of the runs with [min–max]; a ratio is exportd / peer "
               "per run (for latency and memory lower is better), its median and range. "
               "Targets are issue 6's and are judged on medians. docs/performance.md describes "
               "each measurement.\n")
    out.append("| measurement | exportd | peer / reference | ratio | target | result |")
    out.append("|---|---|---|---|---|---|")
    for r in rows:
        ours = cell(r.ours, r.digits, r.unit)
        peer = f"{r.peer_name}: {cell(r.peer, r.digits, r.unit)}" if r.peer_name else "—"
        ratio = cell(r.ratio, 3) + "x" if r.ratio else "—"
        if r.passed is None:
            result = "—" if not r.target else "not measured" if r.ours is None else "not judged"
        else:
            result = "pass" if r.passed else "**fail**"
        note = f" ({r.note})" if r.note else ""
        cells = [f"{r.measurement}{note}", ours, peer, ratio, r.target or "—", result]
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exportd", required=True)
    parser.add_argument("--bullmq", default="")
    parser.add_argument("--json", required=True)
    parser.add_argument("--markdown", required=True)
    parser.add_argument("--mode", default="full", choices=["full", "quick"])
    parser.add_argument("--command", default="bench/run.sh")
    args = parser.parse_args()

    ours = read_lines(args.exportd)
    bullmq = read_lines(args.bullmq)
    rows = build_rows(ours, bullmq)
    info = machine()
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    report = {"generated": generated, "mode": args.mode, "command": args.command,
              "machine": info, "peer_mapping": PEER_MAPPING, "rows": [r.json() for r in rows],
              "lines": {"exportd": ours, "bullmq": bullmq}}
    for path in (args.json, args.markdown):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    text = markdown(rows, args.mode, args.command, info, generated)
    with open(args.markdown, "w", encoding="utf-8") as f:
        f.write(text)
    sys.stdout.write(text)
    failed = [r.key for r in rows if r.passed is False]
    if failed:
        print(f"report: targets not met: {', '.join(failed)}", file=sys.stderr)


if __name__ == "__main__":
    main()
