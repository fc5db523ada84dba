#!/usr/bin/env python3
"""Failover benchmark: time from kill -9 of a partition leader to the first write acknowledged after it.

Starts a local cluster (3 controllers, 3 brokers) with `chronikctl local up`, creates a one-partition
topic with replication factor 3 and min.insync.replicas 2, and keeps a confluent-kafka producer
(acks=all) writing. Then, `--kills` times: kill -9 the partition's leader, measure until the producer's
first delivery acknowledged after the kill, restart the broker and wait until it is back in the ISR.
Prints every measurement and the median and worst. Usage:

    cargo build --release --workspace --bins
    python3 integration/bench/failover.py --bin-dir target/release --kills 10
"""

import argparse
import json
import statistics
import subprocess
import tempfile
import threading
import time

from confluent_kafka import Producer


def ctl(bin_dir, *args):
    out = subprocess.run([f"{bin_dir}/chronikctl", *args], check=True, capture_output=True, text=True)
    return out.stdout


def describe(bin_dir, controllers, topic):
    return json.loads(ctl(bin_dir, "--controllers", controllers, "--output", "json", "topic", "describe", topic))


def wait(what, timeout, probe):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(what)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", default="target/release")
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as dir:
        up = json.loads(ctl(args.bin_dir, "local", "up", "--dir", dir, "--controllers", "3", "--brokers", "3", "--output", "json"))
        controllers, bootstrap = up["controllers"], up["bootstrap_servers"]
        try:
            ctl(args.bin_dir, "--controllers", controllers, "topic", "create", "failover", "--partitions", "1", "--replication-factor", "3")
            acked = []  # monotonic times of acknowledgements
            stop = threading.Event()

            def produce():
                producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                                     "message.timeout.ms": 60000, "retry.backoff.ms": 20,
                                     "topic.metadata.refresh.interval.ms": 1000})
                n = 0
                while not stop.is_set():
                    producer.produce("failover", value=str(n).encode(),
                                     on_delivery=lambda err, msg: err is None and acked.append(time.monotonic()))
                    producer.poll(0.005)
                    n += 1
                producer.flush(60)

            thread = threading.Thread(target=produce)
            thread.start()
            wait("first ack", 30, lambda: acked)
            results = []
            for i in range(args.kills):
                leader = describe(args.bin_dir, controllers, "failover")["partitions"][0]["leader"]
                killed_at = time.monotonic()
                ctl(args.bin_dir, "local", "kill", "broker", str(leader), "--dir", dir)
                first = wait("an ack after the kill", 60, lambda: next((t for t in list(acked) if t > killed_at), None))
                results.append(first - killed_at)
                print(f"kill {i + 1}: broker {leader}, first acknowledged write after {first - killed_at:.2f} s", flush=True)
                ctl(args.bin_dir, "local", "start", "broker", str(leader), "--dir", dir)
                wait("the broker back in the ISR", 60,
                     lambda: leader in describe(args.bin_dir, controllers, "failover")["partitions"][0]["isr"])
            stop.set()
            thread.join()
            print(f"failover over {len(results)} kills: median {statistics.median(results):.2f} s, "
                  f"worst {max(results):.2f} s, best {min(results):.2f} s")
        finally:
            subprocess.run([f"{args.bin_dir}/chronikctl", "local", "down", "--dir", dir], capture_output=True)


if __name__ == "__main__":
    main()
