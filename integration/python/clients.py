"""Produce and consume with the real clients: confluent-kafka (librdkafka) and kafka-python.

Every helper has a deadline: a broker that stops answering fails the test with what was missing
instead of hanging it. Consumers never join a group: they `assign` partitions at explicit offsets
(consumer groups are not part of what this suite proves), and they refuse to silently reset an offset
(`auto.offset.reset=error` / `auto_offset_reset=none`), so an OFFSET_OUT_OF_RANGE from the broker is a
failure, not a quiet re-read.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import confluent_kafka as ck
import kafka as kp
import kafka.errors as kp_errors

# librdkafka settings shared by every confluent-kafka client of the suite.
LIBRDKAFKA_BASE = {
    "broker.address.family": "v4",
    "api.version.request": True,
    "socket.timeout.ms": 10000,
    "socket.connection.setup.timeout.ms": 10000,
    "reconnect.backoff.max.ms": 1000,
}

# Consumer errors that a healthy cluster may show for a moment (leader moves, a broker restarts).
CK_TRANSIENT = {
    ck.KafkaError._TRANSPORT,
    ck.KafkaError._ALL_BROKERS_DOWN,
    ck.KafkaError._RESOLVE,
    ck.KafkaError.LEADER_NOT_AVAILABLE,
    ck.KafkaError.NOT_LEADER_FOR_PARTITION,
    ck.KafkaError.UNKNOWN_TOPIC_OR_PART,
    ck.KafkaError.REQUEST_TIMED_OUT,
    ck.KafkaError.FENCED_LEADER_EPOCH,
    ck.KafkaError.UNKNOWN_LEADER_EPOCH,
    ck.KafkaError.OFFSET_NOT_AVAILABLE,
}


@dataclass
class Rec:
    """One record to produce; `None` fields are left to the client."""

    value: bytes | None
    key: bytes | None = None
    headers: list[tuple[str, bytes | None]] | None = None
    timestamp: int | None = None
    partition: int | None = None


@dataclass
class Delivered:
    """A record the broker acknowledged, with the partition and offset it reported."""

    rec: Rec
    partition: int
    offset: int


@dataclass(frozen=True)
class Consumed:
    """A record as a consumer returned it, the same shape for every client."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    timestamp: int
    timestamp_type: str  # "create", "append" or "none"


def unique_group() -> str:
    return f"chronik-test-{uuid.uuid4().hex[:12]}"


# ----- confluent-kafka -----

def ck_producer(bootstrap: str, config: dict | None = None) -> ck.Producer:
    return ck.Producer({
        **LIBRDKAFKA_BASE,
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": False,
        "linger.ms": 10,
        "message.timeout.ms": 30000,
        "request.timeout.ms": 15000,
        **(config or {}),
    })


def ck_produce(bootstrap: str, topic: str, records: list[Rec], config: dict | None = None,
               timeout: float = 60.0) -> list[Delivered]:
    """Produces `records` in order and returns their delivery reports; fails on any delivery error."""
    producer = ck_producer(bootstrap, config)
    delivered: list[Delivered | None] = [None] * len(records)
    errors: list[str] = []

    def report(index: int):
        def on_delivery(err, msg):
            if err is not None:
                errors.append(f"record {index}: {err}")
            else:
                delivered[index] = Delivered(records[index], msg.partition(), msg.offset())
        return on_delivery

    for i, rec in enumerate(records):
        kwargs = {"value": rec.value, "key": rec.key, "on_delivery": report(i)}
        if rec.headers is not None:
            kwargs["headers"] = rec.headers
        if rec.timestamp is not None:
            kwargs["timestamp"] = rec.timestamp
        if rec.partition is not None:
            kwargs["partition"] = rec.partition
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(timeout)
    assert not errors, f"confluent-kafka delivery errors on {topic}: {errors[:10]}"
    assert left == 0, f"{left} records to {topic} still undelivered after {timeout}s"
    missing = [i for i, d in enumerate(delivered) if d is None]
    assert not missing, f"no delivery report for records {missing[:10]}"
    return delivered  # type: ignore[return-value]


def _ck_timestamp(msg) -> tuple[int, str]:
    kind, ts = msg.timestamp()
    names = {ck.TIMESTAMP_CREATE_TIME: "create", ck.TIMESTAMP_LOG_APPEND_TIME: "append"}
    return ts, names.get(kind, "none")


def ck_consumed(msg) -> Consumed:
    ts, kind = _ck_timestamp(msg)
    return Consumed(msg.topic(), msg.partition(), msg.offset(), msg.key(), msg.value(),
                    tuple(msg.headers() or ()), ts, kind)


def ck_consumer(bootstrap: str, config: dict | None = None) -> ck.Consumer:
    return ck.Consumer({
        **LIBRDKAFKA_BASE,
        "bootstrap.servers": bootstrap,
        "group.id": unique_group(),  # required by the client; never joined (we only assign)
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "error",
        "fetch.wait.max.ms": 100,
        "enable.partition.eof": False,
        **(config or {}),
    })


def ck_poll(consumer: ck.Consumer, count: int, timeout: float, what: str,
            quiet_after: float = 0.0) -> list[Consumed]:
    """Polls until `count` records arrived (then `quiet_after` s more, expecting nothing new)."""
    out: list[Consumed] = []
    transient: list[str] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: got {len(out)} of {count} records in {timeout}s; "
                                 f"transient errors: {transient[-10:]}")
        msg = consumer.poll(0.2)
        if msg is None:
            continue
        if msg.error():
            err = msg.error()
            if err.code() in CK_TRANSIENT or err.retriable():
                transient.append(str(err))
                continue
            raise AssertionError(f"{what}: consumer error {err} after {len(out)} records")
        out.append(ck_consumed(msg))
    quiet_deadline = time.monotonic() + quiet_after
    while time.monotonic() < quiet_deadline:
        msg = consumer.poll(0.1)
        if msg is not None and not msg.error():
            raise AssertionError(f"{what}: unexpected extra record after {count}: {ck_consumed(msg)}")
    return out


def ck_consume(bootstrap: str, start: dict[tuple[str, int], int], count: int, timeout: float = 60.0,
               config: dict | None = None, quiet_after: float = 0.0) -> list[Consumed]:
    """Assigns {(topic, partition): offset} and returns the first `count` records, in arrival order."""
    consumer = ck_consumer(bootstrap, config)
    try:
        consumer.assign([ck.TopicPartition(t, p, o) for (t, p), o in start.items()])
        return ck_poll(consumer, count, timeout, f"confluent consumer of {sorted(start)}", quiet_after)
    finally:
        consumer.close()


# ----- kafka-python -----

def kp_producer(bootstrap: str, **config) -> kp.KafkaProducer:
    settings = dict(
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=False,
        linger_ms=10,
        request_timeout_ms=15000,
        delivery_timeout_ms=45000,
        max_block_ms=30000,
    )
    settings.update(config)
    return kp.KafkaProducer(**settings)


def kp_produce(bootstrap: str, topic: str, records: list[Rec], timeout: float = 60.0,
               **config) -> list[Delivered]:
    """Produces `records` in order with kafka-python and returns what each future reported."""
    producer = kp_producer(bootstrap, **config)
    try:
        futures = []
        for rec in records:
            futures.append(producer.send(
                topic, value=rec.value, key=rec.key, headers=rec.headers,
                partition=rec.partition, timestamp_ms=rec.timestamp))
        producer.flush(timeout=timeout)
        delivered, errors = [], []
        for i, (rec, future) in enumerate(zip(records, futures)):
            try:
                meta = future.get(timeout=1)
                delivered.append(Delivered(rec, meta.partition, meta.offset))
            except Exception as error:  # noqa: BLE001 - collected and reported together
                errors.append(f"record {i}: {error!r}")
        assert not errors, f"kafka-python delivery errors on {topic}: {errors[:10]}"
        return delivered
    finally:
        producer.close(timeout=10)


def kp_consumer(bootstrap: str, **config) -> kp.KafkaConsumer:
    settings = dict(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
        fetch_max_wait_ms=100,
        request_timeout_ms=15000,
    )
    settings.update(config)
    return kp.KafkaConsumer(**settings)


def kp_consumed(record) -> Consumed:
    kind = {0: "create", 1: "append"}.get(record.timestamp_type, "none")
    return Consumed(record.topic, record.partition, record.offset, record.key, record.value,
                    tuple(tuple(h) for h in (record.headers or ())), record.timestamp, kind)


def kp_poll(consumer: kp.KafkaConsumer, count: int, timeout: float, what: str,
            quiet_after: float = 0.0) -> list[Consumed]:
    out: list[Consumed] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: got {len(out)} of {count} records in {timeout}s")
        try:
            batches = consumer.poll(timeout_ms=200)
        except (kp_errors.KafkaConnectionError, kp_errors.NotLeaderForPartitionError,
                kp_errors.LeaderNotAvailableError, kp_errors.RequestTimedOutError):
            continue
        for records in batches.values():
            out.extend(kp_consumed(r) for r in records)
    if len(out) > count:
        if quiet_after:
            raise AssertionError(f"{what}: unexpected extra records after {count}: {out[count:count + 3]}")
        out = out[:count]
    quiet_deadline = time.monotonic() + quiet_after
    while time.monotonic() < quiet_deadline:
        extra = [r for rs in consumer.poll(timeout_ms=100).values() for r in rs]
        if extra:
            raise AssertionError(f"{what}: unexpected extra records after {count}: {extra[:3]}")
    return out


def kp_consume(bootstrap: str, start: dict[tuple[str, int], int], count: int, timeout: float = 60.0,
               quiet_after: float = 0.0, **config) -> list[Consumed]:
    consumer = kp_consumer(bootstrap, **config)
    try:
        partitions = {key: kp.TopicPartition(*key) for key in start}
        consumer.assign(list(partitions.values()))
        for key, offset in start.items():
            consumer.seek(partitions[key], offset)
        return kp_poll(consumer, count, timeout, f"kafka-python consumer of {sorted(start)}", quiet_after)
    finally:
        consumer.close()


# ----- checks shared by the client suites -----

def payload(i: int, size: int = 100) -> bytes:
    """A compressible value that names its sequence number."""
    head = f"{i:08d}:".encode()
    return head + b"chronik" * (size // 7)


def seq_of(value: bytes) -> int:
    return int(value.split(b":", 1)[0])


def assert_same_records(produced: list[Delivered], consumed: list[Consumed], *,
                        check_timestamps: bool = True) -> None:
    """Every produced record was consumed once, at its acknowledged partition and offset, intact."""
    by_position = {(c.partition, c.offset): c for c in consumed}
    assert len(by_position) == len(consumed), "a consumer returned one offset twice"
    for d in produced:
        c = by_position.get((d.partition, d.offset))
        assert c is not None, f"acknowledged record at {d.partition}/{d.offset} was not consumed"
        assert c.value == d.rec.value, f"{d.partition}/{d.offset}: value {c.value!r} != {d.rec.value!r}"
        assert c.key == d.rec.key, f"{d.partition}/{d.offset}: key {c.key!r} != {d.rec.key!r}"
        if d.rec.headers is not None:
            assert list(c.headers) == [tuple(h) for h in d.rec.headers], \
                f"{d.partition}/{d.offset}: headers {c.headers!r} != {d.rec.headers!r}"
        if check_timestamps and d.rec.timestamp is not None:
            assert (c.timestamp_type, c.timestamp) == ("create", d.rec.timestamp), \
                f"{d.partition}/{d.offset}: timestamp {c.timestamp_type}:{c.timestamp} != create:{d.rec.timestamp}"
    assert len(consumed) == len(produced), f"consumed {len(consumed)} records, produced {len(produced)}"
