"""The faults. Each fault kind is a function `(ctx, rng) -> Fault` that injures the cluster now and
returns how to heal it; the runner holds it for a while, heals, and waits until every broker is back in
every ISR (recorded as the fault's recovery time).

| kind                         | what it does                                                          |
|------------------------------|-----------------------------------------------------------------------|
| kill                         | kill -9 a broker (3 in 4) or a controller that is not active; restart |
| pause                        | SIGSTOP a broker past the broker session timeout, then SIGCONT         |
| leader_cut_from_controllers  | the broker leading most partitions loses the controllers only          |
| follower_cut_from_leader     | one partition's follower loses its leader only (keeps heartbeating)    |
| broker_isolated              | one broker loses every other host, clients included                    |
| broker_split                 | one broker (with one controller, half the time) vs the other brokers   |
| controller_cut               | one controller (the active one, half the time) loses the other ones    |
| kill_active_controller       | kill -9 the active controller; restart                                 |
| disk_full                    | fill a broker's data dir (a tmpfs) to the last byte; free it           |
| reassign                     | move a partition to two of its replicas; move it back to all three     |
| lossy_links                  | a broker (3 in 4) or a controller drops 5-30% of its packets, at random |

A scenario (`SCENARIOS`) is a scripted sequence aimed at one defect of issue #11.
"""

from __future__ import annotations

import collections
import errno
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Fault:
    kind: str
    detail: str
    heal: Callable[[], None]
    min_hold: float = 0.0  # the fault must last at least this long (pause: past the session timeout)
    notes: list[str] = field(default_factory=list)
    # What recovery needs besides every broker in every ISR: None once it holds, else why not yet.
    check: Callable[[], str | None] | None = None
    # Observations kept in the fault's record (faults.jsonl) for the checker (`reassign`: "reassign").
    facts: dict = field(default_factory=dict)


def leaders_count(parts: dict[int, dict]) -> collections.Counter:
    return collections.Counter(p["leader"] for p in parts.values() if p.get("leader", -1) > 0)


def busiest_leader(ctx, rng: random.Random) -> int:
    parts = ctx.parts()
    led = leaders_count(parts) if parts else collections.Counter()
    if not led:
        return rng.choice(ctx.cluster.brokers).id
    top = max(led.values())
    return rng.choice(sorted(b for b, n in led.items() if n == top))


def kill(ctx, rng):
    cluster = ctx.cluster
    active = cluster.active_controller()
    if rng.random() < 0.75 or len(cluster.controllers) == 1:
        node = cluster.broker(busiest_leader(ctx, rng) if rng.random() < 0.5 else rng.choice(cluster.brokers).id)
    else:
        node = rng.choice([c for c in cluster.controllers if c.id != active])
    node.kill()
    return Fault("kill", f"kill -9 {node.name}", node.start)


def pause(ctx, rng):
    node = ctx.cluster.broker(busiest_leader(ctx, rng) if rng.random() < 0.7 else rng.choice(ctx.cluster.brokers).id)
    node.pause()
    return Fault("pause", f"SIGSTOP {node.name}", node.resume, min_hold=ctx.session_timeout_s + 1.5)


def leader_cut_from_controllers(ctx, rng):
    b = ctx.cluster.broker(busiest_leader(ctx, rng))
    ctx.net.cut_between([b.host], [c.host for c in ctx.cluster.controllers])
    return Fault("leader_cut_from_controllers", f"{b.name} cut from the controllers", ctx.net.heal,
                 min_hold=ctx.session_timeout_s + 1.0)


def follower_cut_from_leader(ctx, rng):
    parts = ctx.parts() or {}
    candidates = [(p, d["leader"], f) for p, d in sorted(parts.items()) for f in d["isr"]
                  if d.get("leader", -1) > 0 and f != d["leader"]]
    if not candidates:
        a, b = rng.sample(ctx.cluster.brokers, 2)
        partition, leader, follower = None, a.id, b.id
    else:
        partition, leader, follower = rng.choice(candidates)
    ctx.net.cut(f"b{follower}", f"b{leader}")
    return Fault("follower_cut_from_leader",
                 f"b{follower} cut from its leader b{leader} (partition {partition})", ctx.net.heal)


def broker_isolated(ctx, rng):
    b = ctx.cluster.broker(busiest_leader(ctx, rng) if rng.random() < 0.5 else rng.choice(ctx.cluster.brokers).id)
    ctx.net.cut_between([b.host], [h for h in ctx.net.hosts if h != b.host])
    return Fault("broker_isolated", f"{b.name} cut from everything", ctx.net.heal,
                 min_hold=ctx.session_timeout_s + 1.0)


def broker_split(ctx, rng):
    brokers = [b.host for b in ctx.cluster.brokers]
    minority = [rng.choice(brokers)]
    majority = [b for b in brokers if b not in minority]
    controllers = [c.host for c in ctx.cluster.controllers]
    if len(controllers) > 1 and rng.random() < 0.5:
        lone = rng.choice(controllers)
        minority.append(lone)
        majority += [c for c in controllers if c != lone]
    else:
        majority += controllers
    ctx.net.cut_between(minority, majority)
    return Fault("broker_split", f"{'+'.join(minority)} | {'+'.join(majority)}", ctx.net.heal,
                 min_hold=ctx.session_timeout_s + 1.0)


def controller_cut(ctx, rng):
    controllers = ctx.cluster.controllers
    active = ctx.cluster.active_controller()
    if active and rng.random() < 0.5:
        c = ctx.cluster.controller(active)
    else:
        c = rng.choice(controllers)
    ctx.net.cut_between([c.host], [o.host for o in controllers if o is not c])
    return Fault("controller_cut", f"{c.name}{' (active)' if c.id == active else ''} cut from the other controllers",
                 ctx.net.heal)


def kill_active_controller(ctx, rng):
    active = ctx.cluster.active_controller()
    c = ctx.cluster.controller(active) if active else rng.choice(ctx.cluster.controllers)
    c.kill()
    return Fault("kill_active_controller", f"kill -9 {c.name}{'' if active else ' (no active controller known)'}",
                 c.start)


def lossy_links(ctx, rng):
    """A flaky network rather than a cut: one host drops a random share of the packets it sends and
    receives, so its connections stay open but lose segments, retransmit and stall (Raft and replica
    fetches time out at random, heartbeats arrive late or not at all). A broker (the busiest leader
    half the time) 3 times in 4, otherwise a controller (the active one half the time)."""
    probability = rng.uniform(0.05, 0.30)
    if rng.random() < 0.75:
        node = ctx.cluster.broker(busiest_leader(ctx, rng) if rng.random() < 0.5 else
                                  rng.choice(ctx.cluster.brokers).id)
    else:
        active = ctx.cluster.active_controller()
        node = (ctx.cluster.controller(active) if active and rng.random() < 0.5 else
                rng.choice(ctx.cluster.controllers))
    ctx.net.lossy(node.host, probability)
    return Fault("lossy_links", f"{node.name} drops {probability:.0%} of its packets", ctx.net.heal)


def controller_disk_lost(ctx, rng):
    """A controller loses its data directory: killed, its directory emptied, started again with an
    empty Raft store. It holds its vote until it has caught up with the other controllers
    (`controller/src/raft/vote_hold.rs`), which the heal waits for (its /readyz). A follower 3 times in
    4, otherwise the active controller."""
    active = ctx.cluster.active_controller()
    followers = [c for c in ctx.cluster.controllers if c.id != active]
    if active and (rng.random() < 0.25 or not followers):
        c = ctx.cluster.controller(active)
    else:
        c = rng.choice(followers or ctx.cluster.controllers)
    c.kill()
    shutil.rmtree(c.data_dir, ignore_errors=True)
    c.start()
    fault = Fault("controller_disk_lost",
                  f"{c.name}{' (active)' if c.id == active else ''} lost its data directory and started empty",
                  lambda: None)

    def heal() -> None:
        try:
            ctx.cluster.wait(c.ready, 60, f"{c.name} to catch up and vote again")
        except TimeoutError:
            fault.notes.append(f"{c.name} still holds its vote 60 s after the heal")

    fault.heal = heal
    return fault


def broker_disk_lost(ctx, rng):
    """A broker loses its data directory: killed, everything in it removed (a new, empty disk), started
    again. It registers with a new directory id (`log-dir.id`), so the controller takes it out of every
    ISR, even as a last member, and where that empties an ISR elects an eligible leader replica
    (KIP-966) rather than its empty log; it copies its replicas back from the leaders. A leader 1 time
    in 2. Only while every ISR is whole: two lost disks of one acknowledged write's two copies are beyond
    what replication factor 3 with min.insync.replicas 2 promises, so otherwise (or while another broker
    is down) it is a plain kill."""
    parts = ctx.parts() or {}
    whole = (bool(parts) and all(len(p["isr"]) == len(p["replicas"]) for p in parts.values())
             and all(other.running() and not other.paused for other in ctx.cluster.brokers))
    b = ctx.cluster.broker(busiest_leader(ctx, rng) if rng.random() < 0.5 else rng.choice(ctx.cluster.brokers).id)
    b.kill()
    if not whole:
        return Fault("broker_disk_lost", f"kill -9 {b.name} (an ISR is not whole: its disk is kept)", b.start)
    for child in b.data_dir.iterdir():  # the directory may be a mount point: empty it
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    b.start()
    return Fault("broker_disk_lost", f"{b.name} lost its data directory and started empty", lambda: None)


def fill(path: str) -> int:
    """Fills the file system holding `path` to the last byte with one file; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        st = os.statvfs(path)
        room = st.f_bavail * st.f_frsize
        if room > (1 << 20):
            try:
                os.posix_fallocate(fd, 0, room - (1 << 20))
                written = room - (1 << 20)
                os.lseek(fd, written, os.SEEK_SET)
            except OSError:
                pass
        chunk = b"\0" * 65536
        while True:
            try:
                n = os.write(fd, chunk if len(chunk) > 0 else b"\0")
                written += n
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                if len(chunk) == 1:
                    break
                chunk = chunk[: max(1, len(chunk) // 16)]
    finally:
        os.close(fd)
    return written


def disk_full(ctx, rng):
    b = ctx.cluster.broker(busiest_leader(ctx, rng) if rng.random() < 0.7 else rng.choice(ctx.cluster.brokers).id)
    path = str(b.data_dir / "chaos-disk-filler")
    written = fill(path)
    fault = Fault("disk_full", f"{b.name}'s data dir full ({written >> 20} MiB filler)", lambda: None)

    def heal():
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        # Issue #11: a broker whose disk filled may need a restart to recover; give it a while first.
        freed = time.time()
        try:
            ctx.cluster.wait(lambda: ctx.recovered(freed), 15, "recovery without a restart")
        except TimeoutError:
            fault.notes.append(f"not recovered 15 s after {b.name}'s disk had room (partitions without acks "
                               f"{ctx.stuck_partitions(freed)}): {b.name} restarted")
            b.kill()
            b.start()

    fault.heal = heal
    return fault


def ctl_retrying(ctx, *args: str, timeout: float = 20.0):
    """`chronikctl *args` until it answers (controllers may be cut off or electing); raises the last
    error after `timeout`. Only for requests that may be repeated (a move to the same target)."""
    return ctx.cluster.wait(lambda: ctx.cluster.ctl(*args) or True, timeout, f"chronikctl {' '.join(args)}")


def reassign(ctx, rng):
    """KIP-455 under faults: move one partition to two of its three replicas (the dropped one is the
    leader 2 in 5, so leadership must move), hold, then move it back to every broker in a seeded order:
    the dropped broker deleted its copy, is rebuilt from empty and must catch up into the ISR. One
    heal in 3 cancels the move back while it is under way first (the dropped broker is stopped for
    that moment so that it is; the partition must return to its two replicas at once) and then moves
    it back again. Recovery also needs the reassignment gone from `reassignment list` and the replicas
    to be the asked ones, all in the ISR (`check`), so a move stuck behind another fault is reported
    as not recovered. `facts["reassign"]` records what the
    checker judges: whether the dropped broker still held the partition's data once the move had
    completed, and what a cancel left."""
    # Every draw is made whatever the cluster looks like, so the rest of the schedule stays seeded.
    index, drop_leader, pick = rng.randrange(1 << 16), rng.random() < 0.4, rng.randrange(1 << 16)
    cancel, cancel_after = rng.random() < 1 / 3, rng.uniform(0.0, 0.5)
    back = [b.id for b in ctx.cluster.brokers]
    rng.shuffle(back)
    try:
        parts = ctx.cluster.wait(ctx.parts, 20, "a description of the topic")
    except TimeoutError:
        return Fault("reassign", "no description of the topic: nothing moved", lambda: None)
    p = sorted(parts)[index % len(parts)]
    original, leader = list(parts[p]["replicas"]), parts[p].get("leader", -1)
    followers = [r for r in original if r != leader]
    drop = leader if drop_leader and leader in original else followers[pick % len(followers)]
    target = [r for r in original if r != drop]
    facts = {"p": p, "from": original, "drop": drop, "leader_dropped": drop == leader, "to": target,
             "back": back}
    fault = Fault("reassign", f"p{p} {original} -> {target} (drop b{drop}{', the leader' if drop == leader else ''})",
                  lambda: None, facts={"reassign": facts})
    topic = ctx.topic
    move = ("partition", "move", topic, str(p), "--no-wait", "--replicas")
    try:
        ctl_retrying(ctx, *move, ",".join(map(str, target)))
    except TimeoutError as error:
        fault.notes.append(f"the move of p{p} was not accepted: {error}")  # the answer may have been lost

    def listed() -> list[dict]:
        return [r for r in ctx.cluster.ctl("reassignment", "list", "--topic", topic) if r["partition"] == p]

    def replicas_now() -> list[int]:
        return list(ctx.cluster.describe(topic)[p]["replicas"])

    def removed_copy_left() -> None:
        """Once the shrink completed, the dropped broker must delete its copy (if it can hear the
        controllers: not paused, dead or cut off by another fault, which say nothing about it)."""
        facts["shrink_completed"] = False
        try:
            ctx.cluster.wait(lambda: not listed() and replicas_now() == target, 15, f"p{p}'s move to {target}")
        except TimeoutError as error:
            fault.notes.append(f"p{p}'s move to {target} had not completed at the heal: {error}")
            return
        facts["shrink_completed"] = True
        node = ctx.cluster.broker(drop)
        if not node.running() or node.paused or any(node.host in cut for cut in ctx.net.cuts):
            fault.notes.append(f"b{drop}'s copy of p{p} not checked: b{drop} is down, paused or cut off")
            return
        directory = node.data_dir / f"{topic}-{p}"
        try:
            ctx.cluster.wait(lambda: not directory.exists(), 20, f"b{drop} to delete {directory.name}")
            facts["removed_dir_left"] = False
        except TimeoutError:
            facts["removed_dir_left"] = True
            fault.notes.append(f"b{drop} still holds {directory} 20 s after p{p} moved off it")

    def heal() -> None:
        removed_copy_left()
        spec = ",".join(map(str, back))
        if cancel and facts["shrink_completed"]:
            before = target
            # The dropped broker rebuilds a partition of a few thousand records in well under a
            # second, quicker than a cancel can follow the move; stopped for that moment (far below
            # the session timeout), it cannot catch up, so the cancel finds the move under way.
            node = ctx.cluster.broker(drop)
            hold_back = node.running() and not node.paused
            try:
                if hold_back:
                    node.pause()
                try:
                    ctl_retrying(ctx, *move, spec, timeout=5)
                    time.sleep(cancel_after)
                    ctx.cluster.ctl("reassignment", "cancel", topic, str(p))
                finally:
                    if hold_back:
                        node.resume()
                got: list[int] = []

                def reverted() -> bool:
                    got[:] = replicas_now()  # a controller may answer from a moment before the cancel
                    return sorted(got) == sorted(before)  # the order is the move's (checker doc)

                try:
                    ctx.cluster.wait(reverted, 5, f"p{p} back to {before}")
                except TimeoutError:
                    pass
                facts["cancel"] = {"expected": before, "got": got, "too_late": False}
                if got != before and sorted(got) == sorted(before):
                    fault.notes.append(f"the cancel left p{p} on {got} (the move's order), not {before}")
            except RuntimeError as error:
                if "NO_REASSIGNMENT_IN_PROGRESS" in str(error):
                    facts["cancel"] = {"expected": before, "got": None, "too_late": True}
                    fault.notes.append(f"p{p}'s move back completed before its cancel")
                else:
                    fault.notes.append(f"cancelling p{p}'s move back failed: {error}")
            except (TimeoutError, KeyError) as error:
                fault.notes.append(f"cancelling p{p}'s move back failed: {error}")
        try:
            ctl_retrying(ctx, *move, spec)
        except TimeoutError as error:
            fault.notes.append(f"the move of p{p} back to {back} was not accepted: {error}")

    def check() -> str | None:
        pending = listed()
        if pending:
            r = pending[0]
            return f"p{p}'s move to {back} still listed: adding {r['adding']}, removing {r['removing']}, isr {r['isr']}"
        d = ctx.cluster.describe(topic)[p]
        if d["replicas"] != back or sorted(d["isr"]) != sorted(back):
            return f"p{p} has replicas {d['replicas']} (isr {d['isr']}), not {back}"
        return None

    fault.heal, fault.check = heal, check
    return fault


KINDS: dict[str, Callable] = {
    "kill": kill,
    "pause": pause,
    "leader_cut_from_controllers": leader_cut_from_controllers,
    "follower_cut_from_leader": follower_cut_from_leader,
    "broker_isolated": broker_isolated,
    "broker_split": broker_split,
    "controller_cut": controller_cut,
    "kill_active_controller": kill_active_controller,
    "disk_full": disk_full,
    "reassign": reassign,
    "lossy_links": lossy_links,
    "controller_disk_lost": controller_disk_lost,
    "broker_disk_lost": broker_disk_lost,
}


def schedule(rng: random.Random, kinds: list[str], count: int, cover: bool = True) -> list[str]:
    """`count` fault kinds: every kind once first (in a seeded order) when `cover`, then random."""
    out: list[str] = []
    if cover:
        first = list(kinds)
        rng.shuffle(first)
        out += first[:count]
    while len(out) < count:
        out.append(rng.choice(kinds))
    return out


# ----- scenarios: scripted sequences aimed at one defect each -----

def scenario_lagging_isr_failover(ctx, rng, note) -> None:
    """Issue #11 defect 1. Partition with leader A, followers B, C: C is cut from the other brokers (it
    stays in the ISR until replica.lag.time.max.ms, so acks=all stalls); A is killed, so B or C is
    elected. If B: it exposes records C lacks. Then B is killed before C catches up, C is elected,
    and whatever B exposed or acknowledged is gone. Everything is healed and restarted at the end."""
    parts = ctx.parts()
    p = rng.choice(sorted(parts))
    a = parts[p]["leader"]
    others = [r for r in parts[p]["isr"] if r != a]
    b, c = others[0], others[1]
    ctx.net.cut_between([f"b{c}"], [f"b{x}" for x in (a, b)])
    note(f"scenario: p{p} leader b{a}; b{c} cut from brokers b{a}, b{b}")
    time.sleep(2.0)
    ctx.cluster.broker(a).kill()
    note(f"scenario: killed leader b{a}")
    try:
        new = ctx.cluster.wait(lambda: (ctx.parts() or {}).get(p, {}).get("leader") not in (a, -1, None)
                               and ctx.parts()[p]["leader"], 20, f"a new leader of p{p}")
    except TimeoutError:
        new = None
    note(f"scenario: p{p} new leader b{new}")
    if new == b:
        time.sleep(2.0)
        ctx.cluster.broker(b).kill()
        note(f"scenario: killed b{b} before b{c} caught up")
        try:
            new = ctx.cluster.wait(lambda: (ctx.parts() or {}).get(p, {}).get("leader") == c and c, 20,
                                   f"b{c} to lead p{p}")
            note(f"scenario: p{p} now led by b{c}")
        except TimeoutError:
            note(f"scenario: b{c} was not elected for p{p}")
        time.sleep(2.0)
    ctx.net.heal()
    for node in ctx.cluster.brokers:
        node.start()
    note("scenario: healed, every broker started")


def held(kind: str, seconds: float, why: str) -> Callable:
    """A scenario that is one fault of `kind`, held `seconds` (longer than a random schedule would)."""

    def scenario(ctx, rng, note) -> None:
        fault = KINDS[kind](ctx, rng)
        note(f"scenario: {fault.detail}; holding {seconds:.0f}s ({why})")
        time.sleep(max(seconds, fault.min_hold))
        fault.heal()
        note(f"scenario: healed{'; ' + '; '.join(fault.notes) if fault.notes else ''}")

    scenario.__doc__ = why
    return scenario


SCENARIOS: dict[str, Callable] = {
    "lagging-isr-failover": scenario_lagging_isr_failover,
    # defect 6 (fixed): leaderships leave the full disk's broker within about one heartbeat
    "disk-full-leader": held("disk_full", 20, "issue #11 defect 6: does leadership move off a full disk?"),
    # acks=all stalls until the cut follower leaves the ISR (replica.lag.time.max.ms)
    "follower-cut-stall": held("follower_cut_from_leader", 20, "acks=all stall while a cut follower stays in the ISR"),
    # defect 7: a leader paused past its session answers late after a new leader took over
    "paused-leader": held("pause", 8, "issue #11 defect 7: stale responses from a leader paused past its session"),
}
