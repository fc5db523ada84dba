"""One consumer-group member as a process of its own, so tests can stop it cleanly (SIGTERM: it closes
its consumer, which leaves the group) or kill it (SIGKILL: its session has to expire).

It subscribes to one topic, prints what happens as JSON lines on stdout and commits synchronously
after handing each batch of records out:

    {"event": "assigned", "partitions": [0, 1]}         (the whole assignment: classic groups)
    {"event": "added", "partitions": [2]}               (added to it: KIP-848 consumer groups)
    {"event": "revoked", "partitions": [0, 1]}
    {"event": "records", "records": [[partition, offset, value], ...]}
    {"event": "committed", "offsets": {"0": 100}}        (the next offset to read, per partition)
    {"event": "commit_failed", "error": "..."}
    {"event": "closed"}

Usage: group_member.py confluent|confluent-consumer|kafka-python BOOTSTRAP GROUP TOPIC [--instance-id ID]

`confluent-consumer` joins with KIP-848's consumer group protocol (`group.protocol=consumer`): the
session and heartbeat interval are the coordinator's then, and assignments change incrementally.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())


def emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def run_confluent(args) -> None:
    import confluent_kafka as ck

    config = {
        "bootstrap.servers": args.bootstrap,
        "broker.address.family": "v4",
        "group.id": args.group,
        "client.id": args.client_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
        "reconnect.backoff.max.ms": 1000,
    }
    consumer_protocol = args.client == "confluent-consumer"
    if consumer_protocol:
        config["group.protocol"] = "consumer"
    else:
        config["session.timeout.ms"] = args.session_timeout_ms
        config["heartbeat.interval.ms"] = 1000
    if args.instance_id:
        config["group.instance.id"] = args.instance_id
    consumer = ck.Consumer(config)
    assigned = "added" if consumer_protocol else "assigned"
    consumer.subscribe(
        [args.topic],
        on_assign=lambda _c, ps: emit(assigned, partitions=sorted(p.partition for p in ps)),
        on_revoke=lambda _c, ps: emit("revoked", partitions=sorted(p.partition for p in ps)),
        on_lost=lambda _c, ps: emit("revoked", partitions=sorted(p.partition for p in ps)))
    while not stop.is_set():
        messages = consumer.consume(num_messages=200, timeout=0.3)
        records = [[m.partition(), m.offset(), m.value().decode()] for m in messages if not m.error()]
        if not records:
            continue
        emit("records", records=records)
        try:
            committed = consumer.commit(asynchronous=False)
            emit("committed", offsets={str(tp.partition): tp.offset for tp in committed or []})
        except ck.KafkaException as error:
            emit("commit_failed", error=str(error))
    consumer.close()
    emit("closed")


def run_kafka_python(args) -> None:
    import kafka
    from kafka.errors import KafkaError

    class Listener(kafka.ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit("revoked", partitions=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            emit("assigned", partitions=sorted(tp.partition for tp in assigned))

    consumer = kafka.KafkaConsumer(
        bootstrap_servers=args.bootstrap, group_id=args.group, client_id=args.client_id,
        auto_offset_reset="earliest", enable_auto_commit=False,
        session_timeout_ms=args.session_timeout_ms, heartbeat_interval_ms=1000,
        fetch_max_wait_ms=100, group_instance_id=args.instance_id or None)
    consumer.subscribe([args.topic], listener=Listener())
    while not stop.is_set():
        batches = consumer.poll(timeout_ms=300, max_records=200)
        records = [[m.partition, m.offset, m.value.decode()]
                   for messages in batches.values() for m in messages]
        if not records:
            continue
        emit("records", records=records)
        try:
            offsets = {tp: kafka.OffsetAndMetadata(consumer.position(tp), "", -1)
                       for tp in batches}
            consumer.commit(offsets)
            emit("committed", offsets={str(tp.partition): o.offset for tp, o in offsets.items()})
        except KafkaError as error:
            emit("commit_failed", error=repr(error))
    consumer.close()
    emit("closed")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("client", choices=["confluent", "confluent-consumer", "kafka-python"])
    parser.add_argument("bootstrap")
    parser.add_argument("group")
    parser.add_argument("topic")
    parser.add_argument("--client-id", default="group-member")
    parser.add_argument("--instance-id", default="")
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    args = parser.parse_args()
    if args.client in ("confluent", "confluent-consumer"):
        run_confluent(args)
    else:
        run_kafka_python(args)


if __name__ == "__main__":
    sys.exit(main())
