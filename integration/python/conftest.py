"""Fixtures of the client suite: clusters of real Chronik processes, unique topic names, and node log
tails printed under any failing test.

- `shared_cluster` (session): 1 controller and 3 brokers, replication factor 1 and 3 partitions by
  default. Every test that does not disturb the cluster uses it, each with its own topics.
- `cluster_factory` (function): starts clusters for one test (fault tests kill, stop and corrupt
  brokers) and takes them down after it.
- `module_cluster_factory` (module): the same for a module's tests that share an unusual setup.

Every cluster is taken down with `chronikctl local down` in teardown, failure or not; a test that fails
gets the tail of every node's log file in its report.
"""

from __future__ import annotations

import atexit
import re
import shutil
import uuid
from pathlib import Path

import pytest

from chronik_cluster import RF1_CONTROLLER_ARGS, ChronikCluster, chronikctl_path

SHARED_BROKERS = 3

_live: dict[Path, ChronikCluster] = {}


@atexit.register
def _down_everything_left() -> None:
    """Last resort if pytest itself is interrupted before fixture teardown."""
    for cluster in list(_live.values()):
        cluster.down()


class ClusterFactory:
    """Starts clusters in fresh temp dirs and takes every one of them down in `close`."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory, label: str):
        self._tmp = tmp_path_factory
        self._label = re.sub(r"[^a-zA-Z0-9_-]+", "-", label)[:40]
        self.clusters: list[ChronikCluster] = []

    def __call__(self, controllers: int = 1, brokers: int = 1, controller_args: list[str] | None = None,
                 broker_args: list[str] | None = None,
                 listeners: list[str] | None = None) -> ChronikCluster:
        if not chronikctl_path().exists():
            pytest.fail(f"{chronikctl_path()} not found: run `cargo build --workspace --bins` "
                        f"(or set CHRONIK_BIN_DIR)")
        directory = self._tmp.mktemp(f"cluster-{self._label}-")
        cluster = ChronikCluster.up(
            name=directory.name, directory=directory, controllers=controllers, brokers=brokers,
            controller_args=RF1_CONTROLLER_ARGS if controller_args is None else controller_args,
            broker_args=broker_args or [], listeners=listeners or [])
        _live[directory] = cluster
        self.clusters.append(cluster)
        return cluster

    def close(self) -> None:
        """Takes every cluster down (newest first); they stay listed so failures can show their logs."""
        for cluster in reversed(self.clusters):
            if _live.pop(cluster.dir, None) is not None:
                cluster.down()


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory):
    factory = ClusterFactory(tmp_path_factory, "shared")
    try:
        yield factory(controllers=1, brokers=SHARED_BROKERS)
    finally:
        factory.close()


@pytest.fixture
def cluster_factory(request, tmp_path_factory):
    factory = ClusterFactory(tmp_path_factory, request.node.name)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def module_cluster_factory(request, tmp_path_factory):
    factory = ClusterFactory(tmp_path_factory, request.module.__name__)
    try:
        yield factory
    finally:
        factory.close()


def unique_topic(label: str) -> str:
    """A topic name unique to this run, readable in broker logs: `<label>-<8 hex>`."""
    clean = re.sub(r"[^a-zA-Z0-9._-]+", "-", label).strip("-.")[:80]
    return f"{clean}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def topic_name(request) -> str:
    return unique_topic(request.node.name)


@pytest.fixture(scope="session")
def kcat() -> str:
    path = shutil.which("kcat") or shutil.which("kafkacat")
    if path is None:
        reason = "kcat is not installed (Debian package `kcat`); the kcat tests are skipped"
        print(reason)
        pytest.skip(reason)
    return path


# ----- node logs under failing tests -----

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _clusters_of(item) -> list[ChronikCluster]:
    found: dict[Path, ChronikCluster] = {}
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, ChronikCluster):
            found[value.dir] = value
        elif isinstance(value, ClusterFactory):
            found.update((c.dir, c) for c in value.clusters)
    return list(found.values())


@pytest.fixture(autouse=True)
def _node_logs_on_failure(request):
    yield
    failed = any(getattr(getattr(request.node, f"report_{when}", None), "failed", False)
                 for when in ("setup", "call"))
    if failed:
        for cluster in _clusters_of(request.node):
            print(f"===== node logs of cluster {cluster.name} ({cluster.dir}) =====")
            print(cluster.log_tails())
