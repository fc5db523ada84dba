"""Security of the brokers' Kafka listeners (issue #14): TLS, mTLS principals, SASL SCRAM and PLAIN, and
KIP-368 re-authentication, with real clients against real processes.

One module cluster (1 controller, 2 brokers) has four listeners: PLAINTEXT (first, so the
inter-broker one), SASL_SSL, SASL_PLAINTEXT and SSL (`--ssl-client-auth required`), the standard
authorizer with `User:admin` as super user, and certificates made with the `openssl` CLI (a CA, the
brokers' certificate for 127.0.0.1/localhost, client certificates, and one from another CA).

Bootstrapping (docs/security.md): `chronikctl acl create` (straight to the controllers) lets
`User:ANONYMOUS` alter the cluster, the PLAINTEXT listener then creates the super user's SCRAM
credential with confluent-kafka's `alter_user_scram_credentials`, and the ALTER ACL is removed. ANONYMOUS
keeps CLUSTER_ACTION on the cluster (followers fetch over the PLAINTEXT listener) and DESCRIBE on topics
(the harness checks topics through that listener).

- confluent-kafka SCRAM-SHA-512 over SASL_SSL, kafka-python PLAIN over SASL_PLAINTEXT and mTLS over SSL,
  kcat over SASL_SSL, the Java client with SCRAM over TLS and with mTLS (principal from the certificate,
  through `--ssl-principal-mapping-rules`): each produces and consumes where its ACLs allow and gets
  TOPIC_AUTHORIZATION_FAILED where they do not.
- Bad input (wrong password, unknown user, unknown mechanism, plaintext on a TLS port, garbage during the
  SASL exchange, a frame over 512 KiB before authentication, an untrusted, expired or missing client
  certificate) fails that connection clearly; a normal client still
  works afterwards, and no password reaches a broker's log.
- An ACL change applies on every broker without a restart.
- A second small cluster with `--connections-max-reauth-ms` short: a deleted user's open connection fails
  at its next re-authentication while another user's keeps working.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

import confluent_kafka as ck
import kafka as kp
import pytest
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

import kafka_wire
from chronik_cluster import ChronikCluster, wait_until
from clients import LIBRDKAFKA_BASE, Rec, ck_consume, ck_produce, unique_group
from test_java_client import java_classpath  # noqa: F401 - the fixture is used by name

pytestmark = pytest.mark.timeout(240)

LISTENERS = ["PLAINTEXT", "SASL_SSL", "SASL_PLAINTEXT", "SSL"]
ADMIN, ADMIN_PASSWORD = "admin", "admin-Secret-1"
ALICE, ALICE_PASSWORD = "alice", "alice-Secret-2"
BOB, BOB_PASSWORD = "bob", "bob-Secret-3"
ALICE_DN = "CN=alice,OU=eng,O=acme"
# Every password any test sends, to look for in the brokers' logs.
PASSWORDS = [ADMIN_PASSWORD, ALICE_PASSWORD, BOB_PASSWORD, "wrong-Password-9"]
SCRAM_FAILED = "Authentication failed during authentication due to invalid credentials with SASL mechanism"


# ----- certificates -----

def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem",
            "-days", "2", "-subj", f"/CN={name}", cwd=d)


def make_cert(d: Path, ca: str, name: str, subject: str, san: str | None, days: int = 2) -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", subject, cwd=d)
    ext = d / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", str(days), "-extfile", str(ext), cwd=d)
    # key and chain in one file, as the Java client's PEM keystore wants (KIP-651)
    (d / f"{name}.keystore.pem").write_text((d / f"{name}.key").read_text() + (d / f"{name}.pem").read_text())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    if not shutil.which("openssl"):
        pytest.skip("the openssl CLI is needed to make the test certificates")
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_cert(d, "ca", "server", "/CN=localhost", "IP:127.0.0.1,DNS:localhost")
    make_cert(d, "ca", "alice", "/O=acme/OU=eng/CN=alice", None)
    make_cert(d, "ca", "svc", "/O=acme/CN=svc-java", None)
    make_cert(d, "other-ca", "mallory", "/O=acme/OU=eng/CN=alice", None)
    make_cert(d, "ca", "expired", "/O=acme/OU=eng/CN=alice", None, days=-1)  # ended yesterday
    return d


def tls_args(pki: Path) -> list[str]:
    return [f"--ssl-certificate={pki / 'server.pem'}", f"--ssl-key={pki / 'server.key'}",
            f"--ssl-ca={pki / 'ca.pem'}"]


# ----- the cluster -----

def listener_addr(cluster: ChronikCluster, broker_id: int, name: str) -> str:
    return next(lst["addr"] for lst in cluster.broker(broker_id)["listeners"] if lst["name"] == name)


def bootstrap(cluster: ChronikCluster, name: str) -> str:
    return ",".join(next(lst["addr"] for lst in b["listeners"] if lst["name"] == name) for b in cluster.brokers)


def ctl_acl(cluster: ChronikCluster, verb: str, *args: str) -> None:
    cluster.ctl("acl", verb, *args)


def bootstrap_security(cluster: ChronikCluster, users: dict[str, tuple[str, int]]) -> None:
    """The documented bootstrap: ANONYMOUS may ALTER the cluster for as long as the users are created."""
    cluster_acl = ["--resource-type", "cluster", "--resource-name", "kafka-cluster", "--pattern-type", "literal",
                   "--principal", "User:ANONYMOUS", "--permission", "allow"]
    ctl_acl(cluster, "create", *cluster_acl, "--operation", "cluster-action")
    ctl_acl(cluster, "create", "--resource-type", "topic", "--resource-name", "*", "--pattern-type", "literal",
            "--principal", "User:ANONYMOUS", "--permission", "allow", "--operation", "describe")
    ctl_acl(cluster, "create", *cluster_acl, "--operation", "alter")
    anonymous = AdminClient({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap(cluster, "PLAINTEXT")})
    set_users(anonymous, users)
    ctl_acl(cluster, "delete", *cluster_acl, "--operation", "alter")


def set_users(admin: AdminClient, users: dict[str, tuple[str, int]]) -> None:
    """{user: (password, mechanism)} as SCRAM credentials (mechanism: ScramMechanism.SCRAM_SHA_256/512)."""
    upserts = [UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, 4096), password.encode())
               for user, (password, mechanism) in users.items()]
    for future in admin.alter_user_scram_credentials(upserts, request_timeout=30).values():
        future.result(timeout=30)


def scram_conf(cluster: ChronikCluster, user: str, password: str, mechanism: str = "SCRAM-SHA-512",
               protocol: str = "SASL_SSL", pki: Path | None = None) -> dict:
    conf = {**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap(cluster, protocol), "security.protocol": protocol,
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password}
    if protocol == "SASL_SSL":
        conf["ssl.ca.location"] = str(pki / "ca.pem")
    return conf


@pytest.fixture(scope="module")
def secured(module_cluster_factory, pki) -> ChronikCluster:
    cluster = module_cluster_factory(
        controllers=1, brokers=2, listeners=LISTENERS,
        broker_args=["--authorizer=standard", "--super-users=User:admin", *tls_args(pki),
                     "--ssl-client-auth=required",
                     "--ssl-principal-mapping-rules=RULE:^CN=(svc-[a-z]+),O=acme$/$1/,DEFAULT",
                     "--sasl-enabled-mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN"])
    bootstrap_security(cluster, {ADMIN: (ADMIN_PASSWORD, ScramMechanism.SCRAM_SHA_512)})
    return cluster


@pytest.fixture(scope="module")
def admin(secured, pki) -> AdminClient:
    client = AdminClient(scram_conf(secured, ADMIN, ADMIN_PASSWORD, pki=pki))
    set_users(client, {ALICE: (ALICE_PASSWORD, ScramMechanism.SCRAM_SHA_512),
                       BOB: (BOB_PASSWORD, ScramMechanism.SCRAM_SHA_256)})
    return client


def allow(admin: AdminClient, principal: str, topic_prefix: str, group: str | None = None,
          operations=(AclOperation.READ, AclOperation.WRITE)) -> None:
    bindings = [AclBinding(ResourceType.TOPIC, topic_prefix, ResourcePatternType.PREFIXED, principal, "*", op,
                           AclPermissionType.ALLOW) for op in operations]
    if group:
        bindings.append(AclBinding(ResourceType.GROUP, group, ResourcePatternType.LITERAL, principal, "*",
                                   AclOperation.READ, AclPermissionType.ALLOW))
    for future in admin.create_acls(bindings, request_timeout=30).values():
        future.result(timeout=30)


def ck_produce_error(conf: dict, topic: str) -> int | None:
    """One record through a fresh producer: its delivery error code, or None."""
    producer = ck.Producer({**conf, "acks": "all", "message.timeout.ms": 8000})
    errors: list[int | None] = []
    producer.produce(topic, value=b"probe", on_delivery=lambda err, msg: errors.append(
        None if err is None else err.code()))
    producer.flush(15)
    assert errors, f"no delivery report for {topic}"
    return errors[0]


def broker_logs(cluster: ChronikCluster) -> str:
    return "\n".join(Path(n["log_file"]).read_text(errors="replace")
                     for n in cluster.status()["nodes"] if n["kind"] == "broker")


# ----- clients -----

def test_confluent_scram_sha512_over_sasl_ssl(secured, admin, pki, topic_name):
    allowed, denied = f"{topic_name}-ok", f"{topic_name}-no"
    for t in (allowed, denied):
        secured.create_topic(t, partitions=2, replication_factor=2)
    group = unique_group()
    allow(admin, f"User:{ALICE}", allowed, group)
    conf = scram_conf(secured, ALICE, ALICE_PASSWORD, pki=pki)
    delivered = ck_produce("", allowed, [Rec(value=b"v%d" % i) for i in range(50)], config=conf)
    got = ck_consume("", {(allowed, p): 0 for p in range(2)}, 50, config={**conf, "group.id": group})
    assert sorted(c.value for c in got) == sorted(d.rec.value for d in delivered)
    # Once authenticated, frames are no longer held to the 512 KiB of the SASL exchange.
    ck_produce("", allowed, [Rec(value=b"x" * 700_000, partition=0)], config=conf)
    assert ck_produce_error(conf, denied) == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_kafka_python_plain_over_sasl_plaintext(secured, admin, topic_name):
    allowed, denied = f"{topic_name}-ok", f"{topic_name}-no"
    for t in (allowed, denied):
        secured.create_topic(t, partitions=1, replication_factor=2)
    allow(admin, f"User:{BOB}", allowed)
    conf = dict(bootstrap_servers=bootstrap(secured, "SASL_PLAINTEXT"), security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="PLAIN", sasl_plain_username=BOB, sasl_plain_password=BOB_PASSWORD,
                request_timeout_ms=15000)
    producer = kp.KafkaProducer(acks="all", max_block_ms=20000, **conf)
    try:
        for i in range(20):
            producer.send(allowed, value=b"kp%d" % i).get(timeout=30)
        with pytest.raises(kp.errors.TopicAuthorizationFailedError):
            producer.send(denied, value=b"x").get(timeout=30)
    finally:
        producer.close(timeout=10)
    consumer = kp.KafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest", **conf)
    try:
        consumer.assign([kp.TopicPartition(allowed, 0)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 20 and time.monotonic() < deadline:
            got += [r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs]
        assert sorted(got) == sorted(b"kp%d" % i for i in range(20))
    finally:
        consumer.close()


def test_kafka_python_over_ssl_acts_as_its_certificates_subject(secured, admin, pki, topic_name):
    allowed, denied = f"{topic_name}-ok", f"{topic_name}-no"
    for t in (allowed, denied):
        secured.create_topic(t, partitions=1, replication_factor=2)
    allow(admin, f"User:{ALICE_DN}", allowed)
    conf = dict(bootstrap_servers=bootstrap(secured, "SSL"), security_protocol="SSL",
                ssl_cafile=str(pki / "ca.pem"), ssl_certfile=str(pki / "alice.pem"),
                ssl_keyfile=str(pki / "alice.key"), request_timeout_ms=15000)
    producer = kp.KafkaProducer(acks="all", max_block_ms=20000, **conf)
    try:
        for i in range(10):
            producer.send(allowed, value=b"tls%d" % i).get(timeout=30)
        with pytest.raises(kp.errors.TopicAuthorizationFailedError):
            producer.send(denied, value=b"x").get(timeout=30)
    finally:
        producer.close(timeout=10)
    consumer = kp.KafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest", **conf)
    try:
        consumer.assign([kp.TopicPartition(allowed, 0)])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < 10 and time.monotonic() < deadline:
            got += [r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs]
        assert sorted(got) == sorted(b"tls%d" % i for i in range(10))
    finally:
        consumer.close()


def test_kcat_over_sasl_ssl(kcat, secured, admin, pki, topic_name):
    secured.create_topic(topic_name, partitions=1, replication_factor=2)
    allow(admin, f"User:{ALICE}", topic_name)
    sec = ["-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512",
           "-X", f"sasl.username={ALICE}", "-X", f"sasl.password={ALICE_PASSWORD}",
           "-X", f"ssl.ca.location={pki / 'ca.pem'}", "-X", "api.version.request=true"]
    b = bootstrap(secured, "SASL_SSL")
    subprocess.run([kcat, "-b", b, *sec, "-P", "-t", topic_name, "-p", "0"], input="one\ntwo\nthree\n",
                   text=True, check=True, capture_output=True, timeout=60)
    out = subprocess.run([kcat, "-b", b, *sec, "-C", "-t", topic_name, "-o", "beginning", "-e", "-q"],
                         text=True, check=True, capture_output=True, timeout=60).stdout
    assert out.split() == ["one", "two", "three"]
    denied = subprocess.run([kcat, "-b", b, *sec, "-P", "-t", f"{topic_name}-no", "-p", "0"], input="x\n",
                            text=True, capture_output=True, timeout=60)
    assert denied.returncode != 0 or "authoriz" in denied.stderr.lower(), denied.stderr


def run_java_with(classpath: str, props: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["java", f"-Dchronik.client.properties={props}", "-cp", classpath, "ChronikJavaClient",
                           *args], capture_output=True, text=True, timeout=150)


def test_java_client_with_scram_over_tls_and_with_mtls(java_classpath, secured, admin, pki, topic_name,
                                                       tmp_path):
    scram_topic, mtls_topic = f"{topic_name}-scram", f"{topic_name}-mtls"
    for t in (scram_topic, mtls_topic):
        secured.create_topic(t, partitions=1, replication_factor=2)
    group = unique_group()
    allow(admin, f"User:{ALICE}", scram_topic, group)
    allow(admin, "User:svc-java", mtls_topic, group)  # from CN=svc-java,O=acme by the mapping rule
    scram = tmp_path / "scram.properties"
    scram.write_text("security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
                     "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
                     f'username="{ALICE}" password="{ALICE_PASSWORD}";\n'
                     f"ssl.truststore.type=PEM\nssl.truststore.location={pki / 'ca.pem'}\n")
    mtls = tmp_path / "mtls.properties"
    mtls.write_text(f"security.protocol=SSL\nssl.truststore.type=PEM\nssl.truststore.location={pki / 'ca.pem'}\n"
                    f"ssl.keystore.type=PEM\nssl.keystore.location={pki / 'svc.keystore.pem'}\n")
    for props, protocol, topic, other in [(scram, "SASL_SSL", scram_topic, mtls_topic),
                                          (mtls, "SSL", mtls_topic, scram_topic)]:
        b = bootstrap(secured, protocol)
        produced = run_java_with(java_classpath, props, "produce", b, topic, "20")
        assert produced.returncode == 0, produced.stderr[-3000:]
        consumed = run_java_with(java_classpath, props, "consume", b, topic, group, "20")
        assert consumed.returncode == 0, consumed.stderr[-3000:]
        values = [json.loads(line).get("value") for line in consumed.stdout.splitlines() if line.startswith("{")]
        assert sorted(v for v in values if v) == sorted(f"java-{i}" for i in range(20)), protocol
        denied = run_java_with(java_classpath, props, "produce", b, other, "1")
        assert denied.returncode != 0 and "TopicAuthorizationException" in denied.stderr, denied.stderr[-3000:]


# ----- bad input -----

def sasl_handshake(conn: kafka_wire.KafkaConnection, mechanism: str) -> tuple[int, list[str]]:
    raw = mechanism.encode()
    r = kafka_wire._Reader(conn.request(17, 1, struct.pack(">h", len(raw)) + raw))
    return r.int16(), r.array(r.string)


def sasl_authenticate(conn: kafka_wire.KafkaConnection, token: bytes) -> tuple[int, str | None, bytes]:
    r = kafka_wire._Reader(conn.request(36, 1, struct.pack(">i", len(token)) + token))
    error, message = r.int16(), r.string()
    return error, message, r.take(max(r.int32(), 0))


def closed(conn: kafka_wire.KafkaConnection) -> bool:
    try:
        conn.request(18, 0)
        return False
    except (ConnectionError, OSError, struct.error, ValueError):
        return True


def test_bad_sasl_input_fails_only_that_connection(secured, admin, pki):
    addr = listener_addr(secured, 1, "SASL_PLAINTEXT")
    # Unknown mechanism: UNSUPPORTED_SASL_MECHANISM listing the enabled ones, then closed.
    with kafka_wire.KafkaConnection(addr) as conn:
        error, mechanisms = sasl_handshake(conn, "GSSAPI")
        assert (error, mechanisms) == (33, ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"])
        assert closed(conn)
    # Garbage during the SCRAM exchange: SASL_AUTHENTICATION_FAILED, then closed.
    with kafka_wire.KafkaConnection(addr) as conn:
        assert sasl_handshake(conn, "SCRAM-SHA-512")[0] == 0
        error, message, _ = sasl_authenticate(conn, b"\x00\xffgarbage,,=")
        assert error == 58 and message.startswith(SCRAM_FAILED), message
        assert closed(conn)
    # Before authentication frames are limited to 512 KiB (Kafka's sasl.server.max.receive.size).
    with kafka_wire.KafkaConnection(addr) as conn:
        conn.send_raw(struct.pack(">i", 600_000))
        assert closed(conn)
    # A request other than ApiVersions/SASL before authentication closes the connection unanswered.
    with kafka_wire.KafkaConnection(addr) as conn:
        with pytest.raises((ConnectionError, OSError)):
            conn.request(3, 4, struct.pack(">i?", 0, False))  # Metadata v4, no topics
    # Wrong password and unknown user: the same error, through librdkafka.
    messages = []
    for user, password in [(ALICE, "wrong-Password-9"), ("nobody", "wrong-Password-9")]:
        errors: list[str] = []
        conf = {**scram_conf(secured, user, password, pki=pki), "error_cb": lambda e: errors.append(str(e))}
        producer = ck.Producer(conf)
        wait_until(lambda: (producer.poll(0.2), any("Authentication failed" in e for e in errors))[1], 20,
                   f"an authentication error for {user}")
        messages.append(next(e for e in errors if "Authentication failed" in e))
        producer.flush(0)
    # The same answer for a wrong password and an unknown user: nothing tells whether a user exists.
    reasons = {m[m.index("Authentication failed"):].split(" (after")[0] for m in messages}
    assert reasons == {f"{SCRAM_FAILED} SCRAM-SHA-512"}, messages
    # A plaintext client on the TLS port: that connection is dropped.
    with kafka_wire.KafkaConnection(listener_addr(secured, 1, "SASL_SSL")) as conn:
        assert closed(conn)
    # An untrusted or expired client certificate on the SSL listener (client auth required) fails the
    # handshake.
    host, port = listener_addr(secured, 1, "SSL").rsplit(":", 1)
    for bad in ("mallory", "expired"):
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        context.load_cert_chain(str(pki / f"{bad}.pem"), str(pki / f"{bad}.key"))
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            with socket.create_connection((host, int(port)), timeout=10) as raw:
                with context.wrap_socket(raw, server_hostname="localhost") as tls:
                    tls.sendall(kafka_wire.request_frame(18, 0, 1, b""))
                    assert tls.recv(4), f"the broker answered a client with the {bad} certificate"
    # No certificate at all is refused too.
    bare = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with bare.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(kafka_wire.request_frame(18, 0, 1, b""))
                assert tls.recv(4)
    # Everyone else is unaffected: a good client works on every listener.
    md = AdminClient(scram_conf(secured, ALICE, ALICE_PASSWORD, pki=pki)).list_topics(timeout=20)
    assert len(md.brokers) == 2
    logs = broker_logs(secured)
    assert "TLS handshake failed" in logs
    assert "Expired" in logs or "expired" in logs, "the expired certificate is named as the reason"
    assert "SASL authentication with SCRAM-SHA-512 failed" in logs
    assert "frame of 600000 bytes exceeds the maximum of 524288" in logs
    for password in PASSWORDS:
        assert password not in logs, "a password reached a broker log"


def test_a_v0_handshake_is_followed_by_raw_tokens(secured, admin):
    """Clients before Kafka 1.0 send SaslHandshake v0 and then bare, size-prefixed SASL tokens."""
    with kafka_wire.KafkaConnection(listener_addr(secured, 1, "SASL_PLAINTEXT")) as conn:
        raw = b"PLAIN"
        r = kafka_wire._Reader(conn.request(17, 0, struct.pack(">h", len(raw)) + raw))
        assert r.int16() == 0
        token = b"\0" + BOB.encode() + b"\0" + BOB_PASSWORD.encode()
        conn.send_raw(struct.pack(">i", len(token)) + token)
        assert conn._recv_exact(4) == b"\0\0\0\0", "an empty raw token answers PLAIN"
        r = kafka_wire._Reader(conn.request(3, 4, struct.pack(">i?", 0, False)))  # Metadata v4, no topics
        r.int32()  # throttle
        assert len(r.array(lambda: (r.int32(), r.string(), r.int32(), r.string()))) == 2
    with kafka_wire.KafkaConnection(listener_addr(secured, 1, "SASL_PLAINTEXT")) as conn:
        conn.request(17, 0, struct.pack(">h", len(raw)) + raw)
        token = b"\0" + BOB.encode() + b"\0wrong-Password-9"
        conn.send_raw(struct.pack(">i", len(token)) + token)
        with pytest.raises((ConnectionError, OSError)):
            conn._recv_exact(4)  # v0 has no way to say why: the connection is closed


def test_an_acl_change_applies_on_every_broker_without_restart(secured, admin, pki, topic_name):
    secured.create_topic(topic_name, partitions=2, replication_factor=1)
    leaders = secured.leaders(topic_name)
    assert sorted(set(leaders.values())) == [1, 2], leaders
    conf = scram_conf(secured, BOB, BOB_PASSWORD, mechanism="SCRAM-SHA-256", pki=pki)

    def produce_to(partition: int) -> int | None:
        producer = ck.Producer({**conf, "acks": "all", "message.timeout.ms": 8000})
        errors: list[int | None] = []
        producer.produce(topic_name, value=b"p", partition=partition,
                         on_delivery=lambda err, msg: errors.append(None if err is None else err.code()))
        producer.flush(15)
        return errors[0] if errors else -1

    assert [produce_to(p) for p in (0, 1)] == [ck.KafkaError.TOPIC_AUTHORIZATION_FAILED] * 2
    allow(admin, f"User:{BOB}", topic_name, operations=(AclOperation.WRITE,))
    wait_until(lambda: [produce_to(p) for p in (0, 1)] == [None, None], 30,
               "both brokers (each leading one partition) to allow the write")


# ----- KIP-368 re-authentication -----

def test_a_deleted_users_connection_fails_at_its_next_reauthentication(cluster_factory, pki, topic_name):
    cluster = cluster_factory(controllers=1, brokers=1, listeners=["PLAINTEXT", "SASL_SSL"],
                              broker_args=["--authorizer=standard", "--super-users=User:admin", *tls_args(pki),
                                           "--sasl-enabled-mechanisms=SCRAM-SHA-512",
                                           "--connections-max-reauth-ms=3000"])
    bootstrap_security(cluster, {ADMIN: (ADMIN_PASSWORD, ScramMechanism.SCRAM_SHA_512)})
    admin_client = AdminClient(scram_conf(cluster, ADMIN, ADMIN_PASSWORD, pki=pki))
    set_users(admin_client, {ALICE: (ALICE_PASSWORD, ScramMechanism.SCRAM_SHA_512),
                             BOB: (BOB_PASSWORD, ScramMechanism.SCRAM_SHA_512)})
    cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    for user in (ALICE, BOB):
        allow(admin_client, f"User:{user}", topic_name)

    class Writer:
        """A producer sending one record every 200 ms on one long-lived connection."""

        def __init__(self, user: str, password: str):
            self.errors: list[str] = []
            self.acked = 0
            self.producer = ck.Producer({**scram_conf(cluster, user, password, pki=pki), "acks": "all",
                                         "message.timeout.ms": 5000, "error_cb": lambda e: self.errors.append(str(e))})
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self.run, daemon=True)
            self.thread.start()

        def on_delivery(self, err, msg):
            if err is None:
                self.acked += 1
            else:
                self.errors.append(str(err))

        def run(self):
            while not self.stop.is_set():
                self.producer.produce(topic_name, value=b"r", on_delivery=self.on_delivery)
                self.producer.poll(0.2)

        def close(self):
            self.stop.set()
            self.thread.join(10)
            self.producer.flush(5)

    alice, bob = Writer(ALICE, ALICE_PASSWORD), Writer(BOB, BOB_PASSWORD)
    try:
        # Both outlive several sessions (3 s each): re-authentication keeps them going.
        wait_until(lambda: alice.acked > 20 and bob.acked > 20, 30, "both writers acknowledged")
        start = bob.acked
        wait_until(lambda: bob.acked > start + 25, 30, "bob writing through at least one re-authentication")
        assert not [e for e in alice.errors + bob.errors if "Authentication" in e], alice.errors + bob.errors
        for future in admin_client.alter_user_scram_credentials(
                [UserScramCredentialDeletion(ALICE, ScramMechanism.SCRAM_SHA_512)], request_timeout=30).values():
            future.result(timeout=30)
        wait_until(lambda: any("Authentication failed during" in e for e in alice.errors), 30,
                   "alice's connection to fail at its next re-authentication")
        acked_bob = bob.acked
        wait_until(lambda: bob.acked > acked_bob + 15, 30, "bob to keep writing")
        assert not [e for e in bob.errors if "Authentication" in e], bob.errors
    finally:
        alice.close()
        bob.close()
    logs = broker_logs(cluster)
    # Refused while re-authenticating its open connection (not only when reconnecting), and no
    # connection was closed for letting its session expire: librdkafka re-authenticates in time.
    assert "SASL re-authentication with SCRAM-SHA-512 failed: unknown user 'alice'" in logs
    assert "SASL session of User:bob expired" not in logs
    for password in PASSWORDS:
        assert password not in logs
