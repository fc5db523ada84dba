"""The chaos workload, a process of its own (run in the client namespace): idempotent acks=all
producers writing unique values and consumers reading every partition from the beginning, both
recording what they were told into a history file of JSON lines.

History operations (`t` is wall-clock seconds, shared with the nemesis's fault file):

    {"op": "ack",  "t", "proc": "p0", "v": "p0-17", "p": 3, "o": 120}   acknowledged at (p, o)
    {"op": "fail", "t", "proc", "v", "p", "err"}                        delivery failed (indeterminate)
    {"op": "fatal","t", "proc", "err"}                                  the producer died and was replaced
    {"op": "read", "t", "proc": "c0", "v", "p", "o"}                    a consumer returned (p, o) = v
    {"op": "reset","t", "proc", "p", "o", "err"}                        a consumer's position was refused
    {"op": "done", "t", "proc", "sent": n, "unflushed": k}              a producer's last word

Producer `p<i>` writes `p<i>-<seq>` with seq 0, 1, 2, ... to partition seq % partitions, about `rate`
per second. Stop with SIGTERM: producers stop, flush (every record then acked or failed), write
`done`, and the process exits.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
import uuid

import confluent_kafka as ck

from security import read_properties

BASE = {
    "broker.address.family": "v4",
    "socket.timeout.ms": 10000,
    "socket.connection.setup.timeout.ms": 5000,
    "reconnect.backoff.max.ms": 1000,
    "topic.metadata.refresh.interval.ms": 2000,
    "log_level": 0,
}

PRODUCER = {
    **BASE,
    "enable.idempotence": True,
    "acks": "all",
    "max.in.flight.requests.per.connection": 5,
    "linger.ms": 5,
    "request.timeout.ms": 5000,
    "message.timeout.ms": 180000,
    "retry.backoff.ms": 100,
}


class History:
    def __init__(self, path: str):
        self._file = open(path, "a", buffering=1 << 16)
        self._lock = threading.Lock()

    def write(self, op: str, **fields) -> None:
        line = json.dumps({"op": op, "t": round(time.time(), 4), **fields}, separators=(",", ":"))
        with self._lock:
            self._file.write(line + "\n")

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def producer_loop(index: int, args, history: History, stop: threading.Event) -> None:
    name = f"p{index}"
    seq = 0
    fatal = threading.Event()

    def on_error(err) -> None:
        if err.fatal():
            history.write("fatal", proc=name, err=str(err))
            fatal.set()

    def make():
        return ck.Producer({**PRODUCER, **args.security, "bootstrap.servers": args.bootstrap, "error_cb": on_error,
                            "client.id": f"chaos-{name}"})

    def on_delivery(err, msg) -> None:
        value = msg.value().decode()
        if err is None:
            history.write("ack", proc=name, v=value, p=msg.partition(), o=msg.offset())
        else:
            history.write("fail", proc=name, v=value, p=msg.partition(), err=err.name())

    producer = make()
    interval = 1.0 / args.rate
    next_at = time.monotonic()
    while not stop.is_set():
        if fatal.is_set():
            # A fatal error ends this producer (librdkafka fails its queued records, which are then
            # neither acknowledged nor retried); its successor gets a new producer id.
            producer = make()
            fatal.clear()
        value = f"{name}-{seq}"
        try:
            producer.produce(args.topic, value=value.encode(), partition=seq % args.partitions,
                             on_delivery=on_delivery)
            seq += 1
            next_at += interval
            while (delay := next_at - time.monotonic()) > 0:
                producer.poll(delay)
            producer.poll(0)
        except BufferError:
            next_at += interval
        except ck.KafkaException as error:
            if not fatal.is_set():
                history.write("fatal", proc=name, err=str(error.args[0] if error.args else error))
            fatal.set()
        if time.monotonic() - next_at > 1.0:  # stalled: do not burst to catch up
            next_at = time.monotonic()
    try:
        unflushed = producer.flush(args.flush_timeout)
    except ck.KafkaException as error:
        history.write("fatal", proc=name, err=str(error))
        unflushed = -1
    history.write("done", proc=name, sent=seq, unflushed=unflushed)


def consumer_loop(index: int, args, history: History, stop: threading.Event) -> None:
    name = f"c{index}"
    consumer = ck.Consumer({**BASE, **args.security, "bootstrap.servers": args.bootstrap, "group.id": f"chaos-{uuid.uuid4().hex}",
                            "enable.auto.commit": False, "auto.offset.reset": "error",
                            "isolation.level": "read_uncommitted", "fetch.wait.max.ms": 200,
                            "error_cb": lambda err: None})
    consumer.assign([ck.TopicPartition(args.topic, p, 0) for p in range(args.partitions)])
    position = {p: 0 for p in range(args.partitions)}
    refused: dict[tuple[int, int], int] = {}
    while not stop.is_set():
        msgs = consumer.consume(500, 0.2)
        for msg in msgs:
            err = msg.error()
            if err is None:
                p, o = msg.partition(), msg.offset()
                history.write("read", proc=name, v=msg.value().decode(errors="replace"), p=p, o=o)
                position[p] = o + 1
                continue
            if err.code() == ck.KafkaError._AUTO_OFFSET_RESET and msg.partition() is not None:
                # Our position is outside the log (it shrank below what we read, or a replica answered
                # that lacks it). Say so once per position, retry it a few times, then re-read from 0.
                p = msg.partition()
                key = (p, position[p])
                refused[key] = refused.get(key, 0) + 1
                if refused[key] == 1:
                    history.write("reset", proc=name, p=p, o=position[p], err=str(err))
                start = position[p] if refused[key] < 20 else 0
                if start == 0:
                    position[p] = 0
                time.sleep(0.25)
                consumer.assign([ck.TopicPartition(args.topic, q, position[q]) for q in range(args.partitions)])
    consumer.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("--producers", type=int, default=3)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=50.0, help="records/s per producer")
    parser.add_argument("--flush-timeout", type=float, default=60.0)
    parser.add_argument("--history", required=True)
    parser.add_argument("--client-config", help="librdkafka properties of a secured run (security.protocol, "
                        "ssl.*, sasl.*; `security.write_client_properties`), a file so no password is in argv")
    args = parser.parse_args()
    args.security = {k: v for k, v in read_properties(args.client_config).items()
                     if k != "bootstrap.servers"} if args.client_config else {}

    history = History(args.history)
    stop_producers = threading.Event()
    stop_consumers = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_producers.set())
    signal.signal(signal.SIGINT, lambda *_: stop_producers.set())
    producers = [threading.Thread(target=producer_loop, args=(i, args, history, stop_producers), daemon=True)
                 for i in range(args.producers)]
    consumers = [threading.Thread(target=consumer_loop, args=(i, args, history, stop_consumers), daemon=True)
                 for i in range(args.consumers)]
    for t in producers + consumers:
        t.start()
    history.write("start", producers=args.producers, consumers=args.consumers, partitions=args.partitions)
    while not stop_producers.is_set():
        stop_producers.wait(1.0)
        history.flush()
    for t in producers:
        t.join(args.flush_timeout + 30)
    stop_consumers.set()
    for t in consumers:
        t.join(10)
    history.write("stop")
    history.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
