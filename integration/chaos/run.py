#!/usr/bin/env python3
"""A Jepsen-style chaos run against a Chronik cluster in private network namespaces.

    sudo python3 integration/chaos/run.py --faults 200 --seed 42
    sudo python3 integration/chaos/run.py --scenario lagging-isr-failover --seed 1
    sudo python3 integration/chaos/run.py --cleanup

Starts 3 controllers and 3 brokers (each in its own network namespace, see `network`), creates a topic
(RF 3, min.insync.replicas 2), runs the workload (`workload`) in the client namespace, and injects a
seeded schedule of faults (`nemesis`) one after another: inject, hold, heal, wait until every broker
is back in every ISR. Then it heals everything, stops the workload, reads every partition to its high
watermark, stops the cluster, compares the replicas' on-disk logs, and checks the history (`checker`).

Exit code: 0 no anomaly, 1 anomalies (printed with the seed and the history around them), 2 the run
could not be carried out (not root, no `ip netns`, missing binaries, cluster did not start).
Everything the run creates (namespaces, veths, iptables rules, tmpfs mounts, processes) is removed
however it ends; `--cleanup` removes what a killed run left behind. The run directory (history,
fault list, node logs, report.json) is kept and printed.
"""

from __future__ import annotations

import argparse
import atexit
import collections
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO_ROOT / "integration" / "python"))

import checker  # noqa: E402
import nemesis  # noqa: E402
import network  # noqa: E402
from cluster import ChaosCluster  # noqa: E402
from security import PROTOCOLS, ChaosSecurity  # noqa: E402

TOPIC = "chaos"
GROUP_ID = "chaos-group"  # workload.GROUP_ID


def log(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)


def preflight() -> str | None:
    """Why this machine cannot run the harness, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, iptables, tmpfs mounts)"
    for tool in ("ip", "iptables", "mount"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = f"{network.PREFIX}{os.getpid()}-probe"
    try:
        network.run("ip", "netns", "add", probe)
    except RuntimeError as error:
        return f"`ip netns add` does not work here: {error}"
    try:
        network.run("ip", "netns", "exec", probe, "iptables", "-w", "-A", "INPUT", "-s", "198.18.0.1", "-j", "DROP")
    except RuntimeError as error:
        return f"iptables does not work inside a network namespace: {error}"
    finally:
        network.run("ip", "netns", "delete", probe, check=False)
    return None


def cleanup_leftovers() -> None:
    removed = network.remove_prefix()
    mounts = []
    for line in Path("/proc/mounts").read_text().splitlines():
        path = line.split()[1]
        m = re.search(rf"/{network.PREFIX}(\d+)-[^/]*/broker-\d+$", path)
        if m and line.split()[0] == "tmpfs" and not network.run_owner_alive(int(m.group(1))):
            network.run("umount", "-l", path, check=False)
            mounts.append(path)
    print(f"removed {len(removed)} namespaces {removed} and {len(mounts)} tmpfs mounts {mounts}")


class Run:
    def __init__(self, args):
        self.args = args
        self.seed = args.seed
        self.rng = random.Random(self.seed)
        self.net = network.Network.for_run(args.controllers, args.brokers)
        base = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.net.prefix}-", dir=base))
        self.history_path = self.dir / "history.jsonl"
        self.faults_path = self.dir / "faults.jsonl"
        self.session_timeout_s = args.session_timeout_ms / 1000
        controller_args = [
            f"--broker-session-timeout-ms={args.session_timeout_ms}",
            f"--broker-heartbeat-interval-ms={max(100, args.session_timeout_ms // 6)}",
            "--default-replication-factor=3", "--default-min-insync-replicas=2",
        ]
        broker_args = [f"--replica-lag-time-max-ms={args.replica_lag_ms}",
                       f"--controller-request-timeout-ms={min(2000, args.session_timeout_ms // 2)}",
                       # KIP-848 members' sessions as short as the classic members' (workload.py).
                       "--group-consumer-session-timeout-ms=10000", "--group-consumer-heartbeat-interval-ms=1000"]
        self.security = ChaosSecurity(args.security, self.dir)
        self.cluster = ChaosCluster(self.net, self.dir, Path(args.bin_dir), args.controllers, args.brokers,
                                    args.disk_mb, controller_args, broker_args, self.security)
        self.topic = TOPIC
        self.workload: subprocess.Popen | None = None
        self.faults: list[dict] = []
        self.events: list[str] = []
        self._history_offset = 0
        self.acks = 0
        self.last_ack: dict[int, float] = {}
        self._cleaned = False

    # ----- helpers the nemesis uses -----

    def parts(self) -> dict[int, dict] | None:
        try:
            return self.cluster.describe(self.topic)
        except Exception:  # noqa: BLE001 - controllers unreachable right now
            return None

    def note(self, text: str) -> None:
        self.events.append(f"{time.time():.3f} {text}")
        log(text)

    # ----- lifecycle -----

    def cleanup(self) -> None:
        if self._cleaned:
            return
        self._cleaned = True
        if self.workload and self.workload.poll() is None:
            self.workload.kill()
        self.cluster.kill_all()
        self.net.destroy()
        self.cluster.unmount_disks()

    def setup(self) -> None:
        log(f"run dir {self.dir}; namespaces {self.net.prefix}-*; subnet {self.net.subnet}.0/24; seed {self.seed}; "
            f"security {self.security.protocol}")
        self.net.create()
        self.net.enter("cl")
        self.cluster.start(timeout=90)
        self.cluster.wait(lambda: self.cluster.ctl("cluster", "status").get("cluster_id"), 60,
                          "the quorum to bootstrap the cluster")
        def create_topic():
            try:
                self.cluster.ctl("topic", "create", self.topic, "--partitions", str(self.args.partitions),
                                 "--replication-factor", "3", "--config", "min.insync.replicas=2")
            except RuntimeError:
                pass  # created by an earlier try whose answer was lost, or not yet possible
            return self.cluster.describe(self.topic)

        self.cluster.wait(create_topic, 30, "topic creation")
        self.cluster.wait(lambda: self.cluster.full_isr(self.topic), 60, "every broker in every ISR")
        self.workload = subprocess.Popen(
            [sys.executable, str(HERE / "workload.py"), "--bootstrap", self.cluster.bootstrap,
             "--topic", self.topic, "--partitions", str(self.args.partitions),
             "--producers", str(self.args.producers), "--consumers", str(self.args.consumers),
             "--rate", str(self.args.rate), "--history", str(self.history_path),
             "--mode", self.args.workload, "--seed", str(self.seed), "--group", self.args.group,
             *(["--client-config", str(self.security.client_properties)] if self.security.enabled else [])],
            stdin=subprocess.DEVNULL, stdout=open(self.dir / "workload.log", "wb"), stderr=subprocess.STDOUT)
        self.cluster.wait(lambda: self.acks_so_far() >= self.args.partitions * 5, 60, "the workload's first acks")
        log(f"workload running: {self.acks_so_far()} acks")

    def poll_history(self) -> None:
        """Reads the history lines written since the last call: the latest ack time per partition."""
        try:
            with open(self.history_path, "rb") as f:
                f.seek(self._history_offset)
                data = f.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self._history_offset += end
        for line in data[:end].splitlines():
            if b'"op":"ack"' in line:
                op = json.loads(line)
                self.acks += 1
                self.last_ack[op["p"]] = max(self.last_ack.get(op["p"], 0.0), op["t"])

    def acks_so_far(self) -> int:
        self.poll_history()
        return self.acks

    def writable_since(self, since: float) -> bool:
        """Every partition has an ack newer than `since`."""
        self.poll_history()
        return all(self.last_ack.get(p, 0.0) > since for p in range(self.args.partitions))

    def recovered(self, since: float):
        """Every broker back in every ISR, and every partition acknowledged a write after `since`."""
        return self.writable_since(since) and self.cluster.full_isr(self.topic)

    def stuck_partitions(self, since: float) -> list[int]:
        self.poll_history()
        return [p for p in range(self.args.partitions) if self.last_ack.get(p, 0.0) <= since]

    def restart_dead(self) -> list[str]:
        dead = [n for n in self.cluster.nodes if not n.running()]
        for n in dead:
            n.start()
        return [n.name for n in dead]

    def inject(self, kinds: list[str], index: int) -> None:
        """One step of the schedule: the faults of `kinds` injected a moment apart (so a later one acts
        on the state an earlier one made, e.g. a leader killed while a follower is cut off), held
        together, healed in reverse order."""
        rng = self.rng
        start = time.time()
        faults = []
        for i, k in enumerate(kinds):
            if i:
                time.sleep(rng.uniform(0.5, 2.5))
            faults.append(nemesis.KINDS[k](self, rng))
        kind = "+".join(kinds)
        fault = nemesis.Fault(kind, "; ".join(f.detail for f in faults), lambda: None,
                              min_hold=max(f.min_hold for f in faults))
        hold = max(fault.min_hold, rng.uniform(self.args.hold_min, self.args.hold_max))
        self.note(f"fault {index}: {kind}: {fault.detail}; holding {hold:.1f}s")
        time.sleep(hold)
        for f in reversed(faults):
            f.heal()
            fault.notes += f.notes
        heal = time.time()
        crashed = [n for n in self.restart_dead()]
        if crashed:
            fault.notes.append(f"{crashed} had exited and were restarted")
        for n in self.cluster.nodes:
            if n.paused:
                n.resume()
        checks = [f.check for f in faults if f.check]
        try:
            self.cluster.wait(lambda: self.recovered(heal) and not self.unmet(checks), self.args.recovery_timeout,
                              "every broker back in every ISR, every partition writable"
                              + (" and every fault's own recovery" if checks else ""))
            recovered = time.time()
        except TimeoutError:
            recovered = None
            parts = self.parts()
            unmet = self.unmet(checks)
            fault.notes.append(f"not recovered within {self.args.recovery_timeout:.0f}s: partitions without "
                               f"acks since the heal {self.stuck_partitions(heal)}; "
                               f"{fmt_parts(parts) if parts else 'no description'}"
                               + "".join(f"; {why}" for why in unmet))
            self.repair(heal, fault.notes, checks)
        facts = {k: v for f in faults for k, v in f.facts.items()}
        if "reassign" in facts:
            # Whether the move back completed in the end (within the recovery timeout or after the repair).
            facts["reassign"]["completed"] = recovered is not None or not self.unmet(checks)
        record = {"index": index, "kind": kind, "detail": fault.detail, "start": start, "heal": heal,
                  "recovered": recovered, "notes": fault.notes, "facts": facts}
        self.faults.append(record)
        with open(self.faults_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        took = f"recovered {recovered - heal:.1f}s after heal" if recovered else "NOT recovered"
        self.note(f"fault {index}: healed; {took}{'; ' + '; '.join(fault.notes) if fault.notes else ''}")
        time.sleep(self.args.settle)

    def unmet(self, checks) -> list[str]:
        """Why the faults' own recovery checks (`nemesis.Fault.check`) do not hold yet."""
        out = []
        for check in checks:
            try:
                why = check()
            except Exception as error:  # noqa: BLE001 - controllers unreachable right now
                why = f"check failed: {error}"
            if why:
                out.append(why)
        return out

    def repair(self, since: float, notes: list[str], checks=()) -> None:
        """After a fault that did not heal by itself: restart (kill -9, start) the brokers leading
        partitions that took no write since `since`, and those missing from an ISR, so that the next
        fault starts from a healthy cluster. Counted in the fault's notes, never silently."""
        parts = self.parts() or {}
        stuck = set(self.stuck_partitions(since))
        victims = {d["leader"] for p, d in parts.items() if p in stuck and d.get("leader", -1) > 0}
        ids = {b.id for b in self.cluster.brokers}
        for d in parts.values():
            victims |= ids - set(d.get("isr", []))
        if not victims:
            return
        notes.append(f"repair: restarted brokers {sorted(victims)}")
        self.note(f"repair: restarting brokers {sorted(victims)} (stuck partitions {sorted(stuck)})")
        for b in sorted(victims):
            self.cluster.broker(b).kill()
            self.cluster.broker(b).start()
        mark = time.time()
        try:
            self.cluster.wait(lambda: self.recovered(mark) and not self.unmet(checks), self.args.recovery_timeout,
                              "recovery after repair")
        except TimeoutError:
            notes.append(f"still not recovered {self.args.recovery_timeout:.0f}s after the repair"
                         + "".join(f"; {why}" for why in self.unmet(checks)))

    def run_scenario(self, name: str) -> None:
        start = time.time()
        notes: list[str] = []
        nemesis.SCENARIOS[name](self, self.rng, lambda text: (notes.append(text), self.note(text)))
        heal = time.time()
        self.restart_dead()
        fault_notes: list[str] = []
        try:
            self.cluster.wait(lambda: self.recovered(heal), self.args.recovery_timeout, "recovery")
            recovered = time.time()
        except TimeoutError:
            recovered = None
            fault_notes.append(f"not recovered within {self.args.recovery_timeout:.0f}s")
            self.repair(heal, fault_notes)
        record = {"index": 1, "kind": f"scenario:{name}", "detail": " / ".join(notes), "start": start,
                  "heal": heal, "recovered": recovered, "notes": fault_notes}
        self.faults.append(record)
        with open(self.faults_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def finish(self) -> tuple[dict[int, dict[int, str]], dict[int, int], list[checker.Anomaly], list[str]]:
        """Heal everything, stop the workload, read everything back, stop the cluster, compare replicas."""
        problems: list[str] = []
        self.net.heal()
        self.restart_dead()
        for n in self.cluster.nodes:
            if n.paused:
                n.resume()
        healed = time.time()
        try:
            self.cluster.wait(lambda: self.recovered(healed), 60, "every broker in every ISR (final)")
        except TimeoutError as error:
            problems.append(f"final heal: {error}; partitions without acks {self.stuck_partitions(healed)}; "
                            f"{fmt_parts(self.parts() or {})}")
            self.repair(healed, problems)
        try:
            self.cluster.wait(lambda: self.cluster.ctl("reassignment", "list") == [], 30, "no reassignment under way")
        except TimeoutError as error:
            problems.append(f"final heal: a reassignment is stuck: {error}")
        log("stopping the workload (producers flush" + (", the group reads what they wrote)"
                                                         if self.args.group != "none" else ")"))
        self.workload.send_signal(signal.SIGTERM)
        # The producers' flush (60 s at most each), then the group's drain (120 s) and its members'
        # leaving (30 s each at most).
        patience = 240 + (250 if self.args.group != "none" else 0)
        try:
            self.workload.wait(patience)
        except subprocess.TimeoutExpired:
            problems.append(f"the workload did not stop within {patience} s; killed")
            self.workload.kill()
        parts = self.parts() or {}
        try:
            parts = self.cluster.wait(lambda: self.cluster.full_isr(self.topic), 60, "full ISR after the workload")
        except TimeoutError as error:
            problems.append(f"after the workload: {error}")
        time.sleep(2.0)  # followers fetch the last batches
        hws, final, self.unread = final_read(self.cluster.bootstrap, self.topic, self.args.partitions, problems,
                                              client_config=self.security.client_config(),
                                              committed=self.args.workload == "txn")
        log(f"final read: high watermarks {hws}")
        (self.dir / "final.json").write_text(json.dumps({"hws": hws, "final": final, "unread": self.unread}))
        self.cluster.stop()
        divergences = compare_replicas(self.cluster, self.topic, hws, parts,
                                       self.dir / "batches.jsonl")
        if self.args.group != "none":
            # The group's offsets partition from every broker, for `group_evidence`.
            offsets = f"__consumer_offsets-{checker.offsets_partition_of(GROUP_ID)}"
            for broker in self.cluster.brokers:
                if (broker.data_dir / offsets).is_dir():
                    shutil.copytree(broker.data_dir / offsets, self.dir / f"offsets-broker-{broker.id}",
                                    symlinks=True, ignore=shutil.ignore_patterns("*.tmp"))
        if self.args.keep_data:
            for broker in self.cluster.brokers:
                shutil.copytree(broker.data_dir, self.dir / f"data-broker-{broker.id}", symlinks=True)
            log(f"the brokers' data dirs are kept in {self.dir}/data-broker-*")
        return final, hws, divergences, problems

    def main(self) -> int:
        self.setup()
        self.started = time.time()
        if self.args.scenario:
            for i in range(self.args.faults or 1):
                self.run_scenario(self.args.scenario)
        else:
            kinds = self.args.kinds.split(",") if self.args.kinds else list(nemesis.KINDS)
            unknown = [k for k in kinds if k not in nemesis.KINDS]
            if unknown:
                raise SystemExit(f"unknown fault kinds {unknown}; known: {list(nemesis.KINDS)}")
            plan = nemesis.schedule(self.rng, kinds, self.args.faults)
            for i, kind in enumerate(plan, 1):
                step = [kind]
                while len(step) < min(self.args.concurrent, len(kinds)):
                    step.append(self.rng.choice([k for k in kinds if k not in step]))
                self.inject(step, i)
        final, hws, divergences, problems = self.finish()
        return self.report(final, hws, divergences, problems)

    @classmethod
    def recheck(cls, args) -> int:
        """Runs the checker again over a finished run's directory (history, faults, final read)."""
        run_dir = Path(args.recheck)
        chaos = cls.__new__(cls)
        chaos.args, chaos.seed, chaos.dir, chaos.started = args, None, run_dir, 0.0
        chaos.history_path = run_dir / "history.jsonl"
        chaos.faults = [json.loads(x) for x in (run_dir / "faults.jsonl").read_text().splitlines() if x.strip()]
        chaos.events = []
        saved = json.loads((run_dir / "final.json").read_text())
        chaos.unread = {int(p): why for p, why in saved["unread"].items()}
        final = {int(p): {int(o): v for o, v in log.items()} for p, log in saved["final"].items()}
        hws = {int(p): hw for p, hw in saved["hws"].items()}
        return chaos.report(final, hws, [], ["rechecked: replica comparison not repeated"])

    def report(self, final, hws, divergences, problems) -> int:
        ops = [json.loads(line) for line in self.history_path.read_text().splitlines() if line.strip()]
        result = checker.check(ops, final, hws, unreadable=self.unread)
        if checker.workload_mode(ops) == "txn":
            result.anomalies += checker.check_transactions(ops, final, unreadable=self.unread)
        broker_logs = {int(log.stem.split("-")[1]): log.read_text(errors="replace").splitlines()
                       for log in self.dir.glob("broker-*.log")}
        expired = checker.expired_members([line for lines in broker_logs.values() for line in lines],
                                          GROUP_ID)
        result.anomalies += checker.check_group(ops, final, unreadable=self.unread, expired=expired)
        result.anomalies += divergences
        result.anomalies += checker.reassignment_anomalies(self.faults)
        moves = checker.reassignment_counts(self.faults)
        result.anomalies += checker.live_brokers_fenced_by_stream(
            [line for log in sorted(self.dir.glob("controller-*.log"))
             for line in log.read_text(errors="replace").splitlines()],
            broker_logs)
        table = checker.unavailability(ops, self.faults)
        elapsed = time.time() - self.started
        print()
        print(f"===== chaos run: seed {self.seed}, {len(self.faults)} faults, {elapsed:.0f}s, run dir {self.dir}")
        print(f"acks {result.acks} ({result.acks_without_offset} without an offset), reads {result.reads}, failed deliveries {result.failed_deliveries}, "
              f"fatal producer errors {result.fatal_producer_errors} ({result.expected_fatal_errors} expected), "
              f"consumer position refusals "
              f"{result.consumer_resets}, final log records {sum(len(v) for v in final.values())}")
        started = next((op for op in ops if op["op"] == "start"), {})
        if started.get("group", "none") != "none":
            g = checker.group_counts(ops)
            assignor = f", {started['assignor']}" if started.get("assignor") else ""
            print(f"group ({started['group']} protocol{assignor}, {started.get('group_members')} members): "
                  f"reads {g['reads']}, commits {g['commit']} ({g['commit_fail']} refused or failed), "
                  f"assignments {g['assign']}, revocations {g['revoke']}, lost {g['lost']}")
        if moves["faults"]:
            print(f"reassignments: {moves['faults']} partitions moved to 2 replicas ({moves['shrinks_completed']} "
                  f"completed, {moves['leaders_dropped']} dropping the leader) and back to 3 "
                  f"({moves['back_completed']} completed, {moves['back_not_completed']} not); move back "
                  f"cancelled {moves['cancelled']} times ({moves['cancel_too_late']} more completed before "
                  f"the cancel)")
        by_kind: dict[str, list[dict]] = collections.defaultdict(list)
        for row in table:
            by_kind[row["kind"]].append(row)
        width = max([34] + [len(k) + 2 for k in by_kind])
        print(f"\n{'fault kind':<{width}}{'count':>6}{'worst ack gap':>15}{'median gap':>12}{'not recovered':>15}")
        for kind, rows in sorted(by_kind.items()):
            gaps = sorted(r["worst_gap"] for r in rows)
            print(f"{kind:<{width}}{len(rows):>6}{gaps[-1]:>14.1f}s{gaps[len(gaps) // 2]:>11.1f}s"
                  f"{sum(1 for r in rows if not r['recovered']):>15}")
        counts = result.by_kind()
        print(f"\n{'anomaly kind':<34}{'count':>6}")
        for kind in checker.KINDS:
            print(f"{kind:<34}{counts.get(kind, 0):>6}")
        if problems:
            print("\nrun problems (not anomalies):")
            for p in problems:
                print(f"  {p}")
        notes = [f"fault {r['index']} {r['kind']}: {n}" for r in self.faults for n in r.get("notes", [])]
        if notes:
            print("\nfault notes:")
            for n in notes:
                print(f"  {n}")
        report = {"seed": self.seed, "faults": table, "anomalies": [a.__dict__ for a in result.anomalies],
                  "counts": dict(counts), "reassignments": moves, "problems": problems,
                  "acks": result.acks, "reads": result.reads,
                  "events": self.events}
        (self.dir / "report.json").write_text(json.dumps(report, indent=1))
        if result.anomalies:
            print(f"\n===== {len(result.anomalies)} ANOMALIES (seed {self.seed}"
                  f"{', scenario ' + self.args.scenario if self.args.scenario else ''}) =====")
            shown: collections.Counter = collections.Counter()
            for a in result.anomalies:
                shown[a.kind] += 1
                if shown[a.kind] > 3:
                    continue
                print(f"\n[{a.kind}] {a.detail}")
                for line in checker.history_around(ops, self.faults, a):
                    print(f"    {line}")
                for line in evidence(self.dir, self.topic, a) + group_evidence(self.dir, a):
                    print(f"    {line}")
            hidden = sum(max(0, n - 3) for n in shown.values())
            if hidden:
                print(f"\n({hidden} more anomalies in {self.dir / 'report.json'})")
            print(f"\nreproduce: python3 integration/chaos/run.py {' '.join(self.argv_for_repro())}")
            return 1
        print(f"\nno anomalies (seed {self.seed})")
        return 0

    def argv_for_repro(self) -> list[str]:
        a = self.args
        out = [f"--seed={self.seed}", f"--faults={a.faults}"]
        if a.scenario:
            out.append(f"--scenario={a.scenario}")
        if a.kinds:
            out.append(f"--kinds={a.kinds}")
        if a.concurrent != 1:
            out.append(f"--concurrent={a.concurrent}")
        if a.security != "plaintext":
            out.append(f"--security={a.security}")
        if a.workload != "idempotent":
            out.append(f"--workload={a.workload}")
        if a.group != "none":
            out.append(f"--group={a.group}")
        return out


def fmt_parts(parts: dict[int, dict]) -> str:
    return " ".join(f"p{p}:L{d.get('leader')}/e{d.get('leader_epoch')}/isr{d.get('isr')}" for p, d in sorted(parts.items()))


def final_read(bootstrap: str, topic: str, partitions: int, problems: list[str],
               timeout: float = 60.0, client_config: dict[str, str] | None = None,
               committed: bool = False,
               ) -> tuple[dict[int, int], dict[int, dict[int, str]], dict[int, str]]:
    """The high watermarks, every record below them, and the partitions that could not be read whole
    ({partition: why}). `client_config`: the security mode's librdkafka properties.

    `committed` (the transactional workload): read with `isolation.level=read_committed`, so the
    "high watermarks" are the last stable offsets and the records of aborted transactions (and the
    control records) are skipped: the offsets returned have gaps by design, and a partition is read
    whole when the consumer reaches its end (partition EOF at or past the last stable offset)."""
    import confluent_kafka as ck

    base = {"bootstrap.servers": bootstrap, "broker.address.family": "v4", "log_level": 0,
            "group.id": f"chaos-final-{os.getpid()}", "enable.auto.commit": False,
            "auto.offset.reset": "error", "fetch.max.bytes": 8 << 20,
            "isolation.level": "read_committed" if committed else "read_uncommitted",
            "enable.partition.eof": committed, **(client_config or {})}
    client_errors: list[str] = []
    base["error_cb"] = lambda err: client_errors.append(str(err))
    if os.environ.get("CHAOS_FINAL_READ_DEBUG"):
        import logging
        logger = logging.getLogger("final-read")
        handler = logging.FileHandler(os.environ["CHAOS_FINAL_READ_DEBUG"])
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        base.update({"debug": "fetch,broker,topic,protocol,security", "log_level": 7, "logger": logger})
    consumer = ck.Consumer(base)
    try:
        hws = {}
        for p in range(partitions):
            low, high = ChaosCluster.wait(lambda: consumer.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=5),
                                          60, f"watermarks of p{p}")
            if low != 0:
                problems.append(f"p{p} starts at {low}, not 0")
            hws[p] = high
        final: dict[int, dict[int, str]] = {p: {} for p in range(partitions)}
        todo = {p for p, hw in hws.items() if hw > 0}
        errors: dict[int, list[str]] = {}
        consumer.assign([ck.TopicPartition(topic, p, 0) for p in sorted(todo)])
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == ck.KafkaError._PARTITION_EOF:
                    if msg.offset() >= hws[msg.partition()]:
                        todo.discard(msg.partition())
                    continue
                errors.setdefault(msg.partition(), []).append(msg.error().name())
                continue
            p, o = msg.partition(), msg.offset()
            if o < hws[p]:
                final[p][o] = msg.value().decode(errors="replace")
            if o >= hws[p] - 1 and not committed:
                todo.discard(p)
        unread = {}
        for p, hw in hws.items():
            if committed:
                if p in todo:
                    unread[p] = (f"the read_committed consumer never reached the last stable offset {hw} "
                                 f"(got {len(final[p])} records); errors {errors.get(p, [])[-3:]}; client "
                                 f"errors {client_errors[-3:]}")
                continue
            holes = [o for o in range(hw) if o not in final[p]]
            if holes:
                unread[p] = (f"{len(holes)} of the {hw} offsets below the high watermark never returned "
                             f"(first {holes[:5]}); errors {errors.get(p, [])[-3:]}; client errors "
                             f"{client_errors[-3:]}")
        return hws, final, unread
    finally:
        consumer.close()


def compare_replicas(cluster: ChaosCluster, topic: str, hws: dict[int, int],
                     parts: dict[int, dict], dump: Path) -> list[checker.Anomaly]:
    """The ISR members' batches below the high watermark, read from their segment files, compared by
    `checker.compare_replica_logs`. Every replica's batch headers (offsets, leader epoch, producer id,
    epoch and base sequence) go to `dump`, one JSON line per batch, for tracing an anomaly to the
    writes behind it after the data dirs (tmpfs) are gone."""
    from chronik_cluster import read_batch_headers

    anomalies = []
    with dump.open("w") as out:
        for p, hw in sorted(hws.items()):
            members = sorted(parts.get(p, {}).get("isr") or [b.id for b in cluster.brokers])
            logs = {}
            for broker in cluster.brokers:
                b = broker.id
                directory = broker.data_dir / f"{topic}-{p}"
                batches = []
                for segment in sorted(directory.glob("*.log")):
                    if len(segment.stem) != 20 or not segment.stem.isdigit():
                        continue
                    data = segment.read_bytes()
                    for h in read_batch_headers(segment)[0]:
                        (attributes,) = struct.unpack_from(">h", data, h.position + 21)
                        producer_id, producer_epoch, base_sequence = struct.unpack_from(
                            ">qhi", data, h.position + 43)
                        row = {"b": b, "p": p, "o": h.base_offset, "n": h.next_offset,
                               "le": h.partition_leader_epoch, "pid": producer_id, "pe": producer_epoch,
                               "seq": base_sequence, "attr": attributes}
                        if attributes & CONTROL:
                            row["marker"] = control_type(data[h.position:h.end_position])
                        out.write(json.dumps(row) + "\n")
                        if h.next_offset <= hw:
                            batches.append((h.base_offset, h.next_offset, h.partition_leader_epoch,
                                            data[h.position:h.end_position]))
                if b in members:
                    logs[b] = batches
            anomalies += checker.compare_replica_logs(p, hw, logs)
    return anomalies


# Record batch attributes (KIP-98): the transactional and the control bits.
TRANSACTIONAL = 0x10
CONTROL = 0x20
# Batch header bytes before the first record (magic 2).
BATCH_HEADER = 61


def control_type(batch: bytes) -> str:
    """The type of a control batch's record: "COMMIT", "ABORT", or what it holds (its key is a
    version int16 then a type int16, Kafka's `ControlRecordType`)."""

    def varint(at: int) -> tuple[int, int]:
        shift = value = 0
        while True:
            byte = batch[at]
            at += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (value >> 1) ^ -(value & 1), at
            shift += 7

    try:
        at = BATCH_HEADER
        _, at = varint(at)  # record length
        at += 1  # attributes
        _, at = varint(at)  # timestamp delta
        _, at = varint(at)  # offset delta
        key_length, at = varint(at)
        if key_length < 4:
            return f"key of {key_length} bytes"
        (kind,) = struct.unpack_from(">h", batch, at + 2)
    except (IndexError, struct.error):
        return "unreadable"
    return {0: "ABORT", 1: "COMMIT"}.get(kind, f"type {kind}")


def evidence(run_dir: Path, topic: str, anomaly: checker.Anomaly) -> list[str]:
    """What the replicas and the brokers' logs say around an anomaly's (partition, offset), so that a
    failure seen only in a CI log can be traced: every replica's batches near the offset (from
    `batches.jsonl`, markers with their type), the brokers' lines about that partition's leadership,
    truncation and markers, and those naming the writer's transactional id, from 12 s before the
    anomaly to 5 s after."""
    p, o = anomaly.partition, anomaly.offset
    if p is None or o is None:
        return []
    out = [f"replicas' batches of p{p} around offset {o} (le leader epoch, pid/pe/seq producer):"]
    try:
        rows = [json.loads(line) for line in (run_dir / "batches.jsonl").read_text().splitlines() if line]
    except OSError:
        rows = []
    producer_ids = set()
    # One line per distinct batch, naming the replicas that hold it.
    holders: dict[tuple, list[int]] = {}
    for row in rows:
        if row["p"] == p and row["n"] > o - 6 and row["o"] <= o + 10:
            kind = row.get("marker") or ("txn" if row["attr"] & TRANSACTIONAL else "data")
            batch = (row["o"], row["n"], row["le"], row["pid"], row["pe"], row["seq"], kind)
            holders.setdefault(batch, []).append(row["b"])
            if row["o"] <= o < row["n"]:
                producer_ids.add(row["pid"])
    for (first, end, le, pid, pe, seq, kind), brokers in sorted(holders.items()):
        out.append(f"  [{first},{end}) le={le} pid={pid} pe={pe} seq={seq} {kind} on "
                   f"{','.join(f'b{b}' for b in sorted(brokers))}")
    # Lines about this partition (its directory, not its neighbours': `chaos-1` is also a prefix of
    # `chaos-10`) on leadership, truncation and the ISR, its markers of the producer(s) found at the
    # offset, and the writer's coordinator lines (the workload's transactional ids are `chaos-p<i>`).
    partition = re.compile(rf"/{re.escape(topic)}-{p}( |$)|topic=\"?{re.escape(topic)}\"? partition={p}\b")
    keep = ("truncat", "leader", "follower", "epoch", "isr", "aborted", "recover", "producer")
    markers = re.compile(r"marker.* producer_id=(-?\d+)")
    writer = anomaly.value.rsplit("-", 1)[0] if anomaly.value else None
    transactional_id = re.compile(rf"chaos-{re.escape(writer)}\b") if writer else None
    start = (anomaly.t or time.time()) - 12
    end = (anomaly.t or time.time()) + 5
    lines: list[str] = []
    for path in sorted(run_dir.glob("broker-*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if partition.search(line):
                marker = markers.search(line)
                wanted = (int(marker.group(1)) in producer_ids if marker
                          else any(k in line.lower() for k in keep))
            else:
                wanted = bool(transactional_id and transactional_id.search(line))
            if not wanted:
                continue
            at = log_time(line)
            if at is not None and start <= at <= end:
                lines.append(f"  {path.stem}: {line[:400]}")
    lines.sort(key=lambda line: line.split(": ", 1)[1][:27])
    if lines:
        out.append(f"brokers' log lines about {topic}-{p} and chaos-{writer}:")
        out += lines[-80:]
    return out


GROUP_KINDS = ("lost_commit", "group_reset", "group_stalled", "group_missed", "double_owner")


def group_evidence(run_dir: Path, anomaly: checker.Anomaly, last: int = 12) -> list[str]:
    """For a consumer group anomaly: each broker's copy of the group's offsets partition (kept by
    `finish`), the last commits of the anomaly's partition there with the leader epoch of the batch
    that wrote each, and the brokers' log lines about that offsets partition."""
    if anomaly.kind not in GROUP_KINDS or anomaly.partition is None:
        return []
    offsets = checker.offsets_partition_of(GROUP_ID)
    out = [f"commits of p{anomaly.partition} in each broker's __consumer_offsets-{offsets} "
           f"(log offset/leader epoch: offset):"]
    for copy in sorted(run_dir.glob("offsets-broker-*")):
        try:
            rows = [row for segment in sorted(copy.glob("*.log"))
                    for row in checker.offset_commits(segment.read_bytes(), GROUP_ID)
                    if row[2] == TOPIC and row[3] == anomaly.partition]
        except (OSError, IndexError, struct.error, UnicodeError) as error:
            out.append(f"  {copy.name.removeprefix('offsets-')}: unreadable ({error})")
            continue
        out.append(f"  {copy.name.removeprefix('offsets-')}: "
                   + " ".join(f"{o}/e{e}:{committed}" for o, e, _, _, committed in rows[-last:]))
    pattern = re.compile(rf"__consumer_offsets\"? partition={offsets}\b|__consumer_offsets-{offsets}\b|chaos-group")
    at = anomaly.t or time.time()
    lines = [f"  {path.stem}: {line[:300]}" for path in sorted(run_dir.glob("broker-*.log"))
             for line in path.read_text(errors="replace").splitlines()
             if pattern.search(line) and (t := log_time(line)) is not None and at - 15 <= t <= at + 5]
    lines.sort(key=lambda line: line.split(": ", 1)[1][:27])
    if lines:
        out.append(f"brokers' log lines about __consumer_offsets-{offsets} and {GROUP_ID}:")
        out += lines[-60:]
    return out


def log_time(line: str) -> float | None:
    """The wall-clock time of a tracing line (`2026-12-05T18:33:33.073923Z ...`), or None."""
    import datetime
    try:
        stamp = datetime.datetime.strptime(line[:26], "%Y-%m-%dT%H:%M:%S.%f")
    except ValueError:
        return None
    return stamp.replace(tzinfo=datetime.timezone.utc).timestamp()


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", type=int, default=20, help="faults to inject (default 20)")
    parser.add_argument("--seed", type=int, default=None, help="schedule seed (default: random, printed)")
    parser.add_argument("--kinds", default="", help=f"comma-separated fault kinds (default all: {','.join(nemesis.KINDS)})")
    parser.add_argument("--scenario", choices=sorted(nemesis.SCENARIOS), help="a scripted scenario instead of random faults")
    parser.add_argument("--concurrent", type=int, default=1,
                        help="faults injected together in each step (default 1: one at a time)")
    parser.add_argument("--security", choices=PROTOCOLS, default="plaintext",
                        help="plaintext (default); ssl: mutual TLS on every broker listener; sasl_ssl: SCRAM-SHA-512 "
                             "over TLS. Both secure the control plane (TLS, admin and cluster tokens) and run the "
                             "brokers with --authorizer standard (see security.py)")
    parser.add_argument("--workload", choices=("idempotent", "txn"), default="idempotent",
                        help="idempotent acks=all producers (default), or transactional producers committing and "
                             "aborting transactions with read_committed consumers (see workload.py)")
    parser.add_argument("--group", choices=("none", "classic", "consumer"), default="none",
                        help="add a consumer group to the workload: classic protocol (range or cooperative-sticky, "
                             "by the seed) or KIP-848's (group.protocol=consumer), checked for lost commits and "
                             "skipped records (see workload.py)")
    parser.add_argument("--controllers", type=int, default=3)
    parser.add_argument("--brokers", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--producers", type=int, default=3)
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=40.0, help="records/s per producer")
    parser.add_argument("--hold-min", type=float, default=3.0, help="shortest fault, s")
    parser.add_argument("--hold-max", type=float, default=8.0, help="longest fault, s")
    parser.add_argument("--settle", type=float, default=1.0, help="quiet time between faults, s")
    parser.add_argument("--recovery-timeout", type=float, default=45.0,
                        help="how long to wait for every broker to be back in every ISR after a heal, s")
    parser.add_argument("--session-timeout-ms", type=int, default=3000, help="controller --broker-session-timeout-ms")
    parser.add_argument("--replica-lag-ms", type=int, default=10000, help="broker --replica-lag-time-max-ms")
    parser.add_argument("--disk-mb", type=int, default=256, help="size of each broker's tmpfs data dir")
    parser.add_argument("--bin-dir", default=os.environ.get("CHRONIK_BIN_DIR", str(REPO_ROOT / "target" / "debug")))
    parser.add_argument("--dir", default=None, help="where the run directory goes (default: the temp dir)")
    parser.add_argument("--keep-data", action="store_true",
                        help="copy the brokers' data dirs (tmpfs, removed at the end) into the run dir")
    parser.add_argument("--cleanup", action="store_true", help="remove what killed runs left behind, and exit")
    parser.add_argument("--recheck", metavar="RUN_DIR", help="run the checker again over a finished run's directory")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1_000_000)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.cleanup:
        cleanup_leftovers()
        return 0
    if args.recheck:
        return Run.recheck(args)
    reason = preflight()
    if reason:
        print(f"cannot run the chaos harness: {reason}", file=sys.stderr)
        return 2
    if args.security != "plaintext" and shutil.which("openssl") is None:
        print(f"cannot run the chaos harness with --security {args.security}: `openssl` is not installed",
              file=sys.stderr)
        return 2
    for binary in ("chronik-controller", "chronik-broker", "chronikctl"):
        if not (Path(args.bin_dir) / binary).exists():
            print(f"{Path(args.bin_dir) / binary} not found: run `cargo build --workspace --bins` "
                  f"(or pass --bin-dir)", file=sys.stderr)
            return 2
    chaos = Run(args)
    atexit.register(chaos.cleanup)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        return chaos.main()
    except KeyboardInterrupt as error:
        log(f"interrupted ({error}); cleaning up")
        return 130
    except Exception as error:  # noqa: BLE001 - the run itself broke; say so with the node logs
        import traceback

        traceback.print_exc()
        print(f"\nthe chaos run could not be carried out (seed {args.seed}): {error}\n{chaos.cluster.log_tails(15)}",
              file=sys.stderr)
        return 2
    finally:
        chaos.cleanup()


if __name__ == "__main__":
    sys.exit(main())
