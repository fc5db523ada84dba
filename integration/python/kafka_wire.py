"""The Kafka wire protocol at its rawest: length-prefixed frames over a plain TCP socket.

The suite's clients are confluent-kafka, kafka-python and kcat; this module exists only for what no
real client will do on purpose: send broken frames (oversized, garbage, unknown API keys) and ask one
particular broker for its metadata without triggering auto-creation, hand-made idempotent batches
(a retried batch, a sequence gap, a fenced epoch) that a real client sends only after a fault, and
hand-made (compressed) batches whose header lies about their records, and transactions driven by
hand (transactional batches, and WriteTxnMarkers as a transaction coordinator sends them). It speaks
ApiVersions v0, Metadata v4, InitProducerId v0, Produce v7 and v8 (record errors, log append time, a
transactional id), ListOffsets v5, Fetch v4 and WriteTxnMarkers v1, and builds RecordBatch v2
uncompressed or compressed by the caller; for the legacy formats also Produce v0–v2 with magic 0/1
message sets.
"""

from __future__ import annotations

import socket
import struct
import time
import zlib
from dataclasses import dataclass, field

API_PRODUCE = 0
API_FETCH = 1
API_LIST_OFFSETS = 2
API_METADATA = 3
API_API_VERSIONS = 18
API_INIT_PRODUCER_ID = 22
API_ADD_PARTITIONS_TO_TXN = 24
API_END_TXN = 26
API_WRITE_TXN_MARKERS = 27

TRANSACTIONAL = 0x10  # the RecordBatch attribute bit (KIP-98)
READ_UNCOMMITTED = 0
READ_COMMITTED = 1


# ----- RecordBatch v2 (Kafka's DefaultRecordBatch and DefaultRecord) -----

def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def zigzag_varint(n: int) -> bytes:
    """A signed varint as records use them (zigzag, then 7 bits per byte)."""
    z = (n << 1) ^ (n >> 63)
    z &= (1 << 64) - 1
    out = bytearray()
    while True:
        if z < 0x80:
            out.append(z)
            return bytes(out)
        out.append((z & 0x7F) | 0x80)
        z >>= 7


def record_batch(values: list[bytes], producer_id: int = -1, producer_epoch: int = -1,
                 base_sequence: int = -1, timestamp: int = 1_700_000_000_000,
                 attributes: int = 0) -> bytes:
    """One uncompressed v2 batch of `values` (no keys, no headers) as a producer sends it;
    `attributes=TRANSACTIONAL` makes it a transactional batch."""
    records = b""
    for i, value in enumerate(values):
        body = (b"\x00" + zigzag_varint(0) + zigzag_varint(i) + zigzag_varint(-1)
                + zigzag_varint(len(value)) + value + zigzag_varint(0))
        records += zigzag_varint(len(body)) + body
    after_crc = struct.pack(">hiqqqhii", attributes, len(values) - 1, timestamp, timestamp, producer_id,
                            producer_epoch, base_sequence, len(values)) + records
    crc = crc32c(after_crc)
    after_length = struct.pack(">ibI", -1, 2, crc) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


def encode_records(records: list[tuple[bytes | None, bytes, int]], base_timestamp: int,
                   offset_deltas: list[int] | None = None) -> bytes:
    """Records `(key, value, timestamp)` (Kafka's DefaultRecord, no headers), uncompressed."""
    out = b""
    for i, (key, value, timestamp) in enumerate(records):
        delta = i if offset_deltas is None else offset_deltas[i]
        key_part = zigzag_varint(-1) if key is None else zigzag_varint(len(key)) + key
        body = (b"\x00" + zigzag_varint(timestamp - base_timestamp) + zigzag_varint(delta) + key_part
                + zigzag_varint(len(value)) + value + zigzag_varint(0))
        out += zigzag_varint(len(body)) + body
    return out


def custom_batch(records: list[tuple[bytes | None, bytes, int]], codec: int = 0, compress=None,
                 offset_deltas: list[int] | None = None, record_count: int | None = None,
                 last_offset_delta: int | None = None, attributes: int = 0) -> bytes:
    """One v2 batch of records `(key, value, timestamp)` whose header may lie: `compress` turns the
    encoded records into the bytes stored (codec `codec` in the attributes); RecordCount and
    LastOffsetDelta default to what the records are. The CRC is always right."""
    base_timestamp = min(ts for _, _, ts in records)
    max_timestamp = max(ts for _, _, ts in records)
    inner = encode_records(records, base_timestamp, offset_deltas)
    if compress is not None:
        inner = compress(inner)
    count = len(records) if record_count is None else record_count
    last = len(records) - 1 if last_offset_delta is None else last_offset_delta
    after_crc = struct.pack(">hiqqqhii", attributes | codec, last, base_timestamp, max_timestamp, -1, -1,
                            -1, count) + inner
    after_length = struct.pack(">ibI", -1, 2, crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(after_length)) + after_length


def legacy_message(key: bytes | None, value: bytes | None, magic: int = 1,
                   timestamp: int = 1_700_000_000_000, attributes: int = 0, offset: int = 0) -> bytes:
    """One message-set entry of magic 0 or 1 (Kafka's LegacyRecord), CRC-32 over magic to the end."""
    body = struct.pack(">bb", magic, attributes)
    if magic == 1:
        body += struct.pack(">q", timestamp)
    for field in (key, value):
        body += struct.pack(">i", -1) if field is None else struct.pack(">i", len(field)) + field
    crc = zlib.crc32(body)
    return struct.pack(">qiI", offset, len(body) + 4, crc) + body


@dataclass
class ProduceResult:
    error_code: int
    base_offset: int
    log_start_offset: int
    log_append_time: int = -1
    record_errors: list[tuple[int, str | None]] = field(default_factory=list)
    error_message: str | None = None


def request_frame(api_key: int, api_version: int, correlation_id: int, body: bytes = b"",
                  client_id: str = "chronik-wire-test", flexible: bool = False) -> bytes:
    """A request with header v1 (api_key, api_version, correlation_id, client_id), or v2 (the same
    and an empty tagged-field section) for flexible versions, and `body`."""
    cid = client_id.encode()
    header = struct.pack(">hhih", api_key, api_version, correlation_id, len(cid)) + cid
    if flexible:
        header += b"\x00"
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


class _Reader:
    """Big-endian reads over one response body; running off the end raises ValueError."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"response truncated: need {n} bytes at {self.pos} of {len(self.data)}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int8(self) -> int:
        return struct.unpack(">b", self.take(1))[0]

    def int16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def int32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def string(self) -> str | None:
        n = self.int16()
        return None if n < 0 else self.take(n).decode()

    def int64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def array(self, item):
        n = self.int32()
        return [] if n < 0 else [item() for _ in range(n)]

    # Flexible versions (compact encodings, tagged fields).

    def uvarint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def compact_string(self) -> str | None:
        n = self.uvarint()
        return None if n == 0 else self.take(n - 1).decode()

    def compact_array(self, item):
        n = self.uvarint()
        return [] if n == 0 else [item() for _ in range(n - 1)]

    def tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def compact_string(value: str) -> bytes:
    raw = value.encode()
    return uvarint(len(raw) + 1) + raw


def compact_array(items: list[bytes]) -> bytes:
    return uvarint(len(items) + 1) + b"".join(items)


@dataclass
class Marker:
    """One WriteTxnMarkers entry: end `producer_id`'s transaction in `partitions` {topic: [index]}."""
    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int
    partitions: dict[str, list[int]]


@dataclass
class FetchedPartition:
    error_code: int
    high_watermark: int
    last_stable_offset: int
    aborted: list[tuple[int, int]] | None
    records: bytes

    def next_offset(self) -> int | None:
        """The offset after the last whole batch in `records`, None when there is none."""
        pos, end = 0, None
        while pos + 12 <= len(self.records):
            base, length = struct.unpack(">qi", self.records[pos:pos + 12])
            if pos + 12 + length > len(self.records):
                break
            last_delta = struct.unpack(">i", self.records[pos + 23:pos + 27])[0]
            end = base + last_delta + 1
            pos += 12 + length
        return end


@dataclass
class PartitionMetadata:
    error_code: int
    partition: int
    leader: int
    replicas: list[int]
    isr: list[int]


@dataclass
class TopicMetadata:
    error_code: int
    name: str
    is_internal: bool
    partitions: dict[int, PartitionMetadata] = field(default_factory=dict)


@dataclass
class Metadata:
    brokers: dict[int, tuple[str, int]]
    cluster_id: str | None
    controller_id: int
    topics: dict[str, TopicMetadata]


def _produce_body(topic: str, partition: int, records: bytes, acks: int, timeout_ms: int) -> bytes:
    """A Produce body after the transactional id (v3+; v0–v2 have none): one topic, one partition."""
    name = topic.encode()
    return (struct.pack(">hi", acks, timeout_ms) + struct.pack(">i", 1)
            + struct.pack(">h", len(name)) + name + struct.pack(">i", 1)
            + struct.pack(">ii", partition, len(records)) + records)


class KafkaConnection:
    """One TCP connection to a broker's Kafka listener, with a deadline on every read."""

    def __init__(self, address: str, timeout: float = 10.0):
        host, port = address.rsplit(":", 1)
        self.address = address
        self.timeout = timeout
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._next_correlation_id = 1

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "KafkaConnection":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exact(self, n: int) -> bytes:
        chunks = []
        while n > 0:
            chunk = self.sock.recv(min(n, 1 << 20))
            if not chunk:
                raise ConnectionError(f"{self.address} closed the connection mid-response")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def request(self, api_key: int, api_version: int, body: bytes = b"", flexible: bool = False) -> bytes:
        """Sends one request and returns its response body (after the v0 response header, or for a
        flexible version after the v1 header, whose tagged fields must be empty)."""
        correlation_id = self._next_correlation_id
        self._next_correlation_id += 1
        self.send_raw(request_frame(api_key, api_version, correlation_id, body, flexible=flexible))
        size = struct.unpack(">i", self._recv_exact(4))[0]
        if size < 4:
            raise ValueError(f"response frame of {size} bytes from {self.address}")
        payload = self._recv_exact(size)
        got = struct.unpack(">i", payload[:4])[0]
        if got != correlation_id:
            raise ValueError(f"correlation id {got} answered request {correlation_id}")
        if flexible:
            if payload[4:5] != b"\x00":
                raise ValueError(f"unexpected tagged fields in a response header: {payload[4:8]!r}")
            return payload[5:]
        return payload[4:]

    def api_versions(self) -> dict[int, tuple[int, int]]:
        """ApiVersions v0: {api_key: (min_version, max_version)}; raises on a non-zero error code."""
        r = _Reader(self.request(API_API_VERSIONS, 0))
        error = r.int16()
        keys = r.array(lambda: (r.int16(), r.int16(), r.int16()))
        if error != 0:
            raise ValueError(f"ApiVersions v0 error code {error}")
        return {key: (lo, hi) for key, lo, hi in keys}

    def metadata(self, topics: list[str] | None) -> Metadata:
        """Metadata v4 for `topics` (None: all) with AllowAutoTopicCreation=false."""
        if topics is None:
            body = struct.pack(">i", -1)
        else:
            body = struct.pack(">i", len(topics))
            for name in topics:
                raw = name.encode()
                body += struct.pack(">h", len(raw)) + raw
        body += b"\x00"  # allow_auto_topic_creation = false
        r = _Reader(self.request(API_METADATA, 4, body))
        r.int32()  # throttle_time_ms
        brokers = {}
        for node_id, host, port, _rack in r.array(lambda: (r.int32(), r.string(), r.int32(), r.string())):
            brokers[node_id] = (host, port)
        cluster_id = r.string()
        controller_id = r.int32()

        def partition() -> PartitionMetadata:
            return PartitionMetadata(
                error_code=r.int16(), partition=r.int32(), leader=r.int32(),
                replicas=r.array(r.int32), isr=r.array(r.int32))

        def topic() -> TopicMetadata:
            t = TopicMetadata(error_code=r.int16(), name=r.string() or "", is_internal=bool(r.int8()))
            t.partitions = {p.partition: p for p in r.array(partition)}
            return t

        return Metadata(brokers, cluster_id, controller_id, {t.name: t for t in r.array(topic)})

    def init_producer_id(self, transactional_id: str | None = None) -> tuple[int, int, int]:
        """InitProducerId v0: (error code, producer id, producer epoch)."""
        if transactional_id is None:
            body = struct.pack(">h", -1)
        else:
            raw = transactional_id.encode()
            body = struct.pack(">h", len(raw)) + raw
        body += struct.pack(">i", 60000)
        r = _Reader(self.request(API_INIT_PRODUCER_ID, 0, body))
        r.int32()  # throttle_time_ms
        error = r.int16()
        producer_id = struct.unpack(">q", r.take(8))[0]
        return error, producer_id, r.int16()

    def produce(self, topic: str, partition: int, batch: bytes, acks: int = -1,
                timeout_ms: int = 10000, version: int = 7,
                transactional_id: str | None = None) -> ProduceResult:
        """Produce v7 or v8 (with KIP-467 record errors and an error message) of one batch to one
        partition."""
        if version not in (7, 8):
            raise ValueError(f"Produce v{version} is not spoken here")
        if transactional_id is None:
            tid = struct.pack(">h", -1)
        else:
            raw = transactional_id.encode()
            tid = struct.pack(">h", len(raw)) + raw
        body = tid + _produce_body(topic, partition, batch, acks, timeout_ms)
        return self._produce(version, body)[0]

    def produce_flexible(self, topic: str, partition: int, batch: bytes, version: int = 12,
                         transactional_id: str | None = None, acks: int = -1,
                         timeout_ms: int = 10000) -> ProduceResult:
        """Produce v9–v12 (flexible; v12 is transaction version 2, KIP-890) of one batch to one
        partition; the response's tagged fields (leader hints) are skipped."""
        if not 9 <= version <= 12:
            raise ValueError(f"Produce v{version} is not spoken here")
        tid = b"\x00" if transactional_id is None else compact_string(transactional_id)
        data = struct.pack(">i", partition) + uvarint(len(batch) + 1) + batch + b"\x00"
        body = (tid + struct.pack(">hi", acks, timeout_ms)
                + compact_array([compact_string(topic) + compact_array([data]) + b"\x00"]) + b"\x00")
        r = _Reader(self.request(API_PRODUCE, version, body, flexible=True))

        def partition_response() -> ProduceResult:
            r.int32()  # partition index
            result = ProduceResult(error_code=r.int16(), base_offset=r.int64(), log_append_time=r.int64(),
                                   log_start_offset=r.int64())
            result.record_errors = r.compact_array(lambda: (r.int32(), r.compact_string(), r.tagged_fields())[:2])
            result.error_message = r.compact_string()
            r.tagged_fields()
            return result

        def topic_response() -> list[ProduceResult]:
            r.compact_string()
            results = r.compact_array(partition_response)
            r.tagged_fields()
            return results

        results = [p for t in r.compact_array(topic_response) for p in t]
        r.int32()  # throttle_time_ms
        r.tagged_fields()
        if len(results) != 1:
            raise ValueError(f"expected one partition in the produce response, got {results}")
        return results[0]

    def add_partitions_to_txn(self, transactional_id: str, producer_id: int, producer_epoch: int,
                              partitions: dict[str, list[int]]) -> dict[tuple[str, int], int]:
        """AddPartitionsToTxn v1, as a transaction version 1 client sends it: {(topic, partition): error
        code}."""
        raw = transactional_id.encode()
        body = struct.pack(">h", len(raw)) + raw + struct.pack(">qhi", producer_id, producer_epoch, len(partitions))
        for topic, indexes in partitions.items():
            name = topic.encode()
            body += struct.pack(">h", len(name)) + name + struct.pack(">i", len(indexes))
            body += b"".join(struct.pack(">i", i) for i in indexes)
        r = _Reader(self.request(API_ADD_PARTITIONS_TO_TXN, 1, body))
        r.int32()  # throttle_time_ms
        errors = {}
        for _ in range(r.int32()):
            topic = r.string()
            for _ in range(r.int32()):
                partition = r.int32()
                errors[(topic, partition)] = r.int16()
        return errors

    def end_txn(self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool,
                version: int = 5) -> tuple[int, int, int]:
        """EndTxn v3–v5 (flexible): (error code, producer id, producer epoch); the producer fields
        exist from v5 (transaction version 2) and are (-1, -1) before."""
        if not 3 <= version <= 5:
            raise ValueError(f"EndTxn v{version} is not spoken here")
        body = (compact_string(transactional_id) + struct.pack(">qh?", producer_id, producer_epoch, commit)
                + b"\x00")
        r = _Reader(self.request(API_END_TXN, version, body, flexible=True))
        r.int32()  # throttle_time_ms
        error = r.int16()
        pid, epoch = (r.int64(), r.int16()) if version >= 5 else (-1, -1)
        r.tagged_fields()
        return error, pid, epoch

    def write_txn_markers(self, markers: list[Marker]) -> dict[tuple[int, str, int], int]:
        """WriteTxnMarkers v1 (flexible), as a transaction coordinator sends it:
        {(producer id, topic, partition): error code}."""
        entries = []
        for m in markers:
            topics = [compact_string(name) + compact_array([struct.pack(">i", p) for p in parts]) + b"\x00"
                      for name, parts in m.partitions.items()]
            entries.append(struct.pack(">qhb", m.producer_id, m.producer_epoch, 1 if m.commit else 0)
                           + compact_array(topics) + struct.pack(">i", m.coordinator_epoch) + b"\x00")
        r = _Reader(self.request(API_WRITE_TXN_MARKERS, 1, compact_array(entries) + b"\x00", flexible=True))
        out = {}

        def marker():
            pid = r.int64()

            def topic():
                name = r.compact_string()

                def partition():
                    index, error = r.int32(), r.int16()
                    r.tagged_fields()
                    out[(pid, name, index)] = error

                r.compact_array(partition)
                r.tagged_fields()

            r.compact_array(topic)
            r.tagged_fields()

        r.compact_array(marker)
        r.tagged_fields()
        if r.pos != len(r.data):
            raise ValueError(f"WriteTxnMarkers v1 response has {len(r.data) - r.pos} bytes too many")
        return out

    def list_offsets(self, topic: str, partition: int, timestamp: int = -1,
                     isolation_level: int = READ_UNCOMMITTED) -> tuple[int, int]:
        """ListOffsets v5 of one partition: (error code, offset); timestamp -1 is LATEST."""
        name = topic.encode()
        body = (struct.pack(">ib", -1, isolation_level) + struct.pack(">i", 1)
                + struct.pack(">h", len(name)) + name + struct.pack(">i", 1)
                + struct.pack(">iiq", partition, -1, timestamp))
        r = _Reader(self.request(API_LIST_OFFSETS, 5, body))
        r.int32()  # throttle_time_ms
        found = []
        for _ in range(r.int32()):
            r.string()
            for _ in range(r.int32()):
                r.int32()
                error = r.int16()
                r.int64()  # timestamp
                found.append((error, r.int64()))
                r.int32()  # leader epoch
        if len(found) != 1:
            raise ValueError(f"expected one partition in the ListOffsets response, got {found}")
        return found[0]

    def fetch(self, topic: str, partition: int, offset: int, isolation_level: int,
              max_bytes: int = 1 << 20) -> FetchedPartition:
        """Fetch v4 (the first with an isolation level) of one partition, without waiting."""
        name = topic.encode()
        body = (struct.pack(">iiiib", -1, 0, 0, max_bytes, isolation_level) + struct.pack(">i", 1)
                + struct.pack(">h", len(name)) + name + struct.pack(">i", 1)
                + struct.pack(">iqi", partition, offset, max_bytes))
        r = _Reader(self.request(API_FETCH, 4, body))
        r.int32()  # throttle_time_ms
        found = []
        for _ in range(r.int32()):
            r.string()
            for _ in range(r.int32()):
                r.int32()
                error, hw, lso = r.int16(), r.int64(), r.int64()
                n = r.int32()
                aborted = None if n < 0 else [(r.int64(), r.int64()) for _ in range(n)]
                size = r.int32()
                records = b"" if size < 0 else r.take(size)
                found.append(FetchedPartition(error, hw, lso, aborted, records))
        if len(found) != 1 or r.pos != len(r.data):
            raise ValueError(f"unexpected Fetch v4 response: {found}")
        return found[0]

    def produce_legacy(self, version: int, topic: str, partition: int, message_set: bytes,
                       acks: int = -1, timeout_ms: int = 10000) -> tuple[ProduceResult, int, int]:
        """Produce v0–v2 (no transactional id) of one message set to one partition.

        Returns (result, log_append_time_ms or None before v2, throttle_time_ms or None for v0)."""
        return self._produce(version, _produce_body(topic, partition, message_set, acks, timeout_ms))

    def _produce(self, version: int, body: bytes) -> tuple[ProduceResult, int | None, int | None]:
        """Sends a one-partition Produce (v0–v8) and reads its response field by field; a response
        longer or shorter than its version's schema raises ValueError."""
        r = _Reader(self.request(API_PRODUCE, version, body))
        results = []
        for _ in range(r.int32()):
            r.string()
            for _ in range(r.int32()):
                r.int32()  # partition index
                error = r.int16()
                base_offset = struct.unpack(">q", r.take(8))[0]
                append_time = struct.unpack(">q", r.take(8))[0] if version >= 2 else None
                log_start = struct.unpack(">q", r.take(8))[0] if version >= 5 else -1
                result = ProduceResult(error, base_offset, log_start,
                                       -1 if append_time is None else append_time)
                if version >= 8:
                    result.record_errors = r.array(lambda: (r.int32(), r.string()))
                    result.error_message = r.string()
                results.append((result, append_time))
        throttle = r.int32() if version >= 1 else None
        if r.pos != len(r.data):
            raise ValueError(f"Produce v{version} response has {len(r.data) - r.pos} bytes too many")
        if len(results) != 1:
            raise ValueError(f"expected one partition in the produce response, got {results}")
        return results[0][0], results[0][1], throttle

    def wait_closed_by_peer(self, timeout: float) -> tuple[bool, bytes]:
        """Reads until the broker closes the connection or `timeout` passes.

        Returns (closed, bytes received meanwhile). A reset counts as closed."""
        deadline = time.monotonic() + timeout
        received = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, received
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False, received
            except (ConnectionResetError, BrokenPipeError):
                return True, received
            if not chunk:
                return True, received
            received += chunk
