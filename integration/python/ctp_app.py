"""A consume-transform-produce application on confluent-kafka, run as a subprocess by
test_transactions.py so that it can be killed with kill -9.

    python3 ctp_app.py BOOTSTRAP IN OUT GROUP TXNID COUNT

Reads IN with a read_committed group consumer (no auto commit) and, per poll batch of at most 20
records, in one transaction: writes each value upper-cased to OUT and the batch's positions with
send_offsets_to_transaction. On an abortable error it aborts and rewinds to the group's committed
offsets, so nothing is lost and nothing is written twice. It stops after COUNT records, or with
COUNT 0 once it has every partition of IN and is at its end (an instance resuming where a killed
one stopped). Prints one JSON object per line on stdout, as ChronikJavaTxn does: `committed`,
`aborted`, `done`.

With CTP_DEBUG_LOG=FILE in the environment, the producer's and the consumer's librdkafka debug
(eos, protocol, cgrp, broker) goes to FILE, and so does everything else the process writes to stderr.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer

BATCH = 20
RUN_FOR_S = 150


def say(**fields) -> None:
    print(json.dumps(fields), flush=True)


def retrying(call, *args):
    """Runs a transactional call again while it fails with a retriable error (librdkafka's contract
    for send_offsets_to_transaction and commit_transaction); other errors propagate."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return call(*args)
        except KafkaException as e:
            if not e.args[0].retriable() or time.monotonic() > deadline:
                raise


def rewind(consumer: Consumer) -> None:
    """Seeks every assigned partition back to the group's committed offset."""
    for tp in consumer.committed(consumer.assignment(), timeout=30):
        if tp.offset < 0:
            tp.offset = OFFSET_BEGINNING
        consumer.seek(tp)


def at_end(consumer: Consumer, topic: str) -> bool:
    assigned = consumer.assignment()
    partitions = len(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    if len(assigned) < partitions:
        return False
    for tp in consumer.position(assigned):
        high = consumer.get_watermark_offsets(tp, timeout=10)[1]
        if tp.offset < high:
            return False
    return True


def debug_config() -> dict:
    """librdkafka's debug to CTP_DEBUG_LOG, written as it happens (a Python logger would only see it
    when the application polls, so nothing of a call that hangs): the file replaces stderr."""
    path = os.environ.get("CTP_DEBUG_LOG")
    if not path:
        return {}
    if not getattr(debug_config, "redirected", False):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), 2)
        debug_config.redirected = True
    return {"debug": "eos,protocol,cgrp,broker"}


def main(bootstrap: str, source: str, sink: str, group: str, transactional_id: str, count: int) -> None:
    # A loop stuck in a client call past its run time exits with every thread's stack on stderr, so
    # the test fails saying where instead of waiting for its own timeout.
    faulthandler.dump_traceback_later(RUN_FOR_S + 30, exit=True)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed",
                         # A killed instance's member leaves the group within 6 s.
                         "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000, **debug_config()})
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id,
                         "transaction.timeout.ms": 60000, **debug_config()})
    producer.init_transactions(60)
    consumer.subscribe([source])
    done = 0
    deadline = time.monotonic() + RUN_FOR_S
    while (count == 0 or done < count) and time.monotonic() < deadline:
        records = [m for m in consumer.consume(BATCH, 0.5) if not m.error()]
        if not records:
            if count == 0 and at_end(consumer, source):
                break
            continue
        try:
            producer.begin_transaction()
            for m in records:
                producer.produce(sink, key=m.key(), value=m.value().upper())
            positions = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
            retrying(producer.send_offsets_to_transaction, positions, consumer.consumer_group_metadata(), 30)
            retrying(producer.commit_transaction, 30)
        except KafkaException as e:
            if not e.args[0].txn_requires_abort():
                raise
            say(step="aborted", exception=str(e.args[0]))
            retrying(producer.abort_transaction, 30)
            rewind(consumer)
            continue
        done += len(records)
        say(step="committed", records=len(records), total=done)
    consumer.close()
    say(step="done", total=done)


if __name__ == "__main__":
    main(*sys.argv[1:6], int(sys.argv[6]))
