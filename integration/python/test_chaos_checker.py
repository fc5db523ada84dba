"""The chaos checker (`integration/chaos/checker.py`) on crafted histories: every anomaly kind it
claims to find is found when planted, and a clean history yields none. No cluster involved."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chaos"))

import checker  # noqa: E402


def ack(v, p, o, t=1.0):
    return {"op": "ack", "t": t, "proc": v.split("-")[0], "v": v, "p": p, "o": o}


def read(v, p, o, t=1.0, proc="c0"):
    return {"op": "read", "t": t, "proc": proc, "v": v, "p": p, "o": o}


def start(producers=1):
    return {"op": "start", "t": 0.0, "producers": producers, "consumers": 1, "partitions": 2}


def done(proc, sent):
    return {"op": "done", "t": 99.0, "proc": proc, "sent": sent, "unflushed": 0}


def kinds(report):
    return sorted(a.kind for a in report.anomalies)


def clean_history():
    ops = [start(), ack("p0-0", 0, 0, 1.0), ack("p0-1", 1, 0, 1.1), ack("p0-2", 0, 1, 1.2),
           read("p0-0", 0, 0), read("p0-2", 0, 1), read("p0-1", 1, 0), done("p0", 3)]
    final = {0: {0: "p0-0", 1: "p0-2"}, 1: {0: "p0-1"}}
    return ops, final, {0: 2, 1: 1}


def test_clean_history_has_no_anomaly():
    ops, final, hws = clean_history()
    assert kinds(checker.check(ops, final, hws)) == []


def test_acknowledged_write_missing_from_the_final_log_is_a_lost_ack():
    ops, final, hws = clean_history()
    del final[0][1]  # the log was truncated below p0-2's acknowledged offset
    report = checker.check(ops, final, {0: 1, 1: 1})
    lost = [a for a in report.anomalies if a.kind == "lost_ack"]
    assert [(a.value, a.partition, a.offset) for a in lost] == [("p0-2", 0, 1)]
    # the consumer had read it too: that read is lost as well
    assert "lost_read" in kinds(report)


def test_acknowledged_write_at_another_offset_is_a_lost_ack():
    ops, final, hws = clean_history()
    final[0] = {0: "p0-0", 1: "p0-9", 2: "p0-2"}  # p0-2 moved: offset 1 now holds something else
    ops[-1] = done("p0", 10)
    report = checker.check(ops, final, {0: 3, 1: 1})
    assert [a.value for a in report.anomalies if a.kind == "lost_ack"] == ["p0-2"]
    assert [a for a in report.anomalies if a.kind == "lost_ack"][0].detail.endswith("p0-2 is at p0@2")


def test_two_values_acknowledged_at_one_offset_conflict():
    ops, final, hws = clean_history()
    ops.insert(-1, ack("p0-3", 0, 1, 2.0))
    ops[-1] = done("p0", 4)
    assert "conflicting_ack" in kinds(checker.check(ops, final, hws))


def test_value_at_two_offsets_is_a_duplicate():
    ops, final, hws = clean_history()
    final[0][2] = "p0-2"
    report = checker.check(ops, final, {0: 3, 1: 1})
    dups = [a for a in report.anomalies if a.kind == "duplicate"]
    assert [a.value for a in dups] == ["p0-2"]


def test_value_read_at_two_offsets_is_a_duplicate():
    ops, final, hws = clean_history()
    ops.insert(-1, read("p0-2", 1, 1, 2.0, proc="c1"))
    report = checker.check(ops, final, hws)
    assert "duplicate" in kinds(report)
    assert "lost_read" in kinds(report)  # (1, 1) is not in the final log either


def test_read_whose_offset_later_holds_another_value_is_a_lost_read():
    ops, final, hws = clean_history()
    ops.insert(-1, read("p0-5", 1, 1, 2.0))  # read, then the new leader overwrote offset 1
    final[1][1] = "p0-6"
    ops[-1] = done("p0", 7)
    report = checker.check(ops, final, {0: 2, 1: 2})
    assert [(a.kind, a.value) for a in report.anomalies] == [("lost_read", "p0-5")]


def test_read_above_the_final_high_watermark_is_a_lost_read():
    ops, final, hws = clean_history()
    ops.insert(-1, read("p0-3", 0, 2, 2.0))
    ops[-1] = done("p0", 4)
    assert kinds(checker.check(ops, final, hws)) == ["lost_read"]


def test_values_nobody_sent_are_unexpected():
    ops, final, hws = clean_history()
    final[1][1] = "garbage"
    final[1][2] = "p0-7"   # p0 sent only 3
    final[1][3] = "p4-0"   # no producer p4
    report = checker.check(ops, final, {0: 2, 1: 4})
    assert sorted(a.value for a in report.anomalies if a.kind == "unexpected_value") == ["garbage", "p0-7", "p4-0"]


def test_one_producers_values_out_of_order_in_a_partition():
    ops = [start(), ack("p0-1", 0, 0), ack("p0-0", 0, 1), done("p0", 2)]
    final = {0: {0: "p0-1", 1: "p0-0"}}
    assert kinds(checker.check(ops, final, {0: 2})) == ["producer_order"]


def test_longest_gap_counts_the_stretches_at_the_window_edges():
    times = [0.0, 1.0, 2.0, 9.0, 10.0]
    assert checker.longest_gap(times, 1.5, 8.0) == 7.0  # the ack at 2.0 to the next one, after the window
    assert checker.longest_gap(times, 2.5, 9.5) == 6.5  # the window's start to the ack at 9.0
    assert checker.longest_gap(times, 9.5, 20.0) == 10.0  # no ack after 10.0 until the window's end
    assert checker.longest_gap([], 0.0, 5.0) == 5.0


def test_unavailability_names_the_worst_partition_per_fault():
    ops = [ack("p0-0", 0, 0, 10.0), ack("p0-1", 1, 0, 10.0), ack("p0-2", 0, 1, 11.0),
           ack("p0-3", 1, 1, 18.0), ack("p0-4", 0, 2, 12.0), ack("p0-5", 1, 2, 19.0)]
    faults = [{"kind": "kill", "start": 10.5, "heal": 15.0, "recovered": 16.0}]
    rows = checker.unavailability(ops, faults)
    assert rows[0]["gap_partition"] == 1 and rows[0]["worst_gap"] == 7.5


def test_history_around_a_lost_ack_shows_its_partition_and_the_faults_then():
    ops, final, hws = clean_history()
    del final[0][1]
    faults = [{"kind": "kill", "detail": "kill -9 b1", "start": 1.15, "heal": 3.0, "recovered": 4.0}]
    report = checker.check(ops, final, {0: 1, 1: 1})
    lost = next(a for a in report.anomalies if a.kind == "lost_ack")
    lines = checker.history_around(ops, faults, lost)
    assert lines[0].startswith("fault kill kill -9 b1")
    assert any("v=p0-2" in line for line in lines) and not any("p=1" in line for line in lines)


def test_an_unreadable_partition_is_one_anomaly_and_its_acks_are_not_judged():
    ops, final, hws = clean_history()
    final[0] = {}  # nothing could be read from p0
    report = checker.check(ops, final, hws, unreadable={0: "2 of the 2 offsets never returned"})
    assert kinds(report) == ["unreadable_partition"]
    assert report.anomalies[0].partition == 0


def test_an_ack_without_an_offset_only_needs_its_value_in_its_partition():
    ops, final, hws = clean_history()
    ops.insert(-1, ack("p0-3", 1, None, 2.0))
    ops.insert(-1, ack("p0-4", 1, None, 2.1))
    ops[-1] = done("p0", 5)
    final[1][1] = "p0-3"  # p0-4 never made it
    report = checker.check(ops, final, {0: 2, 1: 2})
    assert report.acks_without_offset == 2
    assert [(a.kind, a.value) for a in report.anomalies] == [("lost_ack", "p0-4")]


def test_replicas_that_differ_below_the_high_watermark_diverge():
    same = [(0, 2, 0, b"batch-a"), (2, 5, 1, b"batch-b")]
    assert checker.compare_replica_logs(0, 5, {1: same, 2: list(same), 3: list(same)}) == []
    other = [(0, 2, 0, b"batch-a"), (2, 5, 2, b"batch-x")]  # a different batch at the same offsets
    found = checker.compare_replica_logs(0, 5, {1: same, 2: other, 3: list(same)})
    assert [a.kind for a in found] == ["replica_divergence"] and "brokers 1 and 2" in found[0].detail


def test_a_replica_missing_committed_batches_diverges():
    full = [(0, 2, 0, b"a"), (2, 5, 0, b"b")]
    short = [(0, 2, 0, b"a")]
    found = checker.compare_replica_logs(3, 5, {1: full, 2: full, 3: short})
    assert any("broker 3" in a.detail and "[0, 2)" in a.detail for a in found)
    assert checker.compare_replica_logs(3, 5, {1: full, 2: [(0, 2, 0, b"a"), (3, 5, 0, b"b")]})


def test_a_fatal_idempotent_producer_error_is_an_anomaly():
    ops, final, hws = clean_history()
    ops.insert(-1, {"op": "fatal", "t": 2.0, "proc": "p0", "err": "OUT_OF_ORDER_SEQUENCE_NUMBER"})
    assert kinds(checker.check(ops, final, hws)) == ["producer_fatal"]


def test_a_crashed_workload_client_is_an_anomaly():
    ops, final, hws = clean_history()
    ops.insert(-1, {"op": "crash", "t": 2.0, "proc": "p0", "err": "Traceback ...\nKafkaException: ..."})
    assert kinds(checker.check(ops, final, hws)) == ["client_crash"]


def test_the_workload_records_a_loop_that_dies_as_a_crash(tmp_path):
    import json

    import workload

    def dies(index, args, history, stop):
        raise RuntimeError(f"loop {index} broke")

    history = workload.History(str(tmp_path / "history.jsonl"))
    workload.guarded(dies, "p3", 3, None, history, None)
    history.close()
    [line] = (tmp_path / "history.jsonl").read_text().splitlines()
    op = json.loads(line)
    assert op["op"] == "crash" and op["proc"] == "p3" and "loop 3 broke" in op["err"]


def test_a_transactional_producers_refusal_tells_fatal_from_abortable():
    import confluent_kafka as ck

    import workload

    fatal = ck.KafkaException(ck.KafkaError(ck.KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, fatal=True))
    abortable = ck.KafkaException(ck.KafkaError(ck.KafkaError._STATE, txn_requires_abort=True))
    assert workload.refusal("poll", fatal).startswith("fatal: poll: OUT_OF_ORDER_SEQUENCE_NUMBER")
    assert workload.refusal("produce", abortable).startswith("abort: produce: _STATE")
    assert workload.refusal("poll", ck.KafkaException("no error object")).startswith("fatal: poll:")


def fencing_line(at, broker, epoch, why="session stream closed and not reopened within the grace period"):
    return f"{at}Z  INFO chronik_controller::liveness: fenced broker: {why} broker_id={broker} broker_epoch={epoch} offset=9"


def broker_log(*processes):
    """One broker's log: per process, (epoch it registered with, stamps of its other lines)."""
    lines = []
    for epoch, stamps in processes:
        lines.append("===== 01:00:00 start b2 =====")
        lines.append(f"{stamps[0]}Z  INFO chronik_broker::lifecycle: registered with the controller broker_id=2 "
                     f"broker_epoch={epoch} cluster_id=x heartbeat_interval_ms=1000")
        lines += [f"{t}Z  INFO chronik_broker::replica::fetcher: replica fetcher started leader=1" for t in stamps[1:]]
    return lines


def test_a_stream_fencing_of_a_dead_process_is_no_anomaly():
    # Killed at 10.5 (last line 10.4), fenced at 10.8, restarted as epoch 9 at 10.7 (before the
    # fencing: its lines after it are another registration's).
    log = broker_log((5, ["2026-12-04T01:00:01.000", "2026-12-04T01:00:10.400"]),
                     (9, ["2026-12-04T01:00:10.700", "2026-12-04T01:00:12.000"]))
    fenced = [fencing_line("2026-12-04T01:00:10.800", 2, 5)]
    assert checker.live_brokers_fenced_by_stream(fenced, {2: log}) == []


def test_a_stream_fencing_of_a_process_that_logs_on_is_a_live_broker_fenced():
    log = broker_log((5, ["2026-12-04T01:00:01.000", "2026-12-04T01:00:10.400", "2026-12-04T01:00:11.000"]))
    for why in ("session stream closed and not reopened within the grace period",
                "session stream closed and another broker found its listener refusing connections"):
        fenced = [fencing_line("2026-12-04T01:00:10.800", 2, 5, why)]
        found = checker.live_brokers_fenced_by_stream(fenced, {2: log})
        assert [a.kind for a in found] == ["live_broker_fenced"], why
    # A session timeout is how a live but silent broker is fenced: no anomaly.
    timed_out = [fencing_line("2026-12-04T01:00:10.800", 2, 5, "session expired")]
    assert checker.live_brokers_fenced_by_stream(timed_out, {2: log}) == []


def reassign_fault(index=1, **facts):
    base = {"p": 4, "from": [1, 2, 3], "drop": 1, "leader_dropped": True, "to": [2, 3], "back": [3, 1, 2],
            "shrink_completed": True, "removed_dir_left": False, "completed": True}
    return {"index": index, "kind": "reassign", "heal": 5.0, "facts": {"reassign": {**base, **facts}}}


def test_a_clean_reassignment_is_no_anomaly_and_is_counted():
    faults = [reassign_fault(1), reassign_fault(2, cancel={"expected": [2, 3], "got": [2, 3], "too_late": False}),
              reassign_fault(3, cancel={"expected": [2, 3], "got": None, "too_late": True}, completed=False),
              {"index": 4, "kind": "kill", "heal": 6.0, "notes": []}]  # a record without facts (older runs)
    assert checker.reassignment_anomalies(faults) == []
    counts = checker.reassignment_counts(faults)
    assert counts == {"faults": 3, "leaders_dropped": 3, "shrinks_completed": 3, "back_completed": 2,
                      "back_not_completed": 1, "cancelled": 1, "cancel_too_late": 1}


def test_a_removed_broker_keeping_its_copy_is_an_anomaly():
    found = checker.reassignment_anomalies([reassign_fault(removed_dir_left=True)])
    assert [(a.kind, a.partition) for a in found] == [("removed_replica_kept_data", 4)]
    assert "b1" in found[0].detail


def test_a_cancel_that_does_not_restore_the_replicas_is_an_anomaly():
    for got in ([3, 1, 2], [2], None):
        found = checker.reassignment_anomalies(
            [reassign_fault(cancel={"expected": [2, 3], "got": got, "too_late": False})])
        assert [(a.kind, a.partition) for a in found] == [("cancel_not_reverted", 4)], got
    # Back on the same replicas in the move's order (Kafka's PartitionReassignmentRevert): no anomaly.
    assert checker.reassignment_anomalies(
        [reassign_fault(cancel={"expected": [2, 3], "got": [3, 2], "too_late": False})]) == []


# ----- the transactional workload (`checker.check_transactions`) -----

def txn(proc, number, first, last, outcome, t=5.0):
    return {"op": "txn", "t": t, "proc": proc, "txn": number, "first": first, "last": last, "outcome": outcome,
            "err": None}


def txn_history():
    """p0 commits #0 (p0-0, p0-1), aborts #1 (p0-2), and #2 (p0-3, p0-4) is undecided and landed whole;
    2 partitions, value p0-<seq> on partition seq % 2."""
    ops = [dict(start(), mode="txn"), ack("p0-0", 0, 0), ack("p0-1", 1, 0), txn("p0", 0, 0, 1, "commit"),
           txn("p0", 1, 2, 2, "abort"), txn("p0", 2, 3, 4, "unknown"), read("p0-0", 0, 0), done("p0", 5)]
    final = {0: {0: "p0-0", 4: "p0-4"}, 1: {0: "p0-1", 3: "p0-3"}}
    return ops, final, {0: 5, 1: 4}


def test_a_clean_transactional_history_has_no_anomaly():
    ops, final, hws = txn_history()
    assert checker.workload_mode(ops) == "txn"
    assert kinds(checker.check(ops, final, hws)) == []
    assert checker.check_transactions(ops, final) == []


def desync(partition):
    """librdkafka's fatal error for a refused reused sequence, as a chaos run recorded it."""
    return ("fatal: commit_transaction: OUT_OF_ORDER_SEQUENCE_NUMBER ProduceRequest for chaos "
            f"[{partition}] with 1 message(s) failed due to sequence desynchronization with broker 1 "
            "(PID{Id:2000,Epoch:0}, base seq 138, idemp state change 59493ms ago, last partition error "
            "NOT_LEADER_FOR_PARTITION (actions Refresh,MsgNotPersisted, base seq 138..138, base msgid 139, "
            "33189ms ago)")


def test_an_out_of_order_sequence_after_an_abort_purged_a_record_there_is_counted_not_an_anomaly():
    ops, final, hws = txn_history()
    # The abort of #1 purged p0-2 (partition 0) from librdkafka's queue; #2 then reused its sequence.
    ops.insert(4, {"op": "fail", "t": 4.9, "proc": "p0", "v": "p0-2", "p": 0, "err": "_PURGE_QUEUE"})
    ops.insert(-1, {"op": "fatal", "t": 6.0, "proc": "p0", "err": desync(0)})
    report = checker.check(ops, final, hws)
    assert kinds(report) == [] and report.expected_fatal_errors == 1
    # Any other fatal error of a transactional producer still is one.
    ops.insert(-1, {"op": "fatal", "t": 7.0, "proc": "p0", "err": "fatal: abort_transaction: INVALID_TXN_STATE"})
    assert kinds(checker.check(ops, final, hws)) == ["producer_fatal"]


def test_an_out_of_order_sequence_without_a_purge_on_that_partition_is_an_anomaly():
    ops, final, hws = txn_history()
    ops.insert(4, {"op": "fail", "t": 4.9, "proc": "p0", "v": "p0-2", "p": 0, "err": "_PURGE_QUEUE"})
    # Refused on partition 1, where nothing was purged.
    ops.insert(-1, {"op": "fatal", "t": 6.0, "proc": "p0", "err": desync(1)})
    assert kinds(checker.check(ops, final, hws)) == ["producer_fatal"]
    # A purge by an earlier producer instance (before its fatal) does not explain a later one.
    ops, final, hws = txn_history()
    ops.insert(4, {"op": "fail", "t": 4.9, "proc": "p0", "v": "p0-2", "p": 0, "err": "_PURGE_QUEUE"})
    ops.insert(5, {"op": "fatal", "t": 5.0, "proc": "p0", "err": "fatal: init_transactions: _FENCED"})
    ops.insert(-1, {"op": "fatal", "t": 6.0, "proc": "p0", "err": desync(0)})
    assert kinds(checker.check(ops, final, hws)) == ["producer_fatal", "producer_fatal"]
    # Nor does a message that names no partition.
    ops, final, hws = txn_history()
    ops.insert(4, {"op": "fail", "t": 4.9, "proc": "p0", "v": "p0-2", "p": 0, "err": "_PURGE_QUEUE"})
    ops.insert(-1, {"op": "fatal", "t": 6.0, "proc": "p0", "err": "fatal: poll: OUT_OF_ORDER_SEQUENCE_NUMBER"})
    assert kinds(checker.check(ops, final, hws)) == ["producer_fatal"]


def test_histories_from_before_modes_are_idempotent():
    ops, _, _ = clean_history()
    assert checker.workload_mode(ops) == "idempotent"


def test_a_record_of_an_aborted_transaction_in_the_final_log_is_an_aborted_read():
    ops, final, _ = txn_history()
    final[0][2] = "p0-2"
    found = checker.check_transactions(ops, final)
    assert [a.kind for a in found] == ["aborted_read"] and found[0].value == "p0-2"


def test_a_read_committed_consumer_reading_an_aborted_record_is_an_aborted_read():
    ops, final, _ = txn_history()
    ops.insert(-1, read("p0-2", 0, 2, proc="c1"))
    assert [a.kind for a in checker.check_transactions(ops, final)] == ["aborted_read"]


def test_an_undecided_transaction_in_part_is_torn():
    ops, final, _ = txn_history()
    del final[1][3]
    found = checker.check_transactions(ops, final)
    assert [a.kind for a in found] == ["torn_txn"] and found[0].value == "p0-3"


def test_an_undecided_transaction_wholly_absent_is_fine():
    ops, final, _ = txn_history()
    del final[1][3]
    del final[0][4]
    assert checker.check_transactions(ops, final) == []


def test_a_committed_transaction_missing_a_record_is_torn_and_a_lost_ack():
    ops, final, hws = txn_history()
    del final[1][0]
    assert [a.kind for a in checker.check_transactions(ops, final)] == ["torn_txn"]
    assert "lost_ack" in kinds(checker.check(ops, final, hws))


def test_a_record_in_no_reported_transaction_is_untracked():
    ops, final, _ = txn_history()
    ops = [op for op in ops if not (op["op"] == "txn" and op["txn"] == 2)]
    assert sorted(a.kind for a in checker.check_transactions(ops, final)) == ["untracked_value"] * 2


def test_transactions_touching_an_unreadable_partition_are_not_judged():
    ops, final, _ = txn_history()
    del final[1][3]
    assert checker.check_transactions(ops, final, unreadable={1: "never reached its end"}) == []


def test_the_batch_dump_names_a_control_batch_by_its_record_key():
    """`run.control_type` reads a control record's key (version int16, type int16): what the chaos
    run's evidence prints for each marker around an anomaly."""
    import run

    def control_batch(kind: int) -> bytes:
        key = (0).to_bytes(2, "big") + kind.to_bytes(2, "big", signed=True)
        # length, attributes, timestamp delta 0, offset delta 0, key length 4 (zigzag varints)
        body = bytes([0, 0, 0, 8]) + key + bytes([0, 0])
        return bytes(run.BATCH_HEADER) + bytes([len(body) * 2]) + body

    assert run.control_type(control_batch(1)) == "COMMIT"
    assert run.control_type(control_batch(0)) == "ABORT"
    assert run.control_type(control_batch(7)) == "type 7"
    assert run.control_type(bytes(run.BATCH_HEADER)) == "unreadable"


# ----- the consumer group (`workload --group`) -----


def gop(op, proc, t, **fields):
    return {"op": op, "t": t, "proc": proc, **fields}


def gread(v, p, o, t, proc="g0"):
    return dict(read(v, p, o, t, proc), g=True)


def group_history():
    """p0 writes p0-0..p0-3 to partition 0 (offsets 0-3). g0 reads 0-1, commits 2 and is revoked; g1
    is assigned the partition, reads 2-3 and commits 4; the group drained to 4."""
    ops = [dict(start(), group="consumer", group_members=2),
           ack("p0-0", 0, 0, 1.0), ack("p0-1", 0, 1, 1.1), ack("p0-2", 0, 2, 1.2), ack("p0-3", 0, 3, 1.3),
           gop("assign", "g0", 2.0, inc=1, parts=[0]), gread("p0-0", 0, 0, 2.1), gread("p0-1", 0, 1, 2.2),
           gop("commit", "g0", 2.3, inc=1, p=0, o=2), gop("revoke", "g0", 2.4, inc=1, parts=[0]),
           gop("assign", "g1", 2.5, inc=1, parts=[0]), gread("p0-2", 0, 2, 2.6, "g1"),
           gread("p0-3", 0, 3, 2.7, "g1"), gop("commit", "g1", 2.8, inc=1, p=0, o=4),
           done("p0", 4), {"op": "drained", "t": 9.0, "target": {"0": 4}, "reached": {"0": 4}}]
    final = {0: {0: "p0-0", 1: "p0-1", 2: "p0-2", 3: "p0-3"}, 1: {}}
    return ops, final, {0: 4, 1: 0}


def test_a_clean_group_history_has_no_anomaly():
    ops, final, hws = group_history()
    assert kinds(checker.check(ops, final, hws)) == []
    assert checker.check_group(ops, final) == []
    counts = checker.group_counts(ops)
    assert (counts["reads"], counts["commit"], counts["assign"], counts["revoke"]) == (4, 2, 2, 1)


def test_a_member_reading_below_a_commit_acknowledged_before_its_assignment_is_a_lost_commit():
    ops, final, _ = group_history()
    # g1 starts from offset 1: the commit of 2, acknowledged before g1's assignment, was lost.
    at = ops.index(gread("p0-2", 0, 2, 2.6, "g1"))
    ops.insert(at, gread("p0-1", 0, 1, 2.55, "g1"))
    found = checker.check_group(ops, final)
    assert [(a.kind, a.partition, a.offset) for a in found] == [("lost_commit", 0, 1)]
    # A commit acknowledged only after the assignment began proves nothing about what it fetched.
    ops = [op for op in ops if not (op["op"] == "commit" and op["proc"] == "g0")]
    ops.insert(ops.index(gop("assign", "g1", 2.5, inc=1, parts=[0])) + 1, gop("commit", "g0", 2.51, inc=1, p=0, o=2))
    assert checker.check_group(ops, final) == []


def test_a_refused_group_position_is_a_group_reset():
    ops, final, _ = group_history()
    ops.insert(-1, {"op": "reset", "t": 2.9, "proc": "g1", "p": 0, "o": 4, "err": "offset out of range"})
    ops.insert(-1, {"op": "reset", "t": 2.9, "proc": "c0", "p": 0, "o": 4, "err": "offset out of range"})
    assert [a.kind for a in checker.check_group(ops, final)] == ["group_reset"]


def test_a_group_that_did_not_read_to_the_last_ack_stalled_and_one_that_skipped_a_record_missed_it():
    ops, final, _ = group_history()
    ops[-1] = {"op": "drained", "t": 9.0, "target": {"0": 4}, "reached": {"0": 3}}
    assert [(a.kind, a.partition) for a in checker.check_group(ops, final)] == [("group_stalled", 0)]
    ops, final, _ = group_history()
    ops.remove(gread("p0-2", 0, 2, 2.6, "g1"))
    assert [(a.kind, a.offset) for a in checker.check_group(ops, final)] == [("group_missed", 2)]
    # No drain line: the run cannot say the group kept up.
    ops, final, _ = group_history()
    assert [a.kind for a in checker.check_group(ops[:-1], final)] == ["group_stalled"]
    # A lost acknowledged record is a lost_ack, not also a group_missed; an unreadable partition is
    # not judged.
    ops, final, _ = group_history()
    ops.remove(gread("p0-2", 0, 2, 2.6, "g1"))
    final[0][2] = "p0-9"
    assert checker.check_group(ops, final) == []
    ops, final, _ = group_history()
    ops.remove(gread("p0-2", 0, 2, 2.6, "g1"))
    assert checker.check_group(ops, final, unreadable={0: "no leader"}) == []


def test_histories_without_a_group_have_no_group_anomalies():
    ops, final, _ = clean_history()
    assert checker.check_group(ops, final) == []


def test_a_partition_assigned_before_its_holder_revoked_it_has_two_owners():
    ops, final, _ = group_history()
    # g1 gets partition 0 before g0 revoked it.
    revoke = gop("revoke", "g0", 2.4, inc=1, parts=[0])
    assign = gop("assign", "g1", 2.5, inc=1, parts=[0])
    ops.remove(revoke)
    ops.insert(ops.index(assign) + 1, dict(revoke, t=2.55))
    assert [(a.kind, a.partition) for a in checker.check_group(ops, final)] == [("double_owner", 0)]
    # The holder's session had ended (it learns so late): no anomaly.
    lost = [dict(op, op="lost") if op["op"] == "revoke" else op for op in ops]
    assert checker.check_group(lost, final) == []
    # The same member's next incarnation is not another owner.
    ops, final, _ = group_history()
    again = [dict(op, proc="g0", inc=2) if op["op"] == "assign" and op["proc"] == "g1" else op for op in ops
             if op["op"] != "revoke"]
    assert checker.check_group(again, final) == []


def test_a_holder_a_coordinator_had_expired_is_no_second_owner():
    ops, final, _ = group_history()
    revoke = gop("revoke", "g0", 2.4, inc=1, parts=[0])
    assign = gop("assign", "g1", 2.5, inc=1, parts=[0])
    ops.remove(revoke)
    ops.insert(ops.index(assign) + 1, dict(revoke, t=2.55))
    ops[ops.index(gop("assign", "g0", 2.0, inc=1, parts=[0]))]["member"] = "m-g0"
    lines = ["2026-12-07T03:38:38.398763Z  INFO chronik_broker::group::coordinator: consumer group members expired "
             'group=chaos-group members=["m-g0", "m-x"]',
             "2026-12-07T03:38:39.000000Z  INFO chronik_broker::group::classic_group: member session expired "
             "group=chaos-group member=rdkafka-1",
             "2026-12-07T03:38:40.000000Z  INFO chronik_broker::group::classic_group: member session expired "
             "group=other member=rdkafka-2",
             "2026-12-07T03:38:41.000000Z  INFO chronik_broker::group::classic_group: members left: they did not "
             'rejoin in time group=chaos-group members=["rdkafka-3"]']
    expired = checker.expired_members(lines, "chaos-group")
    assert set(expired) == {"m-g0", "m-x", "rdkafka-1", "rdkafka-3"}
    # Expired before g1's assignment: g0 learned late; after it: two owners.
    assert expired["m-g0"] == [checker._stamp("2026-12-07T03:38:38.398763Z ")]
    assert expired["m-x"] == [expired["m-g0"][0]]
    assert checker.check_group(ops, final, expired={"m-g0": [2.45]}) == []
    assert [a.kind for a in checker.check_group(ops, final, expired={"m-g0": [2.6]})] == ["double_owner"]
    assert [a.kind for a in checker.check_group(ops, final, expired={"m-x": [2.45]})] == ["double_owner"]
    # An expiry before this holding began (the member rejoined with its id since) excuses nothing.
    assert [a.kind for a in checker.check_group(ops, final, expired={"m-g0": [1.5]})] == ["double_owner"]


def test_a_lost_last_ack_is_not_also_a_stall_and_the_history_around_shows_the_rebalances():
    ops, final, _ = group_history()
    ops[-1] = {"op": "drained", "t": 9.0, "target": {"0": 4}, "reached": {"0": 3}}
    del final[0][3]  # p0-3, the last acknowledged record, was lost: a lost_ack, not a stall
    assert checker.check_group(ops, final) == []
    # A member's position refused before its first read (no offset) beside an anomaly with one.
    ops, final, _ = group_history()
    ops.insert(-1, {"op": "reset", "t": 2.65, "proc": "g1", "p": 0, "o": None, "err": "offset out of range"})
    anomaly = checker.Anomaly("lost_commit", "planted", 2.6, 0, 2, "p0-2")
    lines = checker.history_around(ops, [], anomaly)
    assert any("op=reset" in line for line in lines) and any("op=assign" in line for line in lines), lines


def test_the_groups_offsets_partition_and_its_commits_are_read_as_kafka_writes_them():
    import struct

    import kafka_wire
    from test_groups import java_partition_for

    for group in ("chaos-group", "a", "polygenelubricants", "ééé"):
        assert checker.offsets_partition_of(group) == java_partition_for(group, 50)

    def key(group: str, topic: str, partition: int) -> bytes:
        return (struct.pack(">hh", 1, len(group)) + group.encode() + struct.pack(">h", len(topic)) + topic.encode()
                + struct.pack(">i", partition))

    def value(offset: int) -> bytes:  # OffsetCommitValue v3: offset, leader epoch, metadata, timestamp
        return struct.pack(">hqih", 3, offset, -1, 0) + struct.pack(">q", 0)

    batch = kafka_wire.custom_batch([(key("chaos-group", "chaos", 4), value(1470), 1),
                                     (key("other", "chaos", 4), value(7), 1),
                                     (key("chaos-group", "chaos", 5), value(1605), 1)])
    assert checker.offset_commits(batch + batch[:30], "chaos-group") == [(0, -1, "chaos", 4, 1470),
                                                                         (2, -1, "chaos", 5, 1605)]
