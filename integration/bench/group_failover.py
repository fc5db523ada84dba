#!/usr/bin/env python3
"""Group coordinator failover benchmark: time from kill -9 of a group's coordinator to the group's first
offset commit acknowledged after it.

Starts a local cluster (3 controllers, 3 brokers) with `chronikctl local up`, creates a 6-partition
topic (replication factor 3, min.insync.replicas 2), keeps a producer writing to it, and runs one
confluent-kafka consumer in a group that commits synchronously after every batch it reads. Then,
`--kills` times: kill -9 the broker leading the group's `__consumer_offsets` partition (the
coordinator), measure until the consumer's first commit acknowledged after the kill, restart the
broker and wait until every offsets partition has its full ISR again. A commit counts only if it was
started after the kill (one started before may be acknowledged by the dying coordinator). Prints every
measurement and then p50, p99 (nearest rank) and worst. Usage:

    cargo build --release --workspace --bins
    python3 integration/bench/group_failover.py --bin-dir target/release --kills 30
"""

import argparse
import json
import os
import signal
import tempfile
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer

from failover import broker_pid, ctl, describe, summary, wait  # the same directory

GROUP = "failover-bench"
TOPIC = "group-failover"


def java_partition_for(group_id, partitions):
    h = 0
    data = group_id.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + int.from_bytes(data[i:i + 2], "big")) & 0xFFFFFFFF
    if h >= 2 ** 31:
        h -= 2 ** 32
    return 0 if h == -2 ** 31 else abs(h) % partitions


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", default="target/release")
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as dir:
        up = json.loads(ctl(args.bin_dir, "local", "up", "--dir", dir, "--controllers", "3", "--brokers", "3",
                            "--output", "json"))
        controllers, bootstrap = up["controllers"], up["bootstrap_servers"]
        try:
            ctl(args.bin_dir, "--controllers", controllers, "topic", "create", TOPIC, "--partitions", "6",
                "--replication-factor", "3")
            stop = threading.Event()
            commits = []  # (started, acknowledged) of each acknowledged commit, monotonic

            def produce():
                producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
                while not stop.is_set():
                    producer.produce(TOPIC, b"x" * 100)
                    producer.poll(0)
                    time.sleep(0.002)
                producer.flush(10)

            def consume():
                consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP,
                                     "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                     "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000})
                consumer.subscribe([TOPIC])
                while not stop.is_set():
                    messages = consumer.consume(num_messages=500, timeout=0.1)
                    if not messages:
                        continue
                    try:
                        started = time.monotonic()
                        consumer.commit(asynchronous=False)
                        commits.append((started, time.monotonic()))
                    except KafkaException:
                        pass
                consumer.close()

            threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
            for t in threads:
                t.start()
            wait("the first commit", 60, lambda: commits)
            offsets_partition = java_partition_for(GROUP, 50)
            seconds = []
            for i in range(args.kills):
                leader = describe(args.bin_dir, controllers, "__consumer_offsets")["partitions"][offsets_partition]["leader"]
                pid = broker_pid(args.bin_dir, dir, leader)
                killed_at = time.monotonic()
                os.kill(pid, signal.SIGKILL)  # not through `chronikctl`, whose start-up would count
                after = wait("a commit after the kill", 120,
                             lambda: next((done for started, done in list(commits) if started > killed_at), None))
                took = after - killed_at
                seconds.append(took)
                print(f"kill {i + 1}: coordinator {leader} killed, next commit after {took:.2f} s", flush=True)
                ctl(args.bin_dir, "local", "start", "broker", str(leader), "--dir", dir)
                wait("full ISRs again", 120, lambda: all(
                    len(p["isr"]) == 3 for p in describe(args.bin_dir, controllers, "__consumer_offsets")["partitions"]))
            stop.set()
            for t in threads:
                t.join()
            print(summary("coordinator kill to the first commit started after it", seconds))
        finally:
            ctl(args.bin_dir, "local", "down", "--dir", dir)


if __name__ == "__main__":
    main()
