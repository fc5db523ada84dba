#!/usr/bin/env python3
"""Broker stop and restart time by partition count (issue #18): for each N, a fresh local cluster of
one controller and one broker hosts N empty partitions (replication factor 1, topics of 1,000), then
the broker is stopped with SIGTERM (a controlled shutdown, every log closed) and started again. It
prints how long the stop took, how long the start took until `/readyz` answered 200 and the broker's
`chronik_broker_hosted_partitions` counted all N, and the start time per partition, so growth worse
than linear shows as a rising last column.

    CARGO_TARGET_DIR=target-release cargo build --release --bins
    python3 integration/bench/restart.py --bin-dir target-release/release --partitions 1000,10000,30000
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

PER_TOPIC = 1000


def ctl(bin_dir, *args, timeout=600):
    out = subprocess.run([os.path.join(bin_dir, "chronikctl"), *args], capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"chronikctl {' '.join(args)} failed ({out.returncode}):\n{out.stdout}{out.stderr}")
    return out


def http_get(url):
    """(status, body) of a GET, or (None, '') when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""
    except OSError:
        return None, ""


def hosted(http_addr):
    status, text = http_get(f"http://{http_addr}/metrics")
    if status != 200:
        return None
    found = re.search(r"^chronik_broker_hosted_partitions (\S+)$", text, re.MULTILINE)
    return int(float(found.group(1))) if found else None


def wait(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def broker_http(bin_dir, directory):
    status = json.loads(ctl(bin_dir, "local", "status", "--dir", directory, "--output", "json").stdout)
    return next(n["http_addr"] for n in status["nodes"] if n["kind"] == "broker")


def measure(bin_dir, directory, partitions, timeout):
    up = json.loads(ctl(bin_dir, "local", "up", "--dir", directory, "--controllers", "1", "--brokers", "1",
                        "--bin-dir", bin_dir, "--broker-arg=--partition-metrics=false",
                        "--output", "json").stdout)
    try:
        controllers = up["controllers"]
        for first in range(0, partitions, PER_TOPIC):
            count = min(PER_TOPIC, partitions - first)
            ctl(bin_dir, "--controllers", controllers, "topic", "create", f"r{first}", "--partitions",
                str(count), "--replication-factor", "1")
        http = broker_http(bin_dir, directory)
        wait(lambda: hosted(http) == partitions, timeout, f"{partitions} hosted partitions")
        started = time.monotonic()
        ctl(bin_dir, "local", "stop", "--dir", directory, "broker", "1", timeout=timeout)
        stopped = time.monotonic() - started
        started = time.monotonic()
        ctl(bin_dir, "local", "start", "--dir", directory, "broker", "1", timeout=timeout)
        http = broker_http(bin_dir, directory)
        wait(lambda: http_get(f"http://{http}/readyz")[0] == 200, timeout, "/readyz")
        ready = time.monotonic() - started
        wait(lambda: hosted(http) == partitions, timeout, f"{partitions} hosted partitions after the restart")
        all_hosted = time.monotonic() - started
        return dict(partitions=partitions, stop=stopped, ready=ready, hosted=all_hosted)
    finally:
        subprocess.run([os.path.join(bin_dir, "chronikctl"), "local", "down", "--dir", directory],
                       capture_output=True, timeout=300)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bin-dir", default="target/release")
    parser.add_argument("--partitions", default="1000,10000,30000", help="partition counts, comma-separated")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed for each step")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="chronik-restart-") as temp:
        for n in [int(p.replace("_", "")) for p in args.partitions.split(",") if p]:
            row = measure(args.bin_dir, os.path.join(temp, f"n{n}"), n, args.timeout)
            rows.append(row)
            print(f"{n} partitions: stop {row['stop']:.2f} s, ready {row['ready']:.2f} s, "
                  f"all hosted {row['hosted']:.2f} s", file=sys.stderr)
    print(f"{'partitions':>10}  {'stop s':>7}  {'ready s':>7}  {'hosted s':>8}  {'ms/partition':>12}")
    for r in rows:
        print(f"{r['partitions']:>10,}  {r['stop']:>7.2f}  {r['ready']:>7.2f}  {r['hosted']:>8.2f}  "
              f"{1000 * r['hosted'] / r['partitions']:>12.3f}")


if __name__ == "__main__":
    main()
