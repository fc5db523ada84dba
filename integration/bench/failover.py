#!/usr/bin/env python3
"""Failover benchmark: how long acks=all writes stop when a broker fails, over many faults.

Starts a local cluster (3 controllers, 3 brokers) with `chronikctl local up`, creates a one-partition
topic with replication factor 3 and min.insync.replicas 2 (the cluster default), and keeps an
idempotent confluent-kafka producer (`enable.idempotence=True`, so acks=all) writing one record every
few milliseconds. Then `--faults` times, one fault of the kind `--fault` names:

- `kill`: SIGKILL of the partition's leader; restarted after the measurement.
- `stop`: SIGSTOP of the leader for `--stop-seconds` (past the controller's 5 s broker session
  timeout, so it is fenced: a silent failure), then SIGCONT.
- `term`: SIGTERM of the leader (a controlled shutdown); restarted after it has exited.
- `follower-cut`: SIGSTOP of a follower (alive to nobody, sending no fetch) for `--stop-seconds`,
  then SIGCONT. Keep it under the session timeout to measure the ISR's fetch-stall rule alone.

Measured per fault: for a fault of the leader, when every other broker's Metadata first names a new
leader (polled every 10 ms over a connection to each: fencing, election, commit and propagation to
the brokers together), then the time from the fault to the first acknowledgement of a record *produced after
the fault* (a record sent before it may be acknowledged by the failing broker in its last
milliseconds), and the longest gap between consecutive acknowledgements from the last one before the
fault until `--settle-seconds` after it (after the SIGCONT for SIGSTOP faults), and at least 1 s after
the first acknowledgement of a write sent after the fault. Signals are sent by this script right after
it reads the clock. After each fault the broker is brought back and the script
waits until the ISR is full again. For a fault the controller answers by fencing the broker, also the
time from that fencing's commit (the active controller's log line, written once the entry is committed
and applied) to every other broker's Metadata naming the new leader: metadata propagation, on this
machine's one wall clock. Prints each fault and then p50, p99 (nearest rank) and worst.
`--producer-config debug=metadata,topic,broker` and `--keep-dir DIR` keep librdkafka's and every
node's log for a look at slow cases (each fault's line gives its wall-clock time).

    cargo build --release --workspace --bins
    python3 integration/bench/failover.py --bin-dir target/release --fault kill --faults 30
"""

import argparse
import datetime
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import KafkaException, Producer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
import kafka_wire  # noqa: E402  (integration/python: one Metadata request to one chosen broker)

TOPIC = "failover"


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


def percentile(values, p):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def summary(name, values, unit_ms=False):
    scale, unit, digits = (1000, "ms", 1) if unit_ms else (1, "s", 2)

    def f(v):
        return f"{v * scale:.{digits}f} {unit}"

    return (f"{name} over {len(values)} faults: p50 {f(percentile(values, 50))}, "
            f"p99 {f(percentile(values, 99))}, worst {f(max(values))}, best {f(min(values))}")


def broker_pid(bin_dir, dir, broker):
    status = json.loads(ctl(bin_dir, "local", "status", "--dir", dir, "--output", "json"))
    node = next(n for n in status["nodes"] if n["kind"] == "broker" and n["id"] == broker)
    return node["pid"]


def broker_addrs(bin_dir, dir):
    status = json.loads(ctl(bin_dir, "local", "status", "--dir", dir, "--output", "json"))
    return {n["id"]: n["addr"] for n in status["nodes"] if n["kind"] == "broker"}


def watch_new_leader(addrs, old_leader, seen, stop):
    """Polls each broker in `addrs` until its Metadata names a leader other than `old_leader`; records
    the monotonic time per broker in `seen`."""
    connections = {}
    while not stop.is_set() and len(seen) < len(addrs):
        for broker, addr in addrs.items():
            if broker in seen:
                continue
            try:
                connection = connections.get(broker) or kafka_wire.KafkaConnection(addr, timeout=2)
                connections[broker] = connection
                meta = connection.metadata([TOPIC]).topics.get(TOPIC)
                leader = meta.partitions[0].leader if meta and 0 in meta.partitions else -1
                if leader not in (-1, old_leader):
                    seen[broker] = time.monotonic()
            except (OSError, EOFError, ValueError):
                connections.pop(broker, None)
        time.sleep(0.002)
    for connection in connections.values():
        connection.close()


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def fenced_at(dir, broker, after):
    """The wall-clock time at which the active controller logged fencing `broker` (the fencing and the
    new leaders it elects are one committed entry: the line is written once it is committed and
    applied), the first at or after `after`; None if no controller logged one."""
    times = []
    for log in Path(dir).glob("controller-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            line = ANSI.sub("", line)
            if "fenced broker:" not in line or f"broker_id={broker} " not in line + " ":
                continue
            stamp = datetime.datetime.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%S.%fZ")
            at = stamp.replace(tzinfo=datetime.timezone.utc).timestamp()
            if at >= after:
                times.append(at)
    return min(times, default=None)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", default="target/release")
    parser.add_argument("--fault", choices=["kill", "stop", "term", "follower-cut"], default="kill")
    parser.add_argument("--faults", "--kills", type=int, default=10, dest="faults")
    parser.add_argument("--stop-seconds", type=float, default=None,
                        help="how long SIGSTOP lasts (default 7 for stop, 3 for follower-cut)")
    parser.add_argument("--give-up-seconds", type=float, default=60.0,
                        help="a fault with no acknowledged write this long after it counts as this long")
    parser.add_argument("--broker-arg", action="append", default=[],
                        help="a flag for every broker, e.g. --broker-arg=--replica-fetch-stall-ms=30000")
    parser.add_argument("--controller-arg", action="append", default=[],
                        help="a flag for every controller, e.g. --controller-arg=--broker-session-grace-ms=300")
    parser.add_argument("--settle-seconds", type=float, default=5.0,
                        help="how long after the fault (or the SIGCONT) ack gaps are still counted")
    parser.add_argument("--producer-config", action="append", default=[], metavar="KEY=VALUE",
                        help="a librdkafka setting for the producer, e.g. --producer-config debug=metadata "
                             "(its log goes to stderr; each fault's line gives its wall-clock time)")
    parser.add_argument("--keep-dir", default=None,
                        help="run the cluster in this (new) directory and keep it, with every node's log")
    args = parser.parse_args()
    producer_config = {"bootstrap.servers": None, "enable.idempotence": True, "acks": "all", "linger.ms": 0,
                       "message.timeout.ms": 60000, "retry.backoff.ms": 20,
                       "topic.metadata.refresh.interval.ms": 1000}
    for setting in args.producer_config:
        key, _, value = setting.partition("=")
        producer_config[key] = value
    stop_seconds = args.stop_seconds or (7.0 if args.fault == "stop" else 3.0)
    with tempfile.TemporaryDirectory() as temp:
        dir = args.keep_dir or temp
        up = json.loads(ctl(args.bin_dir, "local", "up", "--dir", dir, "--controllers", "3", "--brokers", "3",
                            *[f"--broker-arg={a}" for a in args.broker_arg],
                            *[f"--controller-arg={a}" for a in args.controller_arg], "--output", "json"))
        controllers, bootstrap = up["controllers"], up["bootstrap_servers"]
        try:
            ctl(args.bin_dir, "--controllers", controllers, "topic", "create", TOPIC, "--partitions", "1",
                "--replication-factor", "3")
            acked = []  # (sent, acknowledged), monotonic, in acknowledgement order
            errors = []  # (monotonic, error) of failed deliveries
            stop = threading.Event()

            fatal = []  # (monotonic, error) of producers that failed fatally and were replaced

            def produce():
                # librdkafka's idempotent producer can fail fatally after a long stall with thousands of
                # records queued (_INCONSISTENT: "Unable to reconstruct MessageSet"); such a producer
                # is recorded and replaced, as the chaos workload does.
                n = 0

                def delivered(err, _msg, sent):
                    if err is None:
                        acked.append((sent, time.monotonic()))
                    else:
                        errors.append((time.monotonic(), str(err)))

                while not stop.is_set():
                    producer = Producer({**producer_config, "bootstrap.servers": bootstrap})
                    try:
                        while not stop.is_set():
                            sent = time.monotonic()
                            producer.produce(TOPIC, value=str(n).encode(),
                                             on_delivery=lambda err, msg, sent=sent: delivered(err, msg, sent))
                            producer.poll(0.005)
                            n += 1
                        producer.flush(60)
                    except KafkaException as e:
                        fatal.append((time.monotonic(), str(e)))

            thread = threading.Thread(target=produce, daemon=True)  # an aborted run must still exit
            thread.start()
            wait("first ack", 30, lambda: acked)
            firsts, gaps, propagated, commit_to_brokers = [], [], [], []
            addrs = broker_addrs(args.bin_dir, dir)
            for i in range(args.faults):
                partition = describe(args.bin_dir, controllers, TOPIC)["partitions"][0]
                leader = partition["leader"]
                target = leader if args.fault != "follower-cut" else next(b for b in partition["isr"] if b != leader)
                pid = broker_pid(args.bin_dir, dir, target)
                errors_before, fatal_before = len(errors), len(fatal)
                # The signal is sent from here, right after the clock is read: spawning `chronikctl` first
                # would let the failing broker acknowledge writes "sent after the fault" meanwhile.
                seen, watching = {}, threading.Event()
                watcher = None
                if target == leader:
                    others = {b: a for b, a in addrs.items() if b != leader}
                    watcher = threading.Thread(target=watch_new_leader, args=(others, leader, seen, watching),
                                               daemon=True)
                fault_at, fault_wall = time.monotonic(), time.time()
                os.kill(pid, {"kill": signal.SIGKILL, "term": signal.SIGTERM}.get(args.fault, signal.SIGSTOP))
                resume = None
                if args.fault in ("stop", "follower-cut"):
                    # SIGCONT on time, however long the wait for an ack below takes.
                    resume = threading.Timer(stop_seconds, os.kill, args=(pid, signal.SIGCONT))
                    resume.start()
                if watcher:
                    watcher.start()
                try:
                    first = wait("an ack of a write sent after the fault", args.give_up_seconds,
                                 lambda: next((a for s, a in list(acked) if s > fault_at), None))
                except TimeoutError:
                    first = time.monotonic()  # counted as the give-up time, and said so below
                    print(f"{args.fault} {i + 1}: no write sent after the fault was acknowledged within "
                          f"{args.give_up_seconds:.0f} s", flush=True)
                if resume:
                    resume.join()
                    until = max(time.monotonic() + args.settle_seconds, first + 1.0)
                else:
                    until = max(fault_at + args.settle_seconds, first + 1.0)
                if args.fault == "term":
                    wait("the broker's exit", 60, lambda: not alive(pid))
                time.sleep(max(0.0, until - time.monotonic()))
                times = [a for _, a in list(acked)]
                before = [t for t in times if t <= fault_at]
                window = ([before[-1]] if before else []) + [t for t in times if fault_at < t <= until]
                gap = max((b - a for a, b in zip(window, window[1:])), default=until - fault_at)
                firsts.append(first - fault_at)
                gaps.append(gap)
                metadata_note = ""
                if watcher:
                    watcher.join(timeout=max(0.0, fault_at + args.give_up_seconds - time.monotonic()))
                    watching.set()
                    if seen and len(seen) == len(addrs) - 1:
                        propagated.append(max(seen.values()) - fault_at)
                        metadata_note = (f", every other broker's Metadata names the new leader after "
                                         f"{propagated[-1]:.2f} s (spread "
                                         f"{max(seen.values()) - min(seen.values()):.3f} s)")
                        fenced = fenced_at(dir, target, fault_wall - 0.001)
                        if fenced is not None:
                            # Both clocks are this machine's wall clock.
                            last_seen_wall = fault_wall + (max(seen.values()) - fault_at)
                            commit_to_brokers.append(max(0.0, last_seen_wall - fenced))
                            metadata_note += (f", fenced {fenced - fault_wall:.3f} s after the fault and "
                                              f"on every broker {commit_to_brokers[-1] * 1000:.1f} ms "
                                              f"after that commit")
                new_errors = errors[errors_before:]
                print(f"{args.fault} {i + 1}: broker {target} ({'leader' if target == leader else 'follower'}), "
                      f"first ack of a write sent after the fault {first - fault_at:.2f} s, "
                      f"longest gap between acks {gap:.2f} s{metadata_note}, delivery errors {len(new_errors)}, "
                      f"at {fault_wall:.3f}"
                      + (f" ({new_errors[0][1]})" if new_errors else "")
                      + (f", producer failed fatally and was replaced ({fatal[fatal_before][1]})"
                         if len(fatal) > fatal_before else ""), flush=True)
                if args.fault in ("kill", "term"):
                    ctl(args.bin_dir, "local", "start", "broker", str(target), "--dir", dir)
                wait("the broker back in the ISR", 120,
                     lambda: len(describe(args.bin_dir, controllers, TOPIC)["partitions"][0]["isr"]) == 3)
            stop.set()
            thread.join()
            print(summary(f"{args.fault}: fault to first ack of a write sent after it", firsts))
            print(summary(f"{args.fault}: longest gap between acks", gaps))
            if propagated:
                print(summary(f"{args.fault}: fault to every other broker's Metadata naming the new leader",
                              propagated))
            if commit_to_brokers:
                print(summary(f"{args.fault}: controller commit of the fencing to every other broker's Metadata "
                              f"naming the new leader", commit_to_brokers, unit_ms=True))
            print(f"{args.fault}: delivery errors {len(errors)}, producers failed fatally {len(fatal)}, "
                  f"acknowledged writes {len(acked)}")
        finally:
            subprocess.run([f"{args.bin_dir}/chronikctl", "local", "down", "--dir", dir], capture_output=True)


if __name__ == "__main__":
    main()
