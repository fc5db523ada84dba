"""docker-compose.yml end to end: `scripts/docker-up` (host build, staged image context, `up --build`,
wait for every health check), a topic with replication factor 3 and min.insync.replicas 2, 10,000
records produced (acks=all) and consumed by confluent-kafka on the host through the published
EXTERNAL listeners, a producer inside the network through the INTERNAL ones, `kill` of a broker with
produce and consume going on, and `down` + `up` keeping every record. That stack runs with
`--monitoring` (docker-compose.monitoring.yml): Prometheus scrapes all six nodes, counts the records
produced, and evaluates every query of the Grafana dashboard. The secured variant
(`scripts/docker-up --secure`, docker-compose.secure.yml): confluent-kafka with exactly the printed
client properties creates a topic with RF 3 and produces and consumes over SASL_SSL; a wrong password,
a PLAINTEXT client and a controller call without TLS or without the admin token are refused. Each
project is always taken down with `down -v` (its volumes and image removed), pass or fail, before the
next one starts.

Skipped, saying why, when no Docker engine answers. Each run has its own compose project, image tag,
build context and free host ports (CHRONIK_BROKER_{1,2,3}_PORT), so it collides with nothing.
CHRONIK_PROFILE (default debug, the build scripts/test already made) picks the binaries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from chronik_cluster import REPO_ROOT, wait_until
import kafka_wire
from clients import Delivered, Rec, assert_same_records, ck_consume, ck_produce, payload

RECORDS = 10_000
PARTITIONS = 3
TOPIC = f"smoke-{uuid.uuid4().hex[:8]}"
SERVICES = ["controller-1", "controller-2", "controller-3", "broker-1", "broker-2", "broker-3"]


def _docker_problem() -> str | None:
    """Why the compose test cannot run here, or None."""
    if shutil.which("docker") is None:
        return "docker is not installed"
    try:
        info = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer `docker info` within 30 s"
    if info.returncode != 0:
        return f"no Docker engine answers: {info.stderr.strip()[:200]}"
    if _compose_command() is None:
        return "neither `docker compose` nor `docker-compose` is installed"
    return None


def _compose_command() -> list[str] | None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, stdin=subprocess.DEVNULL)
    if probe.returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class ComposeProject:
    """One compose project of docker-compose.yml, driven with the compose CLI."""

    def __init__(self, tmp: Path, secure: bool = False, monitoring: bool = False):
        self.name = f"chronik-test-{uuid.uuid4().hex[:10]}"
        self.ports = _free_ports(4)
        self.prometheus_port = self.ports.pop()
        self.secure = secure
        self.monitoring = monitoring
        self.compose = _compose_command() + ["-f", "docker-compose.yml"]
        if secure:
            self.compose += ["-f", "docker-compose.secure.yml"]
        if monitoring:
            self.compose += ["-f", "docker-compose.monitoring.yml"]
        self.up_output = ""
        self.env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": self.name,
            "CHRONIK_IMAGE": f"chronik:{self.name}",
            "CHRONIK_DOCKER_CONTEXT": str(tmp / "docker-context"),
            "CHRONIK_SECRETS_DIR": str(tmp / "secrets"),
            "CHRONIK_PROMETHEUS_CONTEXT": str(tmp / "prometheus-context"),
            "CHRONIK_PROMETHEUS_IMAGE": f"chronik-prometheus:{self.name}",
            "CHRONIK_PROMETHEUS_PORT": str(self.prometheus_port),
            "CHRONIK_PROFILE": os.environ.get("CHRONIK_PROFILE", "debug"),
            **{f"CHRONIK_BROKER_{i + 1}_PORT": str(port) for i, port in enumerate(self.ports)},
        }
        self.bootstrap = ",".join(f"localhost:{port}" for port in self.ports)

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.compose, *args], cwd=REPO_ROOT, env=self.env, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise AssertionError(f"`{' '.join(self.compose)} {' '.join(args)}` exited {done.returncode}:\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done

    def up(self, timeout: float = 900) -> float:
        """`scripts/docker-up` (`--secure` for the secured stack, `--monitoring` with Prometheus); returns
        how long it took."""
        started = time.monotonic()
        command = ([str(REPO_ROOT / "scripts" / "docker-up")] + (["--secure"] if self.secure else [])
                   + (["--monitoring"] if self.monitoring else []))
        done = subprocess.run(command, cwd=REPO_ROOT, env=self.env,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, f"scripts/docker-up exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        self.up_output = done.stdout
        return time.monotonic() - started

    def promql(self, query: str) -> dict:
        """The Prometheus API's answer to an instant query (`--monitoring`)."""
        url = f"http://127.0.0.1:{self.prometheus_port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:  # a bad query is a 400 with a JSON body saying why
            return json.loads(error.read())

    def chronikctl(self, *args: str, service: str = "controller-1") -> subprocess.CompletedProcess:
        return self.run("exec", "-T", service, "chronikctl", *args, timeout=60)

    def health(self) -> dict[str, str]:
        """{service: health status} of every container of the project."""
        ids = self.run("ps", "-q").stdout.split()
        if not ids:
            return {}
        out = subprocess.run(
            ["docker", "inspect", "--format",
             '{{index .Config.Labels "com.docker.compose.service"}} {{if .State.Health}}'
             '{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}', *ids],
            capture_output=True, text=True, check=True, timeout=60).stdout
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def wait_healthy(self, services: list[str], timeout: float = 180) -> None:
        wait_until(lambda: all(self.health().get(s) == "healthy" for s in services), timeout,
                   f"{', '.join(services)} to be healthy")

    def logs(self) -> str:
        return self.run("logs", "--no-color", "--tail", "40", timeout=120, check=False).stdout

    def down(self) -> None:
        """`down -v` with the project's image; then no volume of the project may be left."""
        self.run("down", "-v", "--rmi", "all", "--timeout", "5", timeout=300, check=False)
        left = subprocess.run(["docker", "volume", "ls", "-q", "--filter",
                               f"label=com.docker.compose.project={self.name}"],
                              capture_output=True, text=True, timeout=60).stdout.split()
        assert not left, f"`down -v` left volumes of {self.name}: {left}"


def _compose_project(request, tmp_path_factory, secure: bool, monitoring: bool = False):
    """Brings a project up, yields it, and always takes it down (its logs printed on failure)."""
    problem = _docker_problem()
    if problem is not None:
        reason = f"docker compose smoke test skipped: {problem}"
        print(reason)
        pytest.skip(reason)
    project = ComposeProject(tmp_path_factory.mktemp("compose-secure" if secure else "compose"), secure, monitoring)
    failed_before = request.session.testsfailed
    ok = False
    try:
        took = project.up()
        print(f"scripts/docker-up{' --secure' if secure else ''}{' --monitoring' if monitoring else ''} "
              f"(build, stage, image build, up, healthy) "
              f"took {took:.0f} s")
        yield project
        ok = request.session.testsfailed == failed_before
    finally:
        if not ok:
            print(f"===== compose logs of {project.name} =====\n{project.logs()}")
        project.down()


# Function-scoped: one stack at a time, each down before the next test starts.
@pytest.fixture
def compose(request, tmp_path_factory):
    yield from _compose_project(request, tmp_path_factory, secure=False, monitoring=True)


@pytest.fixture
def secure_compose(request, tmp_path_factory):
    yield from _compose_project(request, tmp_path_factory, secure=True)


def _metadata_brokers(address: str, topic: str) -> dict[int, str] | None:
    """The broker addresses one broker's Metadata answer names, once it has `topic` with every
    partition led (None before)."""
    with kafka_wire.KafkaConnection(address, timeout=5) as conn:
        meta = conn.metadata([topic])
    served = meta.topics.get(topic)
    if served is None or served.error_code != 0 or len(served.partitions) != PARTITIONS or any(
            p.error_code != 0 or p.leader < 0 for p in served.partitions.values()):
        return None
    return {node_id: f"{host}:{port}" for node_id, (host, port) in meta.brokers.items()}


def _describe(compose: ComposeProject, topic: str) -> dict:
    return json.loads(compose.chronikctl("--output", "json", "topic", "describe", topic).stdout)


def _first_offsets(delivered: list[Delivered]) -> dict[tuple[str, int], int]:
    """Where each partition's part of `delivered` starts (the consumer's assignment)."""
    first: dict[tuple[str, int], int] = {}
    for d in delivered:
        key = (TOPIC, d.partition)
        first[key] = min(first.get(key, d.offset), d.offset)
    return first


@pytest.mark.timeout(1800)
@pytest.mark.confluent
def test_compose_cluster_serves_host_clients_and_survives_a_broker_kill(compose):
    status = compose.chronikctl("cluster", "status").stdout
    assert "Active controller" in status, status
    inside_topic = f"{TOPIC}-inside"
    for topic in (TOPIC, inside_topic):
        compose.chronikctl("topic", "create", topic, "--partitions", str(PARTITIONS),
                           "--replication-factor", "3", "--config", "min.insync.replicas=2")

    # The host is told host addresses (EXTERNAL), by every broker, once it serves the topics...
    host_addresses = {i + 1: f"localhost:{port}" for i, port in enumerate(compose.ports)}
    for port in compose.ports:
        for topic in (TOPIC, inside_topic):
            wait_until(lambda: _metadata_brokers(f"localhost:{port}", topic) == host_addresses, 30,
                       f"Metadata on localhost:{port} to serve {topic} at the host addresses {host_addresses}")
    # ...and containers container addresses (INTERNAL): a producer inside the network finds the
    # leaders through Metadata and writes to them (acks=all); it fails unless every write is acked.
    inside = json.loads(compose.chronikctl(
        "--output", "json", "bench", "produce", "--bootstrap-servers", "broker-1:9092",
        "--topic", inside_topic, "--messages", "1000", "--timeout-secs", "60").stdout)
    assert inside["messages"] == 1000, inside

    records = [Rec(value=payload(i), key=str(i).encode()) for i in range(RECORDS)]
    delivered = ck_produce(compose.bootstrap, TOPIC, records, {"acks": "all"}, timeout=120)
    consumed = ck_consume(compose.bootstrap, _first_offsets(delivered), RECORDS, timeout=120,
                          quiet_after=0.5)
    assert_same_records(delivered, consumed)
    _prometheus_scrapes_every_node_and_answers_the_dashboard(compose, TOPIC, RECORDS)

    # kill -9 a broker: its partitions get new leaders from the ISR, and acks=all writes go on with the
    # two replicas left (min.insync.replicas 2).
    compose.run("kill", "broker-2")
    wait_until(lambda: all(2 not in p["isr"] and p["leader"] != 2
                           for p in _describe(compose, TOPIC)["partitions"]), 60,
               "broker 2 out of every ISR and leadership")
    more = [Rec(value=payload(RECORDS + i), key=str(i).encode()) for i in range(RECORDS)]
    delivered_after = ck_produce(compose.bootstrap, TOPIC, more, {"acks": "all"}, timeout=120)
    consumed_after = ck_consume(compose.bootstrap, _first_offsets(delivered_after), RECORDS,
                                timeout=120, quiet_after=0.5)
    assert_same_records(delivered_after, consumed_after)

    # `down` then `up` keeps every record (named volumes), broker 2's copy included.
    compose.run("down", "--timeout", "45")
    compose.run("up", "-d")
    compose.wait_healthy(SERVICES)
    everything = delivered + delivered_after
    consumed_all = ck_consume(compose.bootstrap, _first_offsets(everything), len(everything),
                              timeout=120, quiet_after=0.5)
    assert_same_records(everything, consumed_all)
    wait_until(lambda: all(sorted(p["isr"]) == [1, 2, 3] for p in _describe(compose, TOPIC)["partitions"]),
               120, "broker 2 back in every ISR after `up`")


DASHBOARD = REPO_ROOT / "docs" / "grafana" / "chronik-brokers.json"


def _prometheus_scrapes_every_node_and_answers_the_dashboard(compose: ComposeProject, topic: str,
                                                              records: int) -> None:
    """`--monitoring`: Prometheus has every controller and broker up, has scraped the records the
    leaders took in, and evaluates every query of the Grafana dashboard (its PromQL parses and names
    series that exist: the ones with data return some)."""

    def targets_up() -> bool:
        answer = compose.promql("up == 1")
        return answer.get("status") == "success" and len(answer["data"]["result"]) == 6

    wait_until(targets_up, 60, "Prometheus to scrape the 3 controllers and 3 brokers")
    records_in = f'sum(chronik_broker_records_in_total{{topic="{topic}"}})'

    def scraped_the_records() -> bool:
        result = compose.promql(records_in)["data"]["result"]
        return bool(result) and float(result[0]["value"][1]) == records

    wait_until(scraped_the_records, 60, f"Prometheus to see the {records} records of {topic}")
    panels = json.loads(DASHBOARD.read_text())["panels"]
    for panel in panels:
        for target in panel["targets"]:
            answer = compose.promql(target["expr"])
            assert answer.get("status") == "success", (panel["title"], target["expr"], answer)
    # Series that exist only after an event this test does not cause (errors, duplicates, group
    # commits) may be empty; the traffic panels may not, once a rate has two scrapes to go on.
    for title in ("Produce bytes/s by topic", "Requests/s by API", "Request latency p99 by API",
                  "Open connections by listener", "Brokers by state"):
        expr = next(p for p in panels if p["title"] == title)["targets"][0]["expr"]
        wait_until(lambda: bool(compose.promql(expr)["data"]["result"]), 30,
                   f"dashboard panel {title!r} to have data in Prometheus")


def _read_properties(path: Path) -> dict[str, str]:
    """A librdkafka properties file as confluent-kafka's config dict, exactly as written."""
    properties = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            properties[key.strip()] = value.strip()
    return properties


def _authentication_errors(config: dict, timeout: float = 10) -> list[KafkaError]:
    """The errors a client with `config` reports while it tries to list topics (it must fail)."""
    errors: list[KafkaError] = []
    admin = AdminClient({**config, "error_cb": errors.append, "log_level": 0})
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=timeout)

    def reported() -> list[KafkaError]:
        admin.poll(0.2)
        return errors

    return wait_until(reported, 10, "an error callback")


@pytest.mark.timeout(900)
@pytest.mark.confluent
def test_secure_compose_cluster_serves_sasl_ssl_clients_and_refuses_the_rest(secure_compose):
    match = re.search(r"^client properties: (.+)$", secure_compose.up_output, re.MULTILINE)
    assert match, f"`scripts/docker-up --secure` printed no client properties:\n{secure_compose.up_output}"
    path = Path(match.group(1))
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, "the properties hold a password"
    properties = _read_properties(path)
    assert properties["security.protocol"] == "SASL_SSL", properties
    assert properties["bootstrap.servers"] == secure_compose.bootstrap, properties

    # confluent-kafka with exactly the printed properties: a topic with RF 3, produce (acks=all, so
    # the followers replicate as the SCRAM user `broker` over the SASL_SSL INTERNAL listener), consume.
    topic = f"secure-{uuid.uuid4().hex[:8]}"
    admin = AdminClient(properties)
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 3)], request_timeout=30).values():
        future.result(timeout=60)
    wait_until(lambda: all(len(p["isr"]) == 3 and p["leader"] > 0
                           for p in _describe(secure_compose, topic)["partitions"]), 60,
               f"every replica of {topic} in the ISR")
    records = [Rec(value=payload(i), key=str(i).encode()) for i in range(1000)]
    delivered = ck_produce(properties["bootstrap.servers"], topic, records, {**properties, "acks": "all"},
                           timeout=120)
    start = {(topic, p): 0 for p in range(PARTITIONS)}
    consumed = ck_consume(properties["bootstrap.servers"], start, len(records), timeout=120,
                          config=properties, quiet_after=0.5)
    assert_same_records(delivered, consumed)
    # Every replica has every record: the followers authenticated and fetched.
    wait_until(lambda: all(len(p["isr"]) == 3 for p in _describe(secure_compose, topic)["partitions"]),
               60, f"every replica of {topic} in the ISR after the writes")

    # A wrong password: SASL authentication fails.
    errors = _authentication_errors({**properties, "sasl.password": "not-the-password-1"})
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), [str(e) for e in errors]
    # A PLAINTEXT client at the published port: the TLS listener drops it; nothing is served.
    host, port = secure_compose.bootstrap.split(",")[0].rsplit(":", 1)
    with pytest.raises((ConnectionError, OSError, ValueError, struct.error)):
        with kafka_wire.KafkaConnection(f"{host}:{port}", timeout=10) as conn:
            conn.metadata([topic])

    # The controllers, from a container on the compose network with the image and the secrets volume
    # but no credentials in its environment: gRPC without TLS is refused, TLS without the admin token
    # is refused, TLS with the admin token lists the topic, as chronikctl in a controller container
    # (the CA and the token in its environment) does.
    def outsider(*flags: str) -> subprocess.CompletedProcess:
        return secure_compose.run("run", "--rm", "--no-deps", "-T", "secrets", "chronikctl",
                                  "--controllers", "controller-1:9093", *flags, "topic", "list",
                                  timeout=120, check=False)

    plaintext = outsider()
    assert plaintext.returncode != 0 and "require TLS" in plaintext.stderr, plaintext
    no_token = outsider("--controller-tls-ca", "/etc/chronik/secrets/ca.pem")
    assert no_token.returncode != 0 and "admin-token-file" in no_token.stderr, no_token
    with_token = outsider("--controller-tls-ca", "/etc/chronik/secrets/ca.pem",
                          "--admin-token-file", "/etc/chronik/secrets/admin.token")
    assert with_token.returncode == 0 and topic in with_token.stdout, with_token
    listed = secure_compose.chronikctl("topic", "list").stdout
    assert topic in listed, listed
