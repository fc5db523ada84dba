"""The checker: pure functions from a run's history, its faults and the final state to anomalies and
an unavailability table. No IO, so it is unit-tested on crafted histories
(`integration/python/test_chaos_checker.py`).

Inputs:
- `ops`: the workload's history (see `workload`): `ack`, `fail`, `read`, `done`, ...
- `final`: {partition: {offset: value}}, a full read of every partition below its high watermark after
  every fault was healed; `hws`: {partition: high watermark} of that read.
- `faults`: the nemesis's records {"kind", "start", "heal", "recovered", "detail"} (wall-clock s).

Anomalies (each fails the run):
- `lost_ack`: an acknowledged value is not at its acknowledged (partition, offset) in the final read.
- `conflicting_ack`: two different values acknowledged at one (partition, offset).
- `duplicate`: a value at two positions of the final log, or read by consumers at two positions.
- `lost_read`: a consumer read (p, o) = v, and the final log holds something else there, or nothing.
- `unexpected_value`: a value no producer sent (unparseable, unknown producer, or a sequence number
  at or beyond what that producer sent), in the final log or in a read.
- `producer_order`: one producer's values out of its sending order within a partition (idempotent
  producers with at most 5 requests in flight keep order).
- `replica_divergence`: replicas that differ below the high watermark (computed from the on-disk
  logs by the runner and passed in as ready-made anomalies).
- `producer_fatal`: an idempotent producer failed fatally (e.g. OUT_OF_ORDER_SEQUENCE_NUMBER): the
  client found the broker's sequence state inconsistent with what it had acknowledged, which for an
  idempotent producer means the broker lost acknowledged records or its producer state. Not for a
  transactional producer's out-of-order sequence on a partition where an abort of that producer
  instance purged a record (`reuses_purged_sequence`): librdkafka reuses the sequences of the
  records it purges, even of one the leader had written (a leader that appended a batch and lost
  leadership before acks=all completed answers NOT_LEADER_OR_FOLLOWER, as Kafka's `DelayedProduce`
  does, which librdkafka takes for "not persisted"), and the leader refuses the reused batch rather
  than answer it with the aborted record's offset (`ProducerEntry::find_duplicate`); librdkafka calls
  that a fatal desynchronization. Those are counted (`expected_fatal_errors`), and a lost committed
  record would still be a `lost_ack`. Any other out-of-order fatal is an anomaly.
- `client_crash`: a workload producer or consumer died on an exception the workload does not handle
  (its `crash` line). What it would have recorded is missing, so the run's verdict is incomplete:
  an open transaction it left pins the last stable offset until the coordinator times it out, and a
  producer that never says `done` weakens the `unexpected_value` check. A harness bug to fix, never a
  pass.
- `unreadable_partition`: after every fault was healed (and stuck brokers restarted), the final read
  could not get the partition whole. Nothing is concluded about its acks and reads (they are not
  counted as lost: the records may well be on disk); the partition itself is the anomaly.
- `live_broker_fenced`: the controller fenced a broker because its session stream closed (issue
  #12's fast detection of dead processes: the grace ran out, or a follower found its port refusing),
  yet that broker process logged after the fencing: a live broker fenced without a silent failure's
  session timeout. Found in the node logs (`live_brokers_fenced_by_stream`), not the history.
- `removed_replica_kept_data`: a reassignment dropped a broker from a partition's replicas and
  completed, and 20 s later that broker (running, not paused, not cut off) still had the partition's
  directory: a removed replica must delete its copy (KIP-455), else moving the partition back would
  start it from stale data. From the `reassign` faults' records (`reassignment_anomalies`).
- `cancel_not_reverted`: a reassignment cancelled while under way did not return the partition to
  its replicas before the move, as a set (Kafka's `PartitionReassignmentRevert` keeps them in the
  order they had during the move, so the preferred leader may change).

With a consumer group in the workload (`workload --group`; `check_group`), also:
- `lost_commit`: a member assigned a partition read first at an offset below the last commit there
  that was acknowledged before the assignment: the group went back past an acknowledged commit.
- `group_reset`: a member's position was refused (`auto.offset.reset` is `error`, and every
  partition has a committed offset from the start, so this means a committed offset was lost or
  pointed outside the log).
- `group_stalled`: once the producers stopped, after every fault was healed, the group did not read
  a partition up to its last acknowledged record within the drain timeout (or the workload never
  said how far it got).
- `group_missed`: an acknowledged record (at its offset in the final log) below where the group read
  to that no member read: the group skipped it.
- `double_owner`: a member was assigned a partition that another member still held and later gave
  back with a normal revocation, so both owned it at once. Not when the earlier holder's holding ended
  as `lost`, nor when a coordinator had removed the holder (its member id in a broker's line saying
  it expired or did not rejoin in time, `expired_members`) before the assignment: a member
  whose coordinator is cut off, or that keeps talking to a deposed coordinator which cannot tell
  (as in Kafka), learns late that its partitions moved.

The transactional workload (`workload --mode txn`; `check_transactions`) reads with read_committed,
so `final` holds committed records only, and its acks are the records of committed transactions.
Every check above applies, and these too:
- `aborted_read`: a record of a transaction the producer aborted (abort_transaction returned) was
  read by a read_committed consumer or is in the final read_committed log.
- `torn_txn`: a transaction whose records are in the final log in part only: some of a committed
  one's are missing (each is also a `lost_ack`), or an undecided one (its producer died) is neither
  whole nor absent.
- `untracked_value`: a record in the final log or a read that belongs to no transaction the
  producers reported (each producer reports every transaction it began before it says `done`).
"""

from __future__ import annotations

import collections
import datetime
import re
import struct
from dataclasses import dataclass, field

VALUE = re.compile(r"^p(\d+)-(\d+)$")
# The topic partition in librdkafka's message for a refused produce: "ProduceRequest for chaos [5] ...".
PARTITION_IN_ERROR = re.compile(r"ProduceRequest for \S+ \[(\d+)\]")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z ")
STREAM_FENCING = re.compile(r"fenced broker: session stream .* broker_id=(\d+) broker_epoch=(-?\d+)")
# Written by `cluster.Node.start` before each process of a node: one process's lines follow it.
PROCESS_START = re.compile(r"^===== \S+ start ")

KINDS = ("lost_ack", "conflicting_ack", "duplicate", "lost_read", "unexpected_value", "producer_order",
         "replica_divergence", "producer_fatal", "unreadable_partition", "live_broker_fenced",
         "removed_replica_kept_data", "cancel_not_reverted", "aborted_read", "torn_txn", "untracked_value",
         "client_crash", "lost_commit", "group_reset", "group_stalled", "group_missed",
         "double_owner")


@dataclass
class Anomaly:
    kind: str
    detail: str
    t: float | None = None
    partition: int | None = None
    offset: int | None = None
    value: str | None = None


@dataclass
class Report:
    anomalies: list[Anomaly] = field(default_factory=list)
    acks: int = 0
    reads: int = 0
    failed_deliveries: int = 0
    fatal_producer_errors: int = 0
    # Transactional producers' fatal out-of-order sequences, not anomalies (see `producer_fatal`).
    expected_fatal_errors: int = 0
    consumer_resets: int = 0
    acks_without_offset: int = 0

    def by_kind(self) -> collections.Counter:
        return collections.Counter(a.kind for a in self.anomalies)


def parse_value(value: str) -> tuple[int, int] | None:
    m = VALUE.match(value or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def sent_counts(ops: list[dict]) -> dict[str, int] | None:
    """{producer: records sent} from the producers' `done` lines; None if any producer never said."""
    started = next((op for op in ops if op["op"] == "start"), None)
    done = {op["proc"]: op["sent"] for op in ops if op["op"] == "done"}
    if started is None or len(done) < started.get("producers", 0):
        return None
    return done


def check(ops: list[dict], final: dict[int, dict[int, str]], hws: dict[int, int],
          unreadable: dict[int, str] | None = None) -> Report:
    """Every anomaly of the module doc except `replica_divergence`. Acks and reads of `unreadable`
    partitions ({partition: why}) are not judged; each such partition is one anomaly."""
    report = Report()
    unreadable = unreadable or {}
    for p, why in sorted(unreadable.items()):
        report.anomalies.append(Anomaly("unreadable_partition", f"p{p}: {why}", None, p))
    ops = [op for op in ops if op.get("p") not in unreadable]
    final = {p: log for p, log in final.items() if p not in unreadable}
    acks = [op for op in ops if op["op"] == "ack"]
    reads = [op for op in ops if op["op"] == "read"]
    report.acks, report.reads = len(acks), len(reads)
    report.failed_deliveries = sum(1 for op in ops if op["op"] == "fail")
    report.fatal_producer_errors = sum(1 for op in ops if op["op"] == "fatal")
    transactional = workload_mode(ops) == "txn"
    for index, op in enumerate(ops):
        if op["op"] == "fatal":
            if transactional and is_out_of_order(op["err"]) and reuses_purged_sequence(ops, index):
                report.expected_fatal_errors += 1
                continue
            report.anomalies.append(Anomaly("producer_fatal", f"{op['proc']} failed fatally (t={op['t']:.3f}): "
                                            f"{op['err']}", op["t"]))
    for op in ops:
        if op["op"] == "crash":
            report.anomalies.append(Anomaly("client_crash", f"{op['proc']} died (t={op['t']:.3f}): {op['err']}",
                                            op["t"]))
    report.consumer_resets = sum(1 for op in ops if op["op"] == "reset")
    add = report.anomalies.append

    # Acks without an offset: librdkafka's idempotent producer reports some records delivered without
    # one (a batch whose own response was lost but a later sequence was acknowledged, so it must have
    # been persisted). Such a value must be in its partition's final log.
    blind = [op for op in acks if op.get("o") is None or op["o"] < 0]
    acks = [op for op in acks if op.get("o") is not None and op["o"] >= 0]
    report.acks_without_offset = len(blind)

    # conflicting acknowledgements and lost acknowledged writes
    acked_at: dict[tuple[int, int], dict] = {}
    for op in acks:
        key = (op["p"], op["o"])
        prior = acked_at.get(key)
        if prior is not None and prior["v"] != op["v"]:
            add(Anomaly("conflicting_ack", f"p{key[0]}@{key[1]} acknowledged for {prior['v']} "
                        f"(t={prior['t']:.3f}) and for {op['v']} (t={op['t']:.3f})", op["t"], *key, op["v"]))
        acked_at.setdefault(key, op)
    for op in acks:
        p, o, v = op["p"], op["o"], op["v"]
        there = final.get(p, {}).get(o)
        if there != v:
            hw = hws.get(p, 0)
            where = positions_of(final, v)
            add(Anomaly("lost_ack", f"{v} acknowledged at p{p}@{o} (t={op['t']:.3f}); final log holds "
                        f"{there!r} there (high watermark {hw}); {v} is at {fmt_positions(where) if where else 'no offset'}",
                        op["t"], p, o, v))

    # duplicates in the final log
    final_positions: dict[str, list[tuple[int, int]]] = collections.defaultdict(list)
    for p, log in final.items():
        for o, v in log.items():
            final_positions[v].append((p, o))
    for op in blind:
        if not any(p == op["p"] for p, _ in final_positions.get(op["v"], ())):
            add(Anomaly("lost_ack", f"{op['v']} acknowledged without an offset on p{op['p']} (t={op['t']:.3f}); "
                        f"it is not in that partition's final log (it is at "
                        f"{fmt_positions(final_positions.get(op['v'], []))})", op["t"], op["p"], None, op["v"]))
    for v, where in final_positions.items():
        if len(where) > 1:
            add(Anomaly("duplicate", f"{v} is in the final log at {fmt_positions(where)}", None,
                        where[1][0], where[1][1], v))

    # reads: lost reads and duplicates seen by consumers
    read_positions: dict[str, set[tuple[int, int]]] = collections.defaultdict(set)
    lost_read_seen: set[tuple[int, int, str]] = set()
    for op in reads:
        p, o, v = op["p"], op["o"], op["v"]
        read_positions[v].add((p, o))
        there = final.get(p, {}).get(o)
        if there != v and (p, o, v) not in lost_read_seen:
            lost_read_seen.add((p, o, v))
            add(Anomaly("lost_read", f"{op['proc']} read p{p}@{o} = {v} (t={op['t']:.3f}); final log holds "
                        f"{there!r} there (high watermark {hws.get(p, 0)})", op["t"], p, o, v))
    for v, where in read_positions.items():
        if len(where) > 1 and len(final_positions.get(v, ())) <= 1:
            add(Anomaly("duplicate", f"{v} was read at {fmt_positions(sorted(where))}", None,
                        None, None, v))

    # values nobody sent
    sent = sent_counts(ops)
    seen_values = set(final_positions) | set(read_positions)
    for v in sorted(seen_values):
        parsed = parse_value(v)
        reason = None
        if parsed is None:
            reason = "not a value the workload writes"
        elif sent is not None:
            producer, seq = parsed
            if f"p{producer}" not in sent:
                reason = f"no producer p{producer}"
            elif seq >= sent[f"p{producer}"]:
                reason = f"p{producer} sent only {sent[f'p{producer}']} values"
        if reason:
            where = final_positions.get(v) or sorted(read_positions.get(v, ()))
            add(Anomaly("unexpected_value", f"{v!r} at {fmt_positions(where)}: {reason}", None,
                        where[0][0] if where else None, where[0][1] if where else None, v))

    # each producer's order within each partition
    for p, log in final.items():
        last: dict[int, tuple[int, int]] = {}
        for o in sorted(log):
            parsed = parse_value(log[o])
            if parsed is None:
                continue
            producer, seq = parsed
            if producer in last and seq < last[producer][0]:
                add(Anomaly("producer_order", f"p{p}@{o} holds p{producer}-{seq} after "
                            f"p{producer}-{last[producer][0]} at offset {last[producer][1]}", None, p, o, log[o]))
            last[producer] = (seq, o)
    return report


def reuses_purged_sequence(ops: list[dict], index: int) -> bool:
    """Whether the transactional producer's fatal out-of-order sequence at `ops[index]` is the
    librdkafka reuse the `producer_fatal` doc describes: since that producer instance began (its
    previous `fatal`), an abort purged one of its records of the refused partition (a `fail` with
    `_PURGE_QUEUE`). The partition comes from librdkafka's message ("ProduceRequest for chaos [5]
    ..."); a fatal that names none, or no such purge, is an anomaly."""
    fatal = ops[index]
    named = PARTITION_IN_ERROR.search(fatal.get("err") or "")
    if named is None:
        return False
    partition = int(named.group(1))
    for op in reversed(ops[:index]):
        if op.get("proc") != fatal["proc"]:
            continue
        if op["op"] == "fatal":
            return False
        if op["op"] == "fail" and op.get("p") == partition and op.get("err") == "_PURGE_QUEUE":
            return True
    return False


def is_out_of_order(error: str) -> bool:
    """Whether a producer's fatal error is an out-of-order sequence (librdkafka's name for the code,
    or its message)."""
    text = (error or "").lower()
    return "out_of_order_sequence" in text or "out of order sequence" in text


def workload_mode(ops: list[dict]) -> str:
    """The workload's mode from its `start` line: "idempotent" (also for histories from before modes)
    or "txn"."""
    started = next((op for op in ops if op["op"] == "start"), {})
    return started.get("mode", "idempotent")


def check_transactions(ops: list[dict], final: dict[int, dict[int, str]],
                       unreadable: dict[int, str] | None = None) -> list[Anomaly]:
    """The transactional anomalies of the module doc. Transactions with a record in an `unreadable`
    partition are not judged (their records' partitions are seq % partitions, from the history's
    `start`)."""
    unreadable = unreadable or {}
    started = next((op for op in ops if op["op"] == "start"), {})
    partitions = started.get("partitions") or 1
    anomalies: list[Anomaly] = []
    owner: dict[str, dict] = {}
    for op in ops:
        if op["op"] == "txn":
            for seq in range(op["first"], op["last"] + 1):
                owner[f"{op['proc']}-{seq}"] = op
    in_final: dict[str, tuple[int, int]] = {}
    for p, log in final.items():
        if p in unreadable:
            continue
        for o, v in log.items():
            in_final[v] = (p, o)
    every_producer_done = sent_counts(ops) is not None

    seen_aborted: set[str] = set()
    for v, (p, o) in sorted(in_final.items()):
        txn = owner.get(v)
        if txn is not None and txn["outcome"] == "abort" and v not in seen_aborted:
            seen_aborted.add(v)
            anomalies.append(Anomaly("aborted_read", f"{v} (transaction {txn['proc']}#{txn['txn']}, aborted at "
                                     f"t={txn['t']:.3f}) is in the final read_committed log at p{p}@{o}",
                                     txn["t"], p, o, v))
        elif txn is None and every_producer_done and parse_value(v) is not None:
            anomalies.append(Anomaly("untracked_value", f"{v} is in the final log at p{p}@{o} but in no "
                                     f"reported transaction", None, p, o, v))
    for op in ops:
        if op["op"] != "read" or op.get("p") in unreadable:
            continue
        txn = owner.get(op["v"])
        if txn is not None and txn["outcome"] == "abort" and op["v"] not in seen_aborted:
            seen_aborted.add(op["v"])
            anomalies.append(Anomaly("aborted_read", f"{op['proc']} (read_committed) read {op['v']} at "
                                     f"p{op['p']}@{op['o']} (t={op['t']:.3f}), a record of transaction "
                                     f"{txn['proc']}#{txn['txn']} aborted at t={txn['t']:.3f}",
                                     op["t"], op["p"], op["o"], op["v"]))

    for op in ops:
        if op["op"] != "txn" or op["outcome"] == "abort":
            continue
        values = [f"{op['proc']}-{seq}" for seq in range(op["first"], op["last"] + 1)]
        if any(seq % partitions in unreadable for seq in range(op["first"], op["last"] + 1)):
            continue
        present = [v for v in values if v in in_final]
        if 0 < len(present) < len(values):
            missing = [v for v in values if v not in in_final]
            anomalies.append(Anomaly("torn_txn", f"transaction {op['proc']}#{op['txn']} ({op['outcome']}, "
                                     f"t={op['t']:.3f}): {len(present)} of its {len(values)} records are in the "
                                     f"final log; missing {missing[:6]}", op["t"], None, None, missing[0]))
    return anomalies


def group_counts(ops: list[dict]) -> collections.Counter:
    """How much the group did: its reads, commits, refused commits, assignments, revocations, losses."""
    counts: collections.Counter = collections.Counter()
    for op in ops:
        if op["op"] == "read" and op.get("g"):
            counts["reads"] += 1
        elif op["op"] in ("commit", "commit_fail", "assign", "revoke", "lost"):
            counts[op["op"]] += 1
    return counts


EXPIRED_MEMBERS = re.compile(r"(?:consumer group members expired|members left: they did not rejoin in time) "
                             r"group=(\S+) members=\[([^\]]*)\]")
EXPIRED_MEMBER = re.compile(r"member session expired group=(\S+) member=(\S+)")


def expired_members(broker_lines: list[str], group: str) -> dict[str, list[float]]:
    """{member id: every time a coordinator expired it} from the brokers' logs (KIP-848 groups'
    "consumer group members expired", classic groups' "member session expired" and "members left:
    they did not rejoin in time"). A KIP-848 member keeps its id when it rejoins, so one id may be
    expired more than once."""
    expired: dict[str, list[float]] = collections.defaultdict(list)
    for raw in broker_lines:
        line = ANSI.sub("", raw)
        at = _stamp(line)
        found: list[str] = []
        if (m := EXPIRED_MEMBERS.search(line)) and m.group(1) == group:
            found = [x.strip().strip('"') for x in m.group(2).split(",") if x.strip()]
        elif (m := EXPIRED_MEMBER.search(line)) and m.group(1) == group:
            found = [m.group(2)]
        for member in found:
            if at is not None:
                expired[member].append(at)
    return dict(expired)


def java_string_hash(text: str) -> int:
    """Java's `String.hashCode` (UTF-16 code units), as Kafka places a group on an offsets partition."""
    h = 0
    raw = text.encode("utf-16-be")
    for i in range(0, len(raw), 2):
        h = (31 * h + int.from_bytes(raw[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def offsets_partition_of(group: str, partitions: int = 50) -> int:
    """The `__consumer_offsets` partition of `group` (Kafka's `abs(hashCode) % partitions`)."""
    h = java_string_hash(group)
    return (abs(h) if h != -(1 << 31) else 0) % partitions


def offset_commits(segment_bytes: bytes, group: str) -> list[tuple[int, int, str, int, int]]:
    """The offset commits of `group` in a `__consumer_offsets` segment's bytes: (log offset, the
    batch's leader epoch, topic, partition, committed offset), in log order. Record keys of version
    0/1 (Kafka's OffsetCommitKey); other records, tombstones and control batches are skipped."""
    def varint(b: bytes, i: int) -> tuple[int, int]:
        shift = value = 0
        while True:
            x = b[i]
            i += 1
            value |= (x & 0x7F) << shift
            if x < 0x80:
                return (value >> 1) ^ -(value & 1), i
            shift += 7

    out = []
    b, pos = segment_bytes, 0
    while pos + 61 <= len(b):
        base, length = struct.unpack(">qi", b[pos:pos + 12])
        end = pos + 12 + length
        if length <= 0 or end > len(b):
            break
        epoch = struct.unpack(">i", b[pos + 12:pos + 16])[0]
        attributes = struct.unpack(">h", b[pos + 21:pos + 23])[0]
        count = struct.unpack(">i", b[pos + 57:pos + 61])[0]
        i = pos + 61
        for _ in range(0 if attributes & 0x20 else count):
            size, i = varint(b, i)
            record_end = i + size
            _, i = varint(b, i + 1)  # attributes, timestamp delta
            delta, i = varint(b, i)
            key_len, i = varint(b, i)
            key = b[i:i + key_len] if key_len >= 0 else b""
            i += max(key_len, 0)
            value_len, i = varint(b, i)
            value = b[i:i + value_len] if value_len >= 8 + 2 else None
            i = record_end
            if len(key) < 4 or struct.unpack(">h", key[:2])[0] not in (0, 1) or value is None:
                continue
            k = 2
            n = struct.unpack(">h", key[k:k + 2])[0]
            name = key[k + 2:k + 2 + n].decode(errors="replace")
            k += 2 + n
            n = struct.unpack(">h", key[k:k + 2])[0]
            topic = key[k + 2:k + 2 + n].decode(errors="replace")
            k += 2 + n
            if name != group:
                continue
            partition = struct.unpack(">i", key[k:k + 4])[0]
            out.append((base + delta, epoch, topic, partition, struct.unpack(">q", value[2:10])[0]))
        pos = end
    return out


def check_group(ops: list[dict], final: dict[int, dict[int, str]],
                unreadable: dict[int, str] | None = None,
                expired: dict[str, list[float]] | None = None) -> list[Anomaly]:
    """The consumer group's anomalies of the module doc (none without a group in the workload).
    Partitions in `unreadable` are not judged; `expired` is `expired_members`."""
    started = next((op for op in ops if op["op"] == "start"), {})
    if started.get("group", "none") == "none":
        return []
    unreadable = unreadable or {}
    anomalies: list[Anomaly] = []
    add = anomalies.append

    # The history is in the order its lines were written: a commit's line after its answer, an
    # assignment's line before the member fetches its committed offsets.
    last_commit: dict[int, dict] = {}
    first_read_due: dict[tuple[str, int], tuple[dict, dict | None]] = {}
    reads: set[tuple[int, int]] = set()
    # Who holds each partition (member, incarnation), and the assignments of a partition to another
    # member while its holder still held it, judged when that holding ends.
    holder: dict[int, tuple[str, int]] = {}
    held_since: dict[int, float] = {}
    member_of: dict[tuple[str, int], str] = {}
    overlaps: dict[tuple[str, int, int], list[dict]] = collections.defaultdict(list)
    expired = expired or {}
    for op in ops:
        kind = op["op"]
        if kind == "commit":
            last_commit[op["p"]] = op
        elif kind == "assign":
            for p in op["parts"]:
                first_read_due[(op["proc"], p)] = (op, last_commit.get(p))
                held = holder.get(p)
                if held is not None and held[0] != op["proc"]:
                    # Excused only by an expiry of the holder while it held the partition.
                    since = held_since.get(p, 0.0)
                    expiries = expired.get(member_of.get(held, ""), [])
                    if not any(since <= at <= op["t"] for at in expiries):
                        overlaps[(*held, p)].append(op)
                holder[p] = (op["proc"], op["inc"])
                held_since[p] = op["t"]
                if op.get("member"):
                    member_of[(op["proc"], op["inc"])] = op["member"]
        elif kind in ("revoke", "lost"):
            for p in op["parts"]:
                first_read_due.pop((op["proc"], p), None)
                for other in overlaps.pop((op["proc"], op["inc"], p), []):
                    if kind == "revoke" and p not in unreadable:
                        add(Anomaly("double_owner", f"{other['proc']} was assigned p{p} (t={other['t']:.3f}) while "
                                    f"{op['proc']} still held it; {op['proc']} revoked it only at "
                                    f"t={op['t']:.3f}", other["t"], p))
                if holder.get(p) == (op["proc"], op["inc"]):
                    del holder[p]
        elif kind == "read" and op.get("g"):
            p, o = op["p"], op["o"]
            reads.add((p, o))
            assigned, commit = first_read_due.pop((op["proc"], p), (None, None))
            if commit is not None and o < commit["o"] and p not in unreadable:
                add(Anomaly("lost_commit", f"{op['proc']} was assigned p{p} (t={assigned['t']:.3f}) and read "
                            f"from offset {o} (t={op['t']:.3f}), below offset {commit['o']} that {commit['proc']} "
                            f"committed (acknowledged at t={commit['t']:.3f})", op["t"], p, o, op["v"]))
        elif kind == "reset" and op["proc"].startswith("g") and op["p"] not in unreadable:
            add(Anomaly("group_reset", f"{op['proc']}'s position on p{op['p']} (after offset {op['o']}) was "
                        f"refused (t={op['t']:.3f}): {op['err']}", op["t"], op["p"], op["o"]))

    drained = next((op for op in ops if op["op"] == "drained"), None)
    if drained is None:
        add(Anomaly("group_stalled", "the workload never said how far the group read (it did not stop in time "
                    "or died)"))
        return anomalies
    reached = {int(p): o for p, o in drained["reached"].items()}
    # What the group had to read: up to each partition's last acknowledged record still in the final
    # log (one that was lost is a lost_ack; the group could not read it).
    kept_end: dict[int, int] = {}
    for op in ops:
        if op["op"] == "ack" and isinstance(op.get("o"), int) and final.get(op["p"], {}).get(op["o"]) == op["v"]:
            kept_end[op["p"]] = max(kept_end.get(op["p"], 0), op["o"] + 1)
    for p, end in sorted(kept_end.items()):
        if p not in unreadable and reached.get(p, 0) < end:
            add(Anomaly("group_stalled", f"the group read p{p} up to offset {reached.get(p, 0)}, not to its "
                        f"last acknowledged record's {end}, within the drain timeout (t={drained['t']:.3f})",
                        drained["t"], p, reached.get(p, 0)))
    for op in ops:
        if op["op"] != "ack" or op.get("o") is None or op["o"] < 0:
            continue
        p, o = op["p"], op["o"]
        if p in unreadable or o >= reached.get(p, 0) or final.get(p, {}).get(o) != op["v"]:
            continue  # not judged, not reached (group_stalled), or lost (lost_ack)
        if (p, o) not in reads:
            add(Anomaly("group_missed", f"{op['v']} acknowledged at p{p}@{o} (t={op['t']:.3f}) was read by no "
                        f"group member, though the group read p{p} up to offset {reached[p]}", op["t"], p, o,
                        op["v"]))
    return anomalies


def positions_of(final: dict[int, dict[int, str]], value: str) -> list[tuple[int, int]]:
    return [(p, o) for p, log in final.items() for o, v in log.items() if v == value]


def fmt_positions(where) -> str:
    return ", ".join(f"p{p}@{o}" for p, o in where) or "nowhere"


# ----- replicas -----

def compare_replica_logs(partition: int, hw: int,
                         logs: dict[int, list[tuple[int, int, int, bytes]]]) -> list[Anomaly]:
    """`logs`: {broker: [(base offset, next offset, leader epoch, batch bytes)]} of one partition's
    in-sync replicas, the batches ending at or below `hw`. Each must cover [0, hw) contiguously, and
    all must be byte-identical."""
    anomalies = []
    for b, batches in sorted(logs.items()):
        starts = [s for s, _, _, _ in batches]
        ends = [n for _, n, _, _ in batches]
        if hw and (not batches or starts[0] != 0 or ends[-1] != hw or starts[1:] != ends[:-1]):
            covered = f"[{starts[0]}, {ends[-1]})" if batches else "nothing"
            gaps = [(e, s) for e, s in zip(ends, starts[1:]) if e != s][:5]
            anomalies.append(Anomaly("replica_divergence", f"p{partition} broker {b} (in the ISR): its batches "
                                     f"below the high watermark {hw} cover {covered}, gaps {gaps}", None, partition))
    members = sorted(logs)
    for b in members[1:]:
        ref = members[0]
        if logs[b] == logs[ref]:
            continue
        for i, (x, y) in enumerate(zip(logs[ref], logs[b])):
            if x != y:
                anomalies.append(Anomaly("replica_divergence", f"p{partition}: brokers {ref} and {b} differ at "
                                         f"batch #{i}: [{x[0]}, {x[1]}) epoch {x[2]} vs [{y[0]}, {y[1]}) epoch {y[2]}",
                                         None, partition, x[0]))
                break
    return anomalies


# ----- unavailability -----

def ack_times_by_partition(ops: list[dict]) -> dict[int, list[float]]:
    out: dict[int, list[float]] = collections.defaultdict(list)
    for op in ops:
        if op["op"] == "ack":
            out[op["p"]].append(op["t"])
    for times in out.values():
        times.sort()
    return out


def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest stretch inside [start, end] without an ack (times sorted). The stretch before the
    first ack of the window counts from `start`; the one after the last counts to the next ack after
    the window (or `end` if there is none)."""
    import bisect

    i = bisect.bisect_left(times, start)
    prev = start
    worst = 0.0
    while i < len(times) and times[i] <= end:
        worst = max(worst, times[i] - prev)
        prev = times[i]
        i += 1
    following = times[i] if i < len(times) else end
    worst = max(worst, following - prev)
    return worst


def unavailability(ops: list[dict], faults: list[dict]) -> list[dict]:
    """Per fault: the longest gap in acknowledgements on any partition from the fault's start to its
    recovery (or heal + 30 s when it never recovered), and which partition had it."""
    by_partition = ack_times_by_partition(ops)
    out = []
    for f in faults:
        end = f.get("recovered") or (f["heal"] + 30.0)
        worst, where = 0.0, None
        for p, times in by_partition.items():
            gap = longest_gap(times, f["start"], end)
            if gap > worst:
                worst, where = gap, p
        out.append({**f, "worst_gap": worst, "gap_partition": where})
    return out


def history_around(ops: list[dict], faults: list[dict], anomaly: Anomaly, seconds: float = 2.0,
                   limit: int = 30) -> list[str]:
    """The operations near an anomaly: on its partition within `seconds` of its time (or of the acks
    and reads of its value), and the faults active then."""
    times = [anomaly.t] if anomaly.t is not None else []
    if anomaly.value is not None:
        times += [op["t"] for op in ops if op.get("v") == anomaly.value]
    if not times:
        return []
    lo, hi = min(times) - seconds, max(times) + seconds
    lines = [f"fault {f['kind']} {f.get('detail', '')} start={f['start']:.3f} heal={f['heal']:.3f}"
             for f in faults if f["start"] <= hi and (f.get("recovered") or f["heal"]) >= lo]
    near = [op for op in ops if lo <= op["t"] <= hi and op["op"] in ("ack", "read", "fail", "reset", "fatal", "commit")
            and (anomaly.partition is None or op.get("p") == anomaly.partition)]
    if anomaly.offset is not None:
        def distance(op: dict) -> int:
            o = op.get("o")
            return abs(o - anomaly.offset) if isinstance(o, int) else 0

        near.sort(key=lambda op: (distance(op), op["t"]))
        near = near[:limit]
    else:
        near = near[:limit]
    # The group's rebalances on the partition, all of them in the window.
    near += [op for op in ops if lo <= op["t"] <= hi and op["op"] in ("assign", "revoke", "lost")
             and (anomaly.partition is None or anomaly.partition in op.get("parts", ()))]
    near.sort(key=lambda op: op["t"])
    lines += [" ".join(f"{k}={v}" for k, v in op.items()) for op in near]
    return lines


def _stamp(line: str) -> float | None:
    """The wall-clock time of a tracing log line (UTC, as the nodes write it), or None."""
    m = STAMP.match(line)
    if not m:
        return None
    whole, _, fraction = m.group(1).partition(".")
    base = datetime.datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return base.timestamp() + float(f"0.{fraction}")


def live_brokers_fenced_by_stream(controller_lines: list[str],
                                  broker_lines: dict[int, list[str]]) -> list[Anomaly]:
    """`live_broker_fenced` anomalies: every fencing the controllers logged as caused by a closed
    session stream must be of a process that was gone, so the process that held the fenced
    registration (the one whose log, between two start markers, says it registered with that broker
    epoch) must have logged nothing later."""
    anomalies = []
    for raw in controller_lines:
        line = ANSI.sub("", raw)
        m = STREAM_FENCING.search(line)
        at = _stamp(line)
        if not m or at is None:
            continue
        broker, epoch = int(m.group(1)), int(m.group(2))
        registered = f"registered with the controller broker_id={broker} broker_epoch={epoch} "
        # Per process of the broker: whether it held this registration, and its last line's time.
        processes: list[list] = [[False, None]]
        for raw_b in broker_lines.get(broker, []):
            b = ANSI.sub("", raw_b)
            if PROCESS_START.match(b):
                processes.append([False, None])
                continue
            processes[-1][0] |= registered in b + " "
            processes[-1][1] = _stamp(b) or processes[-1][1]
        last = next((t for held, t in processes if held), None)
        if last is not None and last > at:
            anomalies.append(Anomaly(
                "live_broker_fenced",
                f"broker {broker} (epoch {epoch}) fenced at {at:.3f} because its session stream closed, "
                f"yet the process of that registration logged until {last:.3f}", at))
    return anomalies


def reassignment_anomalies(faults: list[dict]) -> list[Anomaly]:
    """`removed_replica_kept_data` and `cancel_not_reverted` from the `reassign` faults' records
    (`facts["reassign"]`, see `nemesis.reassign`)."""
    anomalies = []
    for f in faults:
        r = (f.get("facts") or {}).get("reassign")
        if not r:
            continue
        p = r["p"]
        if r.get("removed_dir_left"):
            anomalies.append(Anomaly("removed_replica_kept_data", f"fault {f.get('index')}: p{p} moved from "
                                     f"{r['from']} to {r['to']} and completed, yet b{r['drop']} still held its "
                                     f"directory 20 s later", f.get("heal"), p))
        cancel = r.get("cancel")
        # As a set: Kafka's `PartitionReassignmentRevert` keeps the original replicas in their order
        # during the move (the target's first), not in the order before it, and so do we.
        if cancel and not cancel["too_late"] and sorted(cancel["got"] or []) != sorted(cancel["expected"]):
            anomalies.append(Anomaly("cancel_not_reverted", f"fault {f.get('index')}: p{p}'s move to {r['back']} "
                                     f"was cancelled under way, yet its replicas are {cancel['got']}, not "
                                     f"{cancel['expected']}", f.get("heal"), p))
    return anomalies


def reassignment_counts(faults: list[dict]) -> dict[str, int]:
    """How the `reassign` faults went: moves asked and completed, cancels."""
    moves = [r for f in faults if (r := (f.get("facts") or {}).get("reassign"))]
    return {
        "faults": len(moves),
        "leaders_dropped": sum(1 for r in moves if r.get("leader_dropped")),
        "shrinks_completed": sum(1 for r in moves if r.get("shrink_completed")),
        "back_completed": sum(1 for r in moves if r.get("completed")),
        "back_not_completed": sum(1 for r in moves if not r.get("completed")),
        "cancelled": sum(1 for r in moves if r.get("cancel") and not r["cancel"]["too_late"]),
        "cancel_too_late": sum(1 for r in moves if r.get("cancel") and r["cancel"]["too_late"]),
    }
