"""A short seeded chaos run (`integration/chaos/run.py`): 3 controllers and 3 brokers, each in its own
network namespace, idempotent acks=all producers and consumers in a client namespace, and one fault of
every kind (kill, pause, four kinds of network partition, controller cut, active controller kill, a lossy link,
a controller that loses its data directory, full disk, a replica reassignment away from a broker and back) in a seeded order. Any anomaly the checker finds (lost acknowledged writes, duplicates,
lost reads, unexpected values, replicas that disagree) fails the test with the run's report. A
consumer group of KIP-848 members (`--group consumer`) consumes and commits throughout, and must not
go back past an acknowledged commit, skip an acknowledged record or fail to catch up once the faults
are healed.

Skipped, saying why, when the machine cannot give the run its namespaces: not root, no `ip netns`,
or no iptables inside a namespace. About two minutes (10 faults held 4-8 s each, recovery, setup and checks).

`test_short_transactional_chaos_run` runs three faults under the transactional workload
(`--workload txn`: transactional producers committing and aborting, read_committed consumers), checked
for aborted reads and torn transactions besides everything above, with a classic-protocol group
(`--group classic`; the seed picks its assignor).

`test_short_secured_chaos_run` runs three of those faults (a broker killed, a broker isolated, a
reassignment) against a cluster secured end to end (`--security sasl_ssl`: TLS and tokens on the
control plane, SASL_SSL with SCRAM-SHA-512 on every broker listener, replication included, and the
standard authorizer), about one minute more. The whole schedule secured is
`run.py --security sasl_ssl --faults 10 --seed 21` (RELIABILITY.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chronik_cluster import bin_dir

CHAOS = Path(__file__).resolve().parents[1] / "chaos"
sys.path.insert(0, str(CHAOS))

import run as chaos_run  # noqa: E402

SEED = int(os.environ.get("CHRONIK_CHAOS_SEED", "11"))


def run_schedule(tmp_path, what: str, args: list[str], timeout: float) -> None:
    """Runs `run.py` with `args` (and the seed, the bin dir and the run dir); fails on any anomaly."""
    argv = [sys.executable, str(CHAOS / "run.py"), f"--seed={SEED}", *args, f"--bin-dir={bin_dir()}",
            f"--dir={tmp_path}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    print(done.stdout[-20000:])
    if done.returncode == 2:
        pytest.fail(f"the {what} could not be carried out:\n{done.stderr[-8000:]}")
    assert done.returncode == 0, (f"the {what} (seed {SEED}) found anomalies:\n{done.stdout[-15000:]}"
                                  f"\n{done.stderr[-3000:]}")


@pytest.mark.fault
@pytest.mark.confluent
@pytest.mark.timeout(600)
def test_short_seeded_chaos_run(tmp_path):
    reason = chaos_run.preflight()
    if reason:
        pytest.skip(f"the chaos harness cannot run here: {reason}")
    faults = len(chaos_run.nemesis.KINDS)
    run_schedule(tmp_path, "chaos run", [f"--faults={faults}", "--hold-min=4", "--hold-max=8", "--group=consumer"],
                 timeout=560)


SECURED_KINDS = "kill,broker_isolated,reassign"


@pytest.mark.fault
@pytest.mark.confluent
@pytest.mark.timeout(400)
def test_short_secured_chaos_run(tmp_path):
    reason = chaos_run.preflight() or (None if shutil.which("openssl") else "`openssl` is not installed")
    if reason:
        pytest.skip(f"the chaos harness cannot run here: {reason}")
    run_schedule(tmp_path, "secured chaos run",
                 ["--security=sasl_ssl", f"--kinds={SECURED_KINDS}", "--faults=3", "--hold-min=4",
                  "--hold-max=6"], timeout=380)


TXN_KINDS = "kill,broker_isolated,kill_active_controller"


@pytest.mark.fault
@pytest.mark.confluent
@pytest.mark.timeout(400)
def test_short_transactional_chaos_run(tmp_path):
    """Transactions (`--workload txn`) through a broker killed (a partition leader, and a third of the
    time the transaction coordinator), a broker isolated and the active controller killed: no aborted
    read, no torn transaction, no lost committed write, no duplicate."""
    reason = chaos_run.preflight()
    if reason:
        pytest.skip(f"the chaos harness cannot run here: {reason}")
    run_schedule(tmp_path, "transactional chaos run",
                 ["--workload=txn", "--group=classic", f"--kinds={TXN_KINDS}", "--faults=3", "--hold-min=4",
                  "--hold-max=6"],
                 timeout=380)

