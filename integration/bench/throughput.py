#!/usr/bin/env python3
"""Throughput benchmark: one load generator (`chronikctl bench produce`) against Chronik with one
broker and with three (replication factor 3, min.insync.replicas 2), and optionally against any other
Kafka-protocol broker, in one run, printing MiB/s, msgs/s, p50/p99 latency and the brokers' CPU
seconds per GiB acknowledged.

Each Chronik target is a fresh `chronikctl local up` cluster (one controller) in a temp dir with a
6-partition topic; its brokers' CPU is read from their `process_cpu_seconds_total` (the bench's
`--metrics-url`). `--build NAME=DIR` (repeatable) runs every case against the Chronik binaries in
each DIR, so two builds (say, before and after a change) are compared in the same run on the same
machine: their clusters are up side by side and their runs alternate. The generator is always
`--bin-dir`'s chronikctl. `--kafka HOST:PORT` adds another broker:
its topic must exist with the partitions you want (or pass `--kafka-auto-create`), and
`--kafka-pid PID` gives its process for the CPU column (read from /proc/PID/stat).

The cases (`--cases`, comma-separated; all by default):
- `fsync-1k`:   acks=all, 1 KiB records, 16 KiB batches, fsync per batch (Chronik's default)
- `fsync-100`:  the same with 100 B records
- `nofsync-1k`: 1 KiB records, `flush.messages` at its maximum (Kafka's default: no fsync per batch)
- `big-1k`:     1 KiB records in 1 MiB batches (librdkafka's default batch.size since 2.x), fsync
- `paced-1k`:   `fsync-1k` sent at a fixed 75 MiB/s (`--throughput`), for latency at a steady rate;
                latencies run from each batch's scheduled send time
Each case runs `--runs` times on each target (default 3); the table gives the median run by MiB/s,
the MiB/s range and the range of the runs' p99s (from one set of runs to the next, minutes apart, a
paced p99 can move by half: compare builds within one run of this script). A paced case's run is
preceded by an unmeasured warm-up of 100,000 records at its rate (the topic was just recreated, and
the disk may still be discarding the deleted one's blocks, which once put p99s at 0.5-0.8 s), and
its median run is by p99 latency, since every run reaches the same rate. A run that fails (the
generator reports a NOT_LEADER_OR_FOLLOWER or a timeout rather than retry it) is left out of the
figures and counted as "(N failed)" in the last column; its cluster's logs are copied to a
`chronik-throughput-failed-*` temp dir, which is printed.

    CARGO_TARGET_DIR=target-release cargo build --release -p chronik-broker -p chronik-controller -p chronikctl
    python3 integration/bench/throughput.py --bin-dir target-release/release
    python3 integration/bench/throughput.py --bin-dir new/ --build before=old/ --build after=new/ --cases fsync-1k
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

TOPIC = "bench"
PARTITIONS = 6
NO_FSYNC = "9223372036854775807"

CASES = {
    "fsync-1k": dict(record_size="1KiB", batch_size="16KiB", messages=300_000, fsync=True),
    "fsync-100": dict(record_size="100", batch_size="16KiB", messages=3_000_000, fsync=True),
    "nofsync-1k": dict(record_size="1KiB", batch_size="16KiB", messages=500_000, fsync=False),
    "big-1k": dict(record_size="1KiB", batch_size="1MiB", messages=500_000, fsync=True),
    # 75 MiB/s of 1 KiB records: half the RF 3 target of issue #15, for latency at a steady rate.
    "paced-1k": dict(record_size="1KiB", batch_size="16KiB", messages=900_000, fsync=True,
                     throughput=76_800),
}


def ctl(bin_dir, *args, check=True):
    out = subprocess.run([os.path.join(bin_dir, "chronikctl"), *args], capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"chronikctl {' '.join(args)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    return out


def proc_cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat (fields 14 and 15, after the command name)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LocalChronik:
    """A fresh local cluster: one controller, `brokers` brokers, a 6-partition topic."""

    def __init__(self, bin_dir, brokers, temp):
        self.bin_dir = bin_dir
        self.dir = os.path.join(temp, f"chronik-{brokers}")
        rf = min(brokers, 3)
        min_isr = 2 if rf >= 3 else 1
        up = json.loads(ctl(bin_dir, "local", "up", "--dir", self.dir, "--controllers", "1",
                            "--brokers", str(brokers),
                            f"--controller-arg=--default-replication-factor={rf}",
                            f"--controller-arg=--default-min-insync-replicas={min_isr}",
                            "--output", "json").stdout)
        self.controllers, self.bootstrap = up["controllers"], up["bootstrap_servers"]
        status = json.loads(ctl(bin_dir, "local", "status", "--dir", self.dir, "--output", "json").stdout)
        self.metrics_urls = [f"http://{n['http_addr']}/metrics" for n in status["nodes"]
                             if n["kind"] == "broker"]
        self.rf, self.min_isr = rf, min_isr

    def recreate_topic(self, fsync):
        ctl(self.bin_dir, "--controllers", self.controllers, "topic", "delete", TOPIC, check=False)
        configs = ["--config", f"min.insync.replicas={self.min_isr}"]
        if not fsync:
            configs += ["--config", f"flush.messages={NO_FSYNC}"]
        deadline = time.monotonic() + 60
        while True:
            # The deletion finishes on the brokers in the background; the name is free once it has.
            out = ctl(self.bin_dir, "--controllers", self.controllers, "topic", "create", TOPIC,
                      "--partitions", str(PARTITIONS), "--replication-factor", str(self.rf), *configs,
                      check=False)
            if out.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"cannot create {TOPIC}: {out.stderr}")
            time.sleep(0.5)
        # Every partition led and its ISR full before measuring.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = ctl(self.bin_dir, "--controllers", self.controllers, "--output", "json", "topic",
                      "describe", TOPIC, check=False)
            if out.returncode == 0:
                parts = json.loads(out.stdout).get("partitions", [])
                if len(parts) == PARTITIONS and all(p.get("leader", -1) >= 0 and
                                                    len(p.get("isr", [])) == self.rf for p in parts):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{TOPIC} did not get leaders and full ISRs in time")

    def keep_logs(self, case):
        """Copies the cluster's process logs out of the temp dir, which goes at the end of the run."""
        kept = tempfile.mkdtemp(prefix=f"chronik-throughput-failed-{case}-")
        for name in os.listdir(self.dir):
            if name.endswith(".log"):
                shutil.copy(os.path.join(self.dir, name), kept)
        print(f"  the cluster's logs are in {kept}", file=sys.stderr)

    def down(self):
        ctl(self.bin_dir, "local", "down", "--dir", self.dir, check=False)


WARM_UP_MESSAGES = 100_000


def bench(bin_dir, bootstrap, case, metrics_urls=(), pids=(), auto_create=False):
    spec = CASES[case]
    args = ["bench", "produce", "--bootstrap-servers", bootstrap, "--topic", TOPIC, "--acks", "all",
            "--record-size", spec["record_size"], "--batch-size", spec["batch_size"],
            "--output", "json"]
    if "throughput" in spec:
        warm_up = args + ["--messages", str(WARM_UP_MESSAGES), "--throughput", str(spec["throughput"])]
        if auto_create:
            warm_up.append("--auto-create-topic")
        ctl(bin_dir, *warm_up, check=False)
    args += ["--messages", str(spec["messages"])]
    if "throughput" in spec:
        args += ["--throughput", str(spec["throughput"])]
    if metrics_urls:
        args += ["--metrics-url", ",".join(metrics_urls)]
    if auto_create:
        args.append("--auto-create-topic")
    before = sum(proc_cpu_seconds(p) for p in pids)
    out = ctl(bin_dir, *args, check=False)
    after = sum(proc_cpu_seconds(p) for p in pids)
    try:
        report = json.loads(out.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"bench produce printed no report ({out.returncode}):\n{out.stdout}{out.stderr}")
    if out.returncode != 0:
        print(f"  failed run of {case} (left out of the figures): {out.stderr.strip()}", file=sys.stderr)
    cpu = report.get("broker_cpu") or {}
    per_gib = cpu.get("cpu_secs_per_gib")
    if per_gib is None and pids and report["bytes"]:
        per_gib = (after - before) / (report["bytes"] / 2**30)
    latency = report.get("latency") or {}
    return dict(mib=report["mib_per_sec"], msgs=report["messages_per_sec"], p50=latency.get("p50_ms"),
                p99=latency.get("p99_ms"), cpu=per_gib, ok=out.returncode == 0)


def median_run(runs, case):
    """The median of the runs that completed, with the MiB/s range and the count of failed runs. A
    failed run (NOT_LEADER_OR_FOLLOWER, a timeout: the generator does not retry) stopped early, so
    its rate says nothing about the build."""
    failed = sum(1 for r in runs if not r["ok"])
    runs = [r for r in runs if r["ok"]]
    if not runs:
        return dict(mib=None, msgs=None, p50=None, p99=None, cpu=None, range=(None, None),
                    p99_range=(None, None), failed=failed)
    by_mib = sorted(runs, key=lambda r: r["mib"])
    if "throughput" in CASES[case]:
        # Every run of a paced case reaches the same rate: the median is by latency.
        ordered = sorted(runs, key=lambda r: r["p99"] if r["p99"] is not None else float("inf"))
    else:
        ordered = by_mib
    best = dict(ordered[len(ordered) // 2])
    best["range"] = (by_mib[0]["mib"], by_mib[-1]["mib"])
    p99s = sorted(r["p99"] for r in runs if r["p99"] is not None)
    best["p99_range"] = (p99s[0], p99s[-1]) if p99s else (None, None)
    best["failed"] = failed
    return best


def fmt(v, digits=1):
    return "-" if v is None else f"{v:,.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", default="target/release", help="where chronikctl (the generator) is")
    parser.add_argument("--build", action="append", default=[], metavar="NAME=DIR",
                        help="Chronik binaries to measure (default: --bin-dir's, named 'chronik')")
    parser.add_argument("--brokers", default="1,3", help="Chronik cluster sizes, comma-separated")
    parser.add_argument("--cases", default=",".join(CASES), help="cases, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--kafka", help="bootstrap address of another Kafka-protocol broker to measure")
    parser.add_argument("--kafka-pid", type=int, action="append", default=[],
                        help="its process ids (for the CPU column; repeatable)")
    parser.add_argument("--kafka-auto-create", action="store_true",
                        help="let the other broker auto-create the topic")
    args = parser.parse_args()
    cases = [c for c in args.cases.split(",") if c]
    for case in cases:
        if case not in CASES:
            parser.error(f"unknown case {case}; known: {', '.join(CASES)}")
    builds = [b.split("=", 1) for b in args.build] or [("chronik", args.bin_dir)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="chronik-throughput-") as temp:
        for brokers in [int(b) for b in args.brokers.split(",") if b]:
            # Every build's cluster is up at once and the runs alternate between them, so a load
            # change on the machine shows in all builds' figures alike.
            clusters = []
            try:
                for name, build_dir in builds:
                    clusters.append((name, LocalChronik(build_dir, brokers, os.path.join(temp, name))))
                for case in cases:
                    runs = {name: [] for name, _ in clusters}
                    for _ in range(args.runs):
                        for name, cluster in clusters:
                            cluster.recreate_topic(CASES[case]["fsync"])
                            run = bench(args.bin_dir, cluster.bootstrap, case, cluster.metrics_urls)
                            if not run["ok"]:
                                cluster.keep_logs(case)
                            runs[name].append(run)
                    for name, cluster in clusters:
                        target = f"{name} {brokers} broker{'s' if brokers > 1 else ''}"
                        rows.append((target, f"RF {cluster.rf}", case, median_run(runs[name], case)))
                        print(f"{target} {case}: {fmt(rows[-1][3]['mib'])} MiB/s", file=sys.stderr)
            finally:
                for _, cluster in clusters:
                    cluster.down()
        if args.kafka:
            for case in cases:
                runs = [bench(args.bin_dir, args.kafka, case, pids=args.kafka_pid,
                              auto_create=args.kafka_auto_create) for _ in range(args.runs)]
                rows.append((f"other {args.kafka}", "as set", case, median_run(runs, case)))
    header = ["target", "repl.", "case", "MiB/s (range)", "msgs/s", "p50 ms", "p99 ms (range)",
              "CPU s/GiB"]
    table = [header] + [[t, rf, case, f"{fmt(r['mib'])} ({fmt(r['range'][0])}-{fmt(r['range'][1])})",
                         fmt(r["msgs"], 0), fmt(r["p50"], 2),
                         f"{fmt(r['p99'], 2)} ({fmt(r['p99_range'][0], 2)}-{fmt(r['p99_range'][1], 2)})",
                         fmt(r["cpu"], 2)
                         + (f" ({r['failed']} failed)" if r["failed"] else "")]
                        for t, rf, case, r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


if __name__ == "__main__":
    main()
