"""A broker whose disk fills up under acks=all load (issue #11, defect 6; Kafka's JBOD design, KIP-112,
and KIP-858: a broker reports its offline log directories in its heartbeat and the controller moves
their replicas' leaderships away and takes them out of the ISRs).

`test_full_disk_moves_leadership_and_loses_nothing`: 3 controllers and 3 brokers; broker 3's data
directory is a 16 MiB tmpfs (`mount -t tmpfs`, so the test needs root and is skipped otherwise). A
topic of 3 partitions, replication factor 3, `min.insync.replicas` 2, written by an idempotent acks=all
confluent-kafka producer in the background. The test fills broker 3's disk with a ballast file while the
producer runs, then checks:

- within a few seconds broker 3 leads nothing and is in no ISR (it reported its offline log dir), yet its
  process is still up and registered, `/readyz` says why it is not ready and the
  `chronik_broker_offline_log_dirs` gauge is 1;
- every partition keeps taking acknowledged writes from the two other replicas;
- after the ballast is removed and broker 3 restarted, it recovers its log (the torn tail) and is back in
  every ISR;
- nothing acknowledged is lost: every acknowledged (partition, offset, value) is read back, and the
  three replicas hold byte-identical batches below the high watermark (`verify_run` of
  `test_replication.py`).

The tmpfs is unmounted however the test ends (after the cluster is down).
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from chronik_cluster import ChronikCluster, down_in, log_tails_in, wait_until
from test_replication import (CONTROLLER_ARGS, ChaosProducer, Timeline, describe, fmt_parts, verify_run,
                              wait_full_isr)

pytestmark = [pytest.mark.fault, pytest.mark.confluent]

FULL_BROKER = 3
TMPFS_SIZE = "16m"
# Left free by the ballast: a few seconds of the producer's writes.
ROOM_BYTES = 256 * 1024
IDEMPOTENT = {"enable.idempotence": True, "acks": "all", "max.in.flight.requests.per.connection": 5}


def mount_tmpfs(path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs as a small data disk needs root (mount -t tmpfs)")
    path.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(path)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {done.stderr.strip()}")


def unmount(path: Path) -> None:
    for _ in range(50):
        if subprocess.run(["umount", str(path)], capture_output=True).returncode == 0:
            return
        if subprocess.run(["mountpoint", "-q", str(path)]).returncode != 0:
            return
        time.sleep(0.1)
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """Writes a ballast file until only about `leave` bytes are free on the filesystem of `disk`."""
    ballast = disk / "ballast"
    chunk = b"\0" * (1 << 20)
    with open(ballast, "wb") as f:
        while True:
            st = os.statvfs(disk)
            free = st.f_bavail * st.f_frsize
            if free <= leave:
                break
            try:
                f.write(chunk[:min(len(chunk), free - leave)])
                f.flush()
            except OSError:
                break
    return ballast


def http_get(broker: dict, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://{broker['http_addr']}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def out_of_every_isr(cluster: ChronikCluster, topic: str, broker: int):
    parts = describe(cluster, topic)
    if any(broker in p["isr"] or p["leader"] == broker for p in parts.values()):
        return None
    return parts


@pytest.mark.timeout(300)
def test_full_disk_moves_leadership_and_loses_nothing(tmp_path, topic_name):
    directory = tmp_path / "cluster"
    disk = directory / f"broker-{FULL_BROKER}"
    mount_tmpfs(disk)
    cluster: ChronikCluster | None = None
    producer: ChaosProducer | None = None
    timeline = Timeline()
    try:
        cluster = ChronikCluster.up(name=directory.name, directory=directory, controllers=3, brokers=3,
                                    controller_args=CONTROLLER_ARGS)
        cluster.create_topic(topic_name, partitions=3, replication_factor=3,
                             configs={"min.insync.replicas": "2"})
        parts = wait_full_isr(cluster, topic_name, 30, "after creation")
        timeline.note(f"created: {fmt_parts(parts)}")
        producer = ChaosProducer(cluster.bootstrap_servers, topic_name, timeline, "disk", rate=1500,
                                 config=IDEMPOTENT).start()
        producer.wait_acks_each(150, 30, "before the disk fills")

        ballast = fill(disk, ROOM_BYTES)
        t_full = time.monotonic()
        timeline.note(f"broker {FULL_BROKER}'s disk filled ({ballast.stat().st_size} B ballast); "
                      f"acks {len(producer.acked)}")
        parts = wait_until(lambda: out_of_every_isr(cluster, topic_name, FULL_BROKER), 30,
                           f"broker {FULL_BROKER} out of every ISR and leadership after its disk filled")
        moved_after = time.monotonic() - t_full
        timeline.note(f"broker {FULL_BROKER} out after {moved_after:.1f}s: {fmt_parts(parts)}")
        assert all(p["leader"] not in (None, -1) for p in parts.values()), fmt_parts(parts)

        # Still up and registered, saying why it is not ready.
        assert FULL_BROKER in cluster.running_broker_ids(), "the broker with the full disk exited"
        node = cluster.broker(FULL_BROKER)
        code, body = http_get(node, "/readyz")
        assert code == 503 and "offline" in body, f"/readyz answered {code} {body!r}"
        _, metrics = http_get(node, "/metrics")
        assert "chronik_broker_offline_log_dirs 1" in metrics, "no offline log dir gauge of 1"
        listed = cluster.ctl_json("broker", "list")
        listed = listed if isinstance(listed, list) else listed.get("brokers", [])
        registered = {b["broker_id"]: b for b in listed}
        assert FULL_BROKER in registered, f"broker {FULL_BROKER} lost its registration: {registered}"
        assert str(registered[FULL_BROKER]["state"]).lower() == "unfenced", \
            f"an offline log dir must not fence the broker: {registered[FULL_BROKER]}"
        assert registered[FULL_BROKER].get("offline_log_dir") is True, \
            f"`chronikctl broker list` does not show the offline log dir: {registered[FULL_BROKER]}"

        producer.wait_acks_each(150, 20, f"served by the other replicas while broker {FULL_BROKER}'s disk is full")
        timeline.note(f"writes go on without broker {FULL_BROKER}; acks {len(producer.acked)}")

        ballast.unlink()
        cluster.stop_broker(FULL_BROKER)
        timeline.note(f"ballast removed, broker {FULL_BROKER} stopped")
        cluster.start_broker(FULL_BROKER)
        timeline.note(f"broker {FULL_BROKER} restarted")
        parts = wait_full_isr(cluster, topic_name, 60, f"broker {FULL_BROKER} after its disk has room again")
        timeline.note(f"full ISR again: {fmt_parts(parts)}")
        producer.wait_acks_each(100, 20, "after the restart")
        producer.stop()
        timeline.note(f"producer stopped: {producer.summary()}")
        figures = verify_run(cluster, topic_name, producer.acked, producer.summary(), timeline)
        print(f"[full disk] leadership and ISRs moved {moved_after:.1f}s after the disk filled; "
              f"{producer.summary()}; high watermarks {figures['hws']}")
    except BaseException:
        if producer is not None:
            producer.abandon()
        print(f"timeline of the failed run:\n{timeline.text()}\n{log_tails_in(directory, 60)}")
        raise
    finally:
        if cluster is not None:
            cluster.down()
        else:
            down_in(directory)
        unmount(disk)
