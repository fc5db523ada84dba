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
    {"op": "crash","t", "proc", "err"}                                  a loop died on an exception it
                                                                        does not handle (a harness bug)

`--group classic|consumer` adds a consumer group (`group.id` `chaos-group`) of `--group-members`
members `g<i>` (threads, each a librdkafka consumer subscribed to the topic), with the classic
protocol (its assignor, `range` or `cooperative-sticky`, picked by the seed) or KIP-848's
(`group.protocol=consumer`). Before they start, offset 0 is committed for every partition, so a
member never needs `auto.offset.reset` (it is `error`). Members read, commit what they read
synchronously about twice a second and in their revocation callback, and each leaves (close) and
rejoins as a new consumer after 10 to 40 s (seeded), so the group rebalances throughout the run:

    {"op": "read", ..., "proc": "g1", "g": true}                         a member read (p, o) = v
    {"op": "assign", "t", "proc", "inc", "parts": [..], "member"}        partitions added to the member
                                                                        (its member id)
    {"op": "revoke"|"lost", "t", "proc", "inc", "parts": [..]}          partitions taken away
    {"op": "commit", "t", "proc", "inc", "p", "o"}                       a commit of next offset o to p
                                                                        acknowledged (t after the answer)
    {"op": "commit_fail", "t", "proc", "inc", "err"}                     a commit refused or failed
    {"op": "reset", "t", "proc": "g1", "p", "o", "err"}                  a member's position refused
                                                                        20 times in a row
    {"op": "seeded", "t", "group", "partitions"}                        offset 0 committed everywhere
    {"op": "drained", "t", "target": {p: o}, "reached": {p: o}}          after the producers stopped:
                                                                        the group read up to each
                                                                        partition's last acknowledged
                                                                        offset + 1 (`target`), or how
                                                                        far it got (`reached`)

Producer `p<i>` writes `p<i>-<seq>` with seq 0, 1, 2, ... to partition seq % partitions, about `rate`
per second. Stop with SIGTERM: producers stop, flush (every record then acked or failed), write
`done`, and the process exits.

`--mode txn` (KIP-98 transactions): producer `p<i>` is a transactional producer (`transactional.id`
`chaos-p<i>`) writing the same values in transactions of 1 to 6 records over the partitions, and
committing 4 in 5 of them (aborting the rest on purpose); consumers read with
`isolation.level=read_committed`. Each transaction ends in one more operation:

    {"op": "txn", "t", "proc", "txn": 12, "first": 40, "last": 44, "outcome": "commit"|"abort"|"unknown",
     "err": ...}

covering the values `p<i>-<first>` .. `p<i>-<last>`: `commit` when commit_transaction returned,
`abort` when abort_transaction returned (on purpose or after an abortable error), `unknown` when the
producer failed fatally or stopped with the outcome undecided (a successor with the same
transactional id fences it: its transaction is then committed or aborted whole). Only the records of
a committed transaction are written as `ack`s (with the offsets their delivery reports gave), at
commit time; `fail` records a delivery error inside a transaction, which then aborts.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
import traceback
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
        # What the group's drain waits on: each partition's last acknowledged offset + 1, and the
        # furthest offset + 1 a group member read there.
        self.acked_end: dict[int, int] = {}
        self.group_end: dict[int, int] = {}

    def write(self, op: str, **fields) -> None:
        with self._lock:
            # The time is taken under the lock, so the file's order is the order of `t`.
            line = json.dumps({"op": op, "t": round(time.time(), 4), **fields}, separators=(",", ":"))
            self._file.write(line + "\n")
            if op == "ack" and fields.get("o") is not None and fields["o"] >= 0:
                self.acked_end[fields["p"]] = max(self.acked_end.get(fields["p"], 0), fields["o"] + 1)
            elif op == "read" and fields.get("g"):
                self.group_end[fields["p"]] = max(self.group_end.get(fields["p"], 0), fields["o"] + 1)

    def group_lag(self) -> tuple[dict[int, int], dict[int, int]]:
        """(target, reached): each acknowledged partition's end, and how far the group read there."""
        with self._lock:
            return dict(self.acked_end), {p: self.group_end.get(p, 0) for p in self.acked_end}

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


TXN_PRODUCER = {
    **BASE,
    "acks": "all",
    "linger.ms": 5,
    "request.timeout.ms": 5000,
    # Longer than any fault the nemesis holds, so the coordinator does not abort a transaction on its
    # own while the producer is still working on it; message.timeout.ms must not exceed it.
    "transaction.timeout.ms": 60000,
    "message.timeout.ms": 55000,
    "retry.backoff.ms": 100,
}

# How long a producer keeps retrying one transactional call (init, commit, abort) before it gives the
# transaction up as undecided and starts over with a new producer instance.
TXN_CALL_DEADLINE = 90.0


def refusal(what: str, error: ck.KafkaException) -> str:
    """Why a transactional producer's produce() or poll() raised: "fatal: ..." (a new producer
    instance is needed) or "abort: ..." (the transaction must be aborted)."""
    kerr = error.args[0] if error.args else None
    if not isinstance(kerr, ck.KafkaError):
        return f"fatal: {what}: {error}"
    kind = "fatal" if kerr.fatal() else "abort"
    return f"{kind}: {what}: {kerr.name()} {kerr.str()}"


def txn_producer_loop(index: int, args, history: History, stop: threading.Event) -> None:
    """`--mode txn`: one transactional producer, see the module doc."""
    name = f"p{index}"
    rng = random.Random(f"{args.seed}-{name}")
    seq = 0
    txn = 0
    offsets: dict[str, tuple[int, int]] = {}

    def on_delivery(err, msg) -> None:
        value = msg.value().decode()
        if err is None:
            offsets[value] = (msg.partition(), msg.offset())
        else:
            history.write("fail", proc=name, v=value, p=msg.partition(), err=err.name())

    def make() -> ck.Producer:
        return ck.Producer({**TXN_PRODUCER, **args.security, "bootstrap.servers": args.bootstrap,
                            "transactional.id": f"chaos-{name}", "client.id": f"chaos-{name}",
                            "error_cb": lambda err: None})

    def call(what, fn) -> str | None:
        """Runs a transactional call, retrying retriable errors; None on success, else why not:
        'abort' (the transaction must be aborted) or 'fatal: ...' / 'gave up: ...'."""
        deadline = time.monotonic() + TXN_CALL_DEADLINE
        while True:
            try:
                fn()
                return None
            except ck.KafkaException as error:
                err = error.args[0] if error.args else None
                if err is not None and err.txn_requires_abort():
                    return f"abort: {err.name()}"
                if err is not None and err.retriable() and time.monotonic() < deadline:
                    time.sleep(0.2)
                    continue
                if err is not None and err.fatal():
                    return f"fatal: {what}: {err.name()} {err.str()}"
                return f"gave up: {what}: {err.name() if err else error}"

    def fresh() -> ck.Producer | None:
        """A new producer instance, its transactions initialised (fencing any predecessor), or None
        once the workload is stopping."""
        while not stop.is_set():
            producer = make()
            why = call("init_transactions", lambda: producer.init_transactions(30))
            if why is None:
                return producer
            if why.startswith("fatal"):
                history.write("fatal", proc=name, err=why)
            time.sleep(1.0)
        return None

    producer = fresh()
    interval = 1.0 / args.rate
    while producer is not None and not stop.is_set():
        first = seq
        size = rng.randint(1, 6)
        offsets.clear()
        outcome, err = "unknown", None
        why = call("begin_transaction", producer.begin_transaction)
        if why is not None:
            history.write("fatal", proc=name, err=why)
            producer = fresh()
            continue
        next_at = time.monotonic()
        # Why produce() or poll() refused to go on: the producer failed fatally meanwhile
        # ("fatal: ..."), or the transaction has an abortable error (librdkafka's _STATE) and must be
        # aborted ("abort: ...").
        refused = None

        def pump(timeout: float) -> str | None:
            """Serves delivery reports for up to `timeout` s; why not, if the producer refused."""
            try:
                producer.poll(timeout)
                return None
            except ck.KafkaException as error:
                return refusal("poll", error)

        for _ in range(size):
            value = f"{name}-{seq}"
            while refused is None:
                try:
                    producer.produce(args.topic, value=value.encode(), partition=seq % args.partitions,
                                     on_delivery=on_delivery)
                    break
                except BufferError:
                    refused = pump(0.1)
                except ck.KafkaException as error:
                    refused = refusal("produce", error)
            if refused is not None:
                break
            seq += 1
            next_at += interval
            while refused is None and (delay := next_at - time.monotonic()) > 0:
                refused = pump(delay)
            if refused is not None:
                break
        if refused is not None and refused.startswith("abort"):
            why = call("abort_transaction", lambda: producer.abort_transaction(30))
            outcome = "abort" if why is None else "unknown"
            err = refused if why is None else f"{refused}; {why}"
        elif refused is not None:
            err = refused
        elif rng.random() < 0.8:
            why = call("commit_transaction", lambda: producer.commit_transaction(30))
            if why is None:
                outcome = "commit"
            elif why.startswith("abort"):
                err = why
                why = call("abort_transaction", lambda: producer.abort_transaction(30))
                outcome = "abort" if why is None else "unknown"
                err = err if why is None else f"{err}; {why}"
            else:
                err = why
        else:
            why = call("abort_transaction", lambda: producer.abort_transaction(30))
            outcome = "abort" if why is None else "unknown"
            err = why
        if outcome == "commit":
            for s in range(first, seq):
                value = f"{name}-{s}"
                p, o = offsets.get(value, (s % args.partitions, None))
                history.write("ack", proc=name, v=value, p=p, o=o)
        history.write("txn", proc=name, txn=txn, first=first, last=seq - 1, outcome=outcome, err=err)
        txn += 1
        if outcome == "unknown":
            if err and err.startswith("fatal"):
                history.write("fatal", proc=name, err=err)
            producer = fresh()
    history.write("done", proc=name, sent=seq, unflushed=0)


def consumer_loop(index: int, args, history: History, stop: threading.Event) -> None:
    name = f"c{index}"
    consumer = ck.Consumer({**BASE, **args.security, "bootstrap.servers": args.bootstrap, "group.id": f"chaos-{uuid.uuid4().hex}",
                            "enable.auto.commit": False, "auto.offset.reset": "error",
                            "isolation.level": "read_committed" if args.mode == "txn" else "read_uncommitted",
                            "fetch.wait.max.ms": 200,
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


GROUP_ID = "chaos-group"
CLASSIC_ASSIGNORS = ("range", "cooperative-sticky")


def group_config(args) -> dict:
    config = {**BASE, **args.security, "bootstrap.servers": args.bootstrap, "group.id": GROUP_ID,
              "enable.auto.commit": False, "auto.offset.reset": "error", "fetch.wait.max.ms": 200,
              "isolation.level": "read_committed" if args.mode == "txn" else "read_uncommitted",
              "error_cb": lambda err: None}
    if args.group == "consumer":
        return {**config, "group.protocol": "consumer"}
    return {**config, "group.protocol": "classic", "session.timeout.ms": 10000, "heartbeat.interval.ms": 1000,
            "partition.assignment.strategy": args.assignor}


def seed_group_offsets(args, history: History, stop: threading.Event) -> None:
    """Commits offset 0 for every partition (a simple commit: no member, no generation), so members
    always start from a committed offset and a refused position is never expected."""
    consumer = ck.Consumer({**BASE, **args.security, "bootstrap.servers": args.bootstrap, "group.id": GROUP_ID,
                            "enable.auto.commit": False, "error_cb": lambda err: None})
    offsets = [ck.TopicPartition(args.topic, p, 0) for p in range(args.partitions)]
    deadline = time.monotonic() + 60
    try:
        while not stop.is_set():
            try:
                result = consumer.commit(offsets=offsets, asynchronous=False)
                if all(tp.error is None for tp in result):
                    history.write("seeded", group=GROUP_ID, partitions=args.partitions)
                    return
            except ck.KafkaException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("could not commit the group's first offsets within 60 s")
            time.sleep(0.5)
    finally:
        consumer.close()


def group_member_loop(index: int, args, history: History, stop: threading.Event) -> None:
    """`--group`: one member of the consumer group, rejoining as a new consumer every 10 to 40 s."""
    name = f"g{index}"
    rng = random.Random(f"{args.seed}-{name}")
    incarnation = 0
    while not stop.is_set():
        incarnation += 1
        group_member(name, incarnation, args, history, stop, time.monotonic() + rng.uniform(10, 40))


def group_member(name: str, inc: int, args, history: History, stop: threading.Event, until: float) -> None:
    # The member's partitions, each with the offset after its last read in this assignment (None
    # before the first), and what it last committed there.
    owned: dict[int, int | None] = {}
    committed: dict[int, int] = {}
    # Refused positions in a row, per partition (see the _AUTO_OFFSET_RESET branch below).
    refusals: dict[int, int] = {}
    consumer = ck.Consumer(group_config(args))

    def commit(parts) -> None:
        offsets = [ck.TopicPartition(args.topic, p, owned[p]) for p in sorted(parts)
                   if owned.get(p) is not None and owned[p] != committed.get(p)]
        if not offsets:
            return
        try:
            result = consumer.commit(offsets=offsets, asynchronous=False)
        except ck.KafkaException as error:
            history.write("commit_fail", proc=name, inc=inc, err=str(error.args[0] if error.args else error))
            return
        for tp in result:
            if tp.error is None:
                committed[tp.partition] = tp.offset
                history.write("commit", proc=name, inc=inc, p=tp.partition, o=tp.offset)
            else:
                history.write("commit_fail", proc=name, inc=inc, p=tp.partition, err=str(tp.error))

    def on_assign(c, parts) -> None:
        for tp in parts:
            owned[tp.partition] = None
            refusals.pop(tp.partition, None)
        history.write("assign", proc=name, inc=inc, parts=sorted(tp.partition for tp in parts), member=c.memberid())

    def on_revoke(_consumer, parts) -> None:
        commit([tp.partition for tp in parts if tp.partition in owned])
        for tp in parts:
            owned.pop(tp.partition, None)
        history.write("revoke", proc=name, inc=inc, parts=sorted(tp.partition for tp in parts))

    def on_lost(_consumer, parts) -> None:
        for tp in parts:
            owned.pop(tp.partition, None)
        history.write("lost", proc=name, inc=inc, parts=sorted(tp.partition for tp in parts))

    consumer.subscribe([args.topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_lost)
    next_commit = time.monotonic() + 0.5
    try:
        while not stop.is_set() and time.monotonic() < until:
            for msg in consumer.consume(200, 0.2):
                err = msg.error()
                if err is None:
                    p, o = msg.partition(), msg.offset()
                    history.write("read", proc=name, v=msg.value().decode(errors="replace"), p=p, o=o, g=True)
                    refusals.pop(p, None)
                    if p in owned:
                        owned[p] = o + 1
                elif err.code() == ck.KafkaError._AUTO_OFFSET_RESET and msg.partition() is not None:
                    # The position (the committed offset, or after the last read) was refused:
                    # never expected (see seed_group_offsets). As the plain consumers do, it is tried
                    # again a few times (a leader that just changed); then said, and read from 0.
                    p = msg.partition()
                    refusals[p] = refusals.get(p, 0) + 1
                    at = owned.get(p)
                    if at is None:
                        try:
                            found = consumer.committed([ck.TopicPartition(args.topic, p)], 5)
                            at = found[0].offset if found and found[0].offset >= 0 else 0
                        except ck.KafkaException:
                            at = 0  # no coordinator answered: from the start (a re-read)
                    if refusals[p] >= 20:
                        history.write("reset", proc=name, p=p, o=at, err=str(err))
                        refusals.pop(p)
                        at = 0
                    time.sleep(0.25)
                    try:
                        consumer.seek(ck.TopicPartition(args.topic, p, at))
                    except ck.KafkaException:
                        pass
            if time.monotonic() >= next_commit:
                commit(list(owned))
                next_commit = time.monotonic() + 0.5
        commit(list(owned))
    finally:
        consumer.close()


def guarded(loop, name: str, index: int, args, history: History, stop: threading.Event) -> None:
    """Runs a producer's or consumer's loop; an exception it does not handle is written as a `crash`
    (the checker's `client_crash`) instead of ending the thread with a traceback nobody reads."""
    try:
        loop(index, args, history, stop)
    except Exception:  # noqa: BLE001 - recorded, and the run is then judged incomplete
        history.write("crash", proc=name, err=traceback.format_exc(limit=4))
        history.flush()


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
    parser.add_argument("--mode", choices=("idempotent", "txn"), default="idempotent",
                        help="idempotent producers (default) or transactional ones with read_committed consumers")
    parser.add_argument("--seed", default="0", help="seeds the transactions' sizes and outcomes, the group's "
                        "assignor and its members' lifetimes")
    parser.add_argument("--group", choices=("none", "classic", "consumer"), default="none",
                        help="add a consumer group with this protocol (see the module doc)")
    parser.add_argument("--group-members", type=int, default=3)
    parser.add_argument("--group-drain-timeout", type=float, default=120.0,
                        help="how long the group may take, once the producers stopped, to read what they wrote, s")
    parser.add_argument("--client-config", help="librdkafka properties of a secured run (security.protocol, "
                        "ssl.*, sasl.*; `security.write_client_properties`), a file so no password is in argv")
    args = parser.parse_args()
    args.security = {k: v for k, v in read_properties(args.client_config).items()
                     if k != "bootstrap.servers"} if args.client_config else {}

    args.assignor = random.Random(f"{args.seed}-group").choice(CLASSIC_ASSIGNORS)
    history = History(args.history)
    stop_producers = threading.Event()
    stop_consumers = threading.Event()
    stop_group = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_producers.set())
    signal.signal(signal.SIGINT, lambda *_: stop_producers.set())
    loop = txn_producer_loop if args.mode == "txn" else producer_loop
    producers = [threading.Thread(target=guarded, args=(loop, f"p{i}", i, args, history, stop_producers),
                                  daemon=True)
                 for i in range(args.producers)]
    consumers = [threading.Thread(target=guarded, args=(consumer_loop, f"c{i}", i, args, history, stop_consumers),
                                  daemon=True)
                 for i in range(args.consumers)]
    group = []
    if args.group != "none":
        try:
            seed_group_offsets(args, history, stop_producers)
        except Exception:  # noqa: BLE001 - the group then starts without offsets: its resets are anomalies
            history.write("crash", proc="seed", err=traceback.format_exc(limit=4))
        group = [threading.Thread(target=guarded, args=(group_member_loop, f"g{i}", i, args, history, stop_group),
                                  daemon=True)
                 for i in range(args.group_members)]
    for t in producers + consumers + group:
        t.start()
    history.write("start", producers=args.producers, consumers=args.consumers, partitions=args.partitions,
                  mode=args.mode, group=args.group, group_members=len(group),
                  assignor=args.assignor if args.group == "classic" else None)
    while not stop_producers.is_set():
        stop_producers.wait(1.0)
        history.flush()
    for t in producers:
        t.join(args.flush_timeout + 30)
    if group:
        deadline = time.monotonic() + args.group_drain_timeout
        while True:
            target, reached = history.group_lag()
            if all(reached[p] >= end for p, end in target.items()) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        history.write("drained", target=target, reached=reached)
        history.flush()
        stop_group.set()
        for t in group:
            t.join(30)
    stop_consumers.set()
    for t in consumers:
        t.join(10)
    history.write("stop")
    history.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
