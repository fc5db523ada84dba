"""ACLs (KIP-801) and the standard authorizer, with real clients against real processes.

- Without `--authorizer` the ACL APIs answer SECURITY_DISABLED (confluent-kafka) and nothing is checked.
- With `--authorizer standard --allow-everyone-if-no-acl-found` (one module cluster: 3 controllers,
  3 brokers): confluent-kafka's AdminClient, the Java Admin client and kafka-python create, describe
  (LITERAL, PREFIXED, MATCH, ANY filters) and delete ACLs; a DENY WRITE for `User:ANONYMOUS` (every connection until SASL)
  on a topic fails a producer with TOPIC_AUTHORIZATION_FAILED while another topic takes writes, and
  deleting it lets writes through again; a DENY READ on a group fails a consumer with
  GROUP_AUTHORIZATION_FAILED; acks=all replication on an RF 3 topic keeps working (follower fetches
  are not subject to the ACLs); ACLs survive a kill of the active controller and a broker restart,
  read back from that broker with a raw DescribeAcls.
- `chronikctl acl create|list|delete` and its error cases.
- A strict authorizer (no allow-everyone) denies until `chronikctl` grants; super users pass every check.

Every test removes the ACLs it made, so the module cluster's other tests see only their own.
"""

from __future__ import annotations

import struct
import subprocess
import time

import confluent_kafka as ck
import pytest
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   ResourcePatternType, ResourceType)

import kafka_wire
from chronik_cluster import ChronikCluster, chronikctl_path, run_chronikctl, wait_until
from clients import LIBRDKAFKA_BASE, Rec, ck_consume, ck_produce, unique_group
from test_java_client import java_classpath, run_java  # noqa: F401 - the fixture is used by name

pytestmark = pytest.mark.admin

ANONYMOUS = "User:ANONYMOUS"
AUTHORIZER_ARGS = ["--authorizer=standard", "--allow-everyone-if-no-acl-found"]
API_DESCRIBE_ACLS = 29


@pytest.fixture(scope="module")
def secured(module_cluster_factory) -> ChronikCluster:
    """3 controllers (so the active one can be killed) and 3 brokers with the standard authorizer."""
    return module_cluster_factory(controllers=3, brokers=3, broker_args=AUTHORIZER_ARGS)


def admin_for(bootstrap: str) -> AdminClient:
    return AdminClient({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap})


def binding(resource_type, name, pattern, principal, operation, permission, host="*") -> AclBinding:
    return AclBinding(resource_type, name, pattern, principal, host, operation, permission)


def any_filter(resource_type=ResourceType.ANY, name=None, pattern=ResourcePatternType.ANY,
               principal=None) -> AclBindingFilter:
    return AclBindingFilter(resource_type, name, pattern, principal, None, AclOperation.ANY,
                            AclPermissionType.ANY)


def as_tuple(b: AclBinding) -> tuple:
    return (b.restype.name, b.name, b.resource_pattern_type.name, b.principal, b.host, b.operation.name,
            b.permission_type.name)


def error_code(future, timeout: float = 30) -> int | None:
    try:
        future.result(timeout=timeout)
        return None
    except ck.KafkaException as e:
        return e.args[0].code()


def create(admin: AdminClient, bindings: list[AclBinding]) -> None:
    for b, future in admin.create_acls(bindings, request_timeout=30).items():
        future.result(timeout=30)


def delete(admin: AdminClient, filters: list[AclBindingFilter]) -> list[AclBinding]:
    deleted = []
    for future in admin.delete_acls(filters, request_timeout=30).values():
        deleted += future.result(timeout=30)
    return deleted


def produce_error(bootstrap: str, topic: str) -> int | None:
    """Produces one record with a fresh producer; the delivery error code, or None."""
    producer = ck.Producer({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap, "acks": "all",
                            "message.timeout.ms": 8000, "topic.metadata.refresh.interval.ms": 500})
    errors: list[int | None] = []
    producer.produce(topic, value=b"probe", on_delivery=lambda err, msg: errors.append(
        None if err is None else err.code()))
    producer.flush(15)
    assert errors, f"no delivery report for {topic}"
    return errors[0]


def describe_acls_raw(address: str, resource_type: int, name: str | None) -> tuple[int, list[tuple]]:
    """DescribeAcls v1 sent to one broker (MATCH pattern, any principal/host/operation/permission): its
    error code and [(resource type, name, pattern type, principal, host, operation, permission)]."""
    def string(s: str | None) -> bytes:
        if s is None:
            return struct.pack(">h", -1)
        raw = s.encode()
        return struct.pack(">h", len(raw)) + raw
    body = (struct.pack(">b", resource_type) + string(name) + struct.pack(">b", 2)  # MATCH
            + string(None) + string(None) + struct.pack(">bb", 1, 1))  # ANY operation, ANY permission
    with kafka_wire.KafkaConnection(address) as conn:
        r = kafka_wire._Reader(conn.request(API_DESCRIBE_ACLS, 1, body))
    r.int32()  # throttle
    error, _message = r.int16(), r.string()
    out = []

    def resource():
        rtype, rname, pattern = r.int8(), r.string(), r.int8()
        for principal, host, op, perm in r.array(lambda: (r.string(), r.string(), r.int8(), r.int8())):
            out.append((rtype, rname, pattern, principal, host, op, perm))
    r.array(resource)
    return error, out


# ----- without an authorizer -----

def test_without_an_authorizer_the_acl_apis_answer_security_disabled(shared_cluster, topic_name):
    admin = admin_for(shared_cluster.bootstrap_servers)
    acl = binding(ResourceType.TOPIC, topic_name, ResourcePatternType.LITERAL, ANONYMOUS, AclOperation.WRITE,
                  AclPermissionType.DENY)
    created = admin.create_acls([acl], request_timeout=30)
    assert error_code(created[acl]) == ck.KafkaError.SECURITY_DISABLED
    # librdkafka drops DescribeAcls' top-level error code (its rd_kafka_DescribeAclsResponse_parse returns
    # no error whatever the code), so it sees an empty list; the code itself is checked on the wire.
    assert admin.describe_acls(any_filter(), request_timeout=30).result(timeout=30) == []
    for broker in shared_cluster.brokers:
        assert describe_acls_raw(broker["addr"], 1, None) == (ck.KafkaError.SECURITY_DISABLED, [])
    deleted = admin.delete_acls([any_filter()], request_timeout=30)
    assert all(error_code(f) == ck.KafkaError.SECURITY_DISABLED for f in deleted.values())
    # Nothing is enforced: the topic takes writes.
    shared_cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    ck_produce(shared_cluster.bootstrap_servers, topic_name, [Rec(value=b"v")])


# ----- with the standard authorizer -----

def test_confluent_admin_creates_describes_and_deletes_acls(secured, topic_name):
    admin = admin_for(secured.bootstrap_servers)
    prefix = topic_name[:10]
    literal = binding(ResourceType.TOPIC, topic_name, ResourcePatternType.LITERAL, "User:alice", AclOperation.READ,
                      AclPermissionType.ALLOW)
    prefixed = binding(ResourceType.TOPIC, prefix, ResourcePatternType.PREFIXED, "User:bob", AclOperation.WRITE,
                       AclPermissionType.DENY)
    wildcard = binding(ResourceType.TOPIC, "*", ResourcePatternType.LITERAL, "User:carol", AclOperation.DESCRIBE,
                       AclPermissionType.ALLOW, host="127.0.0.1")
    other = binding(ResourceType.TOPIC, topic_name + "-other", ResourcePatternType.LITERAL, "User:alice",
                    AclOperation.ALL, AclPermissionType.ALLOW)
    group = binding(ResourceType.GROUP, topic_name, ResourcePatternType.LITERAL, "User:alice", AclOperation.READ,
                    AclPermissionType.ALLOW)
    try:
        create(admin, [literal, prefixed, wildcard, other, group])
        create(admin, [literal])  # idempotent
        by_pattern = {}
        for pattern in (ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED, ResourcePatternType.MATCH,
                        ResourcePatternType.ANY):
            name = prefix if pattern == ResourcePatternType.PREFIXED else topic_name
            found = admin.describe_acls(any_filter(ResourceType.TOPIC, name, pattern),
                                        request_timeout=30).result(timeout=30)
            by_pattern[pattern.name] = sorted(as_tuple(b) for b in found)
        assert by_pattern["LITERAL"] == [as_tuple(literal)]
        assert by_pattern["PREFIXED"] == [as_tuple(prefixed)]
        assert by_pattern["MATCH"] == sorted(as_tuple(b) for b in (literal, prefixed, wildcard))
        assert by_pattern["ANY"] == [as_tuple(literal)]
        everything = admin.describe_acls(any_filter(), request_timeout=30).result(timeout=30)
        assert {as_tuple(b) for b in (literal, prefixed, wildcard, other, group)} <= {as_tuple(b) for b in everything}
        assert len([b for b in everything if as_tuple(b) == as_tuple(literal)]) == 1, "a duplicate was stored"

        # Bindings Kafka refuses: a principal without a type, an empty resource name.
        bad = binding(ResourceType.TOPIC, topic_name, ResourcePatternType.LITERAL, "alice", AclOperation.READ,
                      AclPermissionType.ALLOW)
        assert error_code(admin.create_acls([bad], request_timeout=30)[bad]) == ck.KafkaError.INVALID_REQUEST
        unnamed = binding(ResourceType.TOPIC, "", ResourcePatternType.LITERAL, "User:alice", AclOperation.READ,
                          AclPermissionType.ALLOW)
        assert error_code(admin.create_acls([unnamed], request_timeout=30)[unnamed]) == \
            ck.KafkaError.INVALID_REQUEST

        # DeleteAcls returns what each filter matched and deleted.
        deleted = delete(admin, [any_filter(principal="User:alice")])
        assert sorted(as_tuple(b) for b in deleted) == sorted(as_tuple(b) for b in (literal, other, group))
        left = admin.describe_acls(any_filter(ResourceType.TOPIC, topic_name, ResourcePatternType.MATCH),
                                   request_timeout=30).result(timeout=30)
        assert sorted(as_tuple(b) for b in left) == sorted(as_tuple(b) for b in (prefixed, wildcard))
    finally:
        delete(admin, [any_filter(principal=p) for p in ("User:alice", "User:bob", "User:carol")])


def test_java_admin_creates_describes_and_deletes_acls(java_classpath, secured, topic_name):  # noqa: F811
    events = run_java(java_classpath, "acls", secured.bootstrap_servers, topic_name)
    calls = {e["call"]: e["error"] for e in events if "call" in e}
    assert calls == {
        "createAcls": None,
        "createAcls-again": None,
        "createAcls-no-colon": "InvalidRequestException",
        "createAcls-bad-cluster": "InvalidRequestException",
    }, events
    listed = {k: v for e in events for k, v in e.items() if k != "call"}
    read = f"User:alice|*|READ|ALLOW|TOPIC|{topic_name}|LITERAL"
    deny = f"User:bob|*|WRITE|DENY|TOPIC|{topic_name[:6]}|PREFIXED"
    every = "User:carol|10.0.0.1|DESCRIBE|ALLOW|TOPIC|*|LITERAL"
    group = f"User:alice|*|READ|ALLOW|GROUP|{topic_name}|LITERAL"
    assert listed["describe-LITERAL"] == [read], listed
    assert listed["describe-PREFIXED"] == [deny], listed
    assert listed["describe-MATCH"] == sorted([read, deny, every]), listed
    assert listed["describe-ANY"] == [read], listed
    assert {read, deny, every, group} <= set(listed["describe-all"]), listed
    assert listed["deleted"] == sorted([read, group]), listed
    assert read not in listed["describe-after-delete"] and deny in listed["describe-after-delete"], listed
    assert {deny, every} <= set(listed["deleted-rest"]), listed


def test_a_deny_write_acl_fails_producers_on_its_topic_only(secured, topic_name):
    bootstrap = secured.bootstrap_servers
    other = topic_name + "-free"
    secured.create_topic(topic_name, partitions=3, replication_factor=3)
    secured.create_topic(other, partitions=3, replication_factor=3)
    assert produce_error(bootstrap, topic_name) is None
    admin = admin_for(bootstrap)
    deny = binding(ResourceType.TOPIC, topic_name, ResourcePatternType.LITERAL, ANONYMOUS, AclOperation.WRITE,
                   AclPermissionType.DENY)
    try:
        create(admin, [deny])
        # Every broker applies the ACL once its image has it; the one answering CreateAcls already does.
        wait_until(lambda: produce_error(bootstrap, topic_name) == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED, 30,
                   f"producing to {topic_name} to fail with TOPIC_AUTHORIZATION_FAILED")
        assert produce_error(bootstrap, other) is None, "a topic without ACLs must take writes"
        ck_produce(bootstrap, other, [Rec(value=b"x%d" % i) for i in range(100)])
    finally:
        delete(admin, [any_filter(ResourceType.TOPIC, topic_name, ResourcePatternType.LITERAL)])
    wait_until(lambda: produce_error(bootstrap, topic_name) is None, 30,
               f"producing to {topic_name} to work again once the ACL is deleted")


def test_a_deny_read_acl_on_a_group_fails_its_consumer(secured, topic_name):
    bootstrap = secured.bootstrap_servers
    secured.create_topic(topic_name, partitions=1, replication_factor=3)
    ck_produce(bootstrap, topic_name, [Rec(value=b"v")])
    group = unique_group()
    admin = admin_for(bootstrap)
    deny = binding(ResourceType.GROUP, group, ResourcePatternType.LITERAL, ANONYMOUS, AclOperation.READ,
                   AclPermissionType.DENY)
    create(admin, [deny])
    consumer = ck.Consumer({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap, "group.id": group,
                            "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic_name])
        deadline = time.monotonic() + 30
        seen = []
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                seen.append(msg.error().code())
                if msg.error().code() == ck.KafkaError.GROUP_AUTHORIZATION_FAILED:
                    break
            else:
                pytest.fail(f"consumer of group {group} read a record despite DENY READ")
        assert ck.KafkaError.GROUP_AUTHORIZATION_FAILED in seen, f"errors seen: {seen}"
    finally:
        consumer.close()
        delete(admin, [any_filter(ResourceType.GROUP, group, ResourcePatternType.LITERAL)])
    # Each broker judges from its own image: wait until every one has applied the deletion (the one
    # answering DeleteAcls may be ahead of the one FindCoordinator goes to).
    wait_until(lambda: all(describe_acls_raw(secured.broker_addr(b), 3, group)[1] == []  # 3: GROUP
                           for b in secured.running_broker_ids()), 30,
               f"every broker to drop the ACL on group {group}")
    # Without the ACL the same group consumes.
    got = ck_consume(bootstrap, {(topic_name, 0): 0}, 1, config={"group.id": group})
    assert got[0].value == b"v"


def test_acks_all_replication_keeps_working_with_the_authorizer(secured, topic_name):
    """Followers fetch as `User:ANONYMOUS` over the PLAINTEXT inter-broker listener and need
    CLUSTER_ACTION on the cluster, which `--allow-everyone-if-no-acl-found` gives while no ACL names the
    cluster (docs/security.md); an ACL on the topic that denies clients must not stop replication, and
    acks=all writes need every ISR member's fetch."""
    bootstrap = secured.bootstrap_servers
    secured.create_topic(topic_name, partitions=3, replication_factor=3, configs={"min.insync.replicas": "3"})
    admin = admin_for(bootstrap)
    # Denies ANONYMOUS READ on the topic: clients cannot consume it, followers still replicate it.
    deny_read = binding(ResourceType.TOPIC, topic_name, ResourcePatternType.LITERAL, ANONYMOUS, AclOperation.READ,
                        AclPermissionType.DENY)
    allow_write = binding(ResourceType.TOPIC, topic_name, ResourcePatternType.LITERAL, ANONYMOUS,
                          AclOperation.WRITE, AclPermissionType.ALLOW)
    try:
        create(admin, [deny_read, allow_write])
        delivered = ck_produce(bootstrap, topic_name, [Rec(value=b"r%d" % i) for i in range(300)],
                               config={"acks": "all", "enable.idempotence": True})
        assert len(delivered) == 300
        described = secured.describe_topic(topic_name)
        for p in described["partitions"]:
            assert sorted(p["isr"]) == [1, 2, 3], described
        with pytest.raises(AssertionError, match="TOPIC_AUTHORIZATION_FAILED|Topic authorization failed"):
            ck_consume(bootstrap, {(topic_name, 0): 0}, 1, timeout=15)
    finally:
        delete(admin, [any_filter(ResourceType.TOPIC, topic_name, ResourcePatternType.LITERAL)])
    consumed = ck_consume(bootstrap, {(topic_name, p): 0 for p in range(3)}, 300)
    assert sorted(c.value for c in consumed) == sorted(d.rec.value for d in delivered)


def active_controller(cluster: ChronikCluster) -> int:
    leaders = [c["node_id"] for c in cluster.ctl_json("cluster", "status")["controllers"]
               if c.get("role") == "leader"]
    assert len(leaders) == 1, f"not one active controller: {leaders}"
    return leaders[0]


@pytest.mark.timeout(240)
def test_acls_survive_a_controller_leader_kill_and_a_broker_restart(secured, topic_name):
    admin = admin_for(secured.bootstrap_servers)
    deny = binding(ResourceType.TOPIC, topic_name, ResourcePatternType.PREFIXED, ANONYMOUS, AclOperation.WRITE,
                   AclPermissionType.DENY)
    secured.create_topic(topic_name, partitions=3, replication_factor=3)
    create(admin, [deny])
    expected = (2, topic_name, 4, ANONYMOUS, "*", 4, 2)  # TOPIC, PREFIXED, WRITE, DENY
    try:
        killed = active_controller(secured)
        secured.local("kill", "controller", str(killed))
        new = wait_until(lambda: (lambda c: c if c not in (None, killed) else None)(
            active_controller_or_none(secured)), 30, "a new active controller")
        listed = secured.ctl_json("acl", "list", "--resource-type", "topic", "--resource-name", topic_name)
        assert [a["resource_name"] for a in listed["acls"]] == [topic_name], (new, listed)
        # A change after the failover is committed by the new leader.
        extra = binding(ResourceType.TOPIC, topic_name + "-x", ResourcePatternType.LITERAL, ANONYMOUS,
                        AclOperation.READ, AclPermissionType.DENY)
        create(admin, [extra])

        secured.stop_broker(1)
        secured.start_broker(1)
        address = secured.broker_addr(1)
        got = wait_until(lambda: describe_acls_raw(address, 2, topic_name)[1] or None, 30,
                         "broker 1 to answer DescribeAcls after its restart")
        assert got == [expected], got
        wait_until(lambda: produce_error(address, topic_name) == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED, 30,
                   "the restarted broker to enforce the ACL")
        secured.local("start", "controller", str(killed), timeout=120)
    finally:
        delete(admin, [any_filter(ResourceType.TOPIC, topic_name, ResourcePatternType.PREFIXED),
                       any_filter(ResourceType.TOPIC, topic_name + "-x", ResourcePatternType.LITERAL)])


def active_controller_or_none(cluster: ChronikCluster) -> int | None:
    try:
        return active_controller(cluster)
    except Exception:  # noqa: BLE001 - during an election there is none, or the status call fails
        return None


def test_chronikctl_acl_create_list_delete_and_errors(secured, topic_name):
    def ctl(*args: str):
        return run_chronikctl(["--controllers", secured.controllers, "acl", *args], 30)

    created = secured.ctl_json("acl", "create", "--principal", "User:dave", "--operation", "read",
                               "--permission", "allow", "--resource-type", "topic", "--resource-name", topic_name,
                               "--pattern-type", "prefixed")
    assert created == {"action": "created", "acls": [{
        "principal": "User:dave", "host": "*", "operation": "READ", "permission": "ALLOW",
        "resource_type": "TOPIC", "resource_name": topic_name, "pattern_type": "PREFIXED"}]}
    # Creating it again changes nothing.
    secured.ctl_json("acl", "create", "--principal", "User:dave", "--operation", "READ", "--permission", "ALLOW",
                     "--resource-type", "TOPIC", "--resource-name", topic_name, "--pattern-type", "PREFIXED")
    listed = secured.ctl_json("acl", "list", "--principal", "User:dave")
    assert len(listed["acls"]) == 1, listed
    # MATCH finds the prefixed ACL for a topic it covers.
    matched = secured.ctl_json("acl", "list", "--resource-type", "topic", "--resource-name", topic_name + "-sub",
                               "--pattern-type", "match")
    assert [a["principal"] for a in matched["acls"]] == ["User:dave"], matched
    table = ctl("list", "--principal", "User:dave").stdout
    assert "PRINCIPAL" in table and "User:dave" in table and "PREFIXED" in table, table
    # Brokers see what chronikctl created.
    admin = admin_for(secured.bootstrap_servers)  # kept alive until its future is done
    found = admin.describe_acls(any_filter(principal="User:dave"), request_timeout=30).result(timeout=30)
    assert [b.principal for b in found] == ["User:dave"]

    # Error cases: refused by the controller (non-zero exit, Kafka's error name), by clap, or by chronikctl.
    for args, expect in [
        (["create", "--principal", "dave", "--operation", "read", "--permission", "allow", "--resource-type",
          "topic", "--resource-name", topic_name], "no colon"),
        (["create", "--principal", "User:dave", "--operation", "read", "--permission", "allow",
          "--resource-type", "topic", "--resource-name", topic_name, "--pattern-type", "match"],
         "Invalid patternType MATCH"),
        (["create", "--principal", "User:dave", "--operation", "fly", "--permission", "allow",
          "--resource-type", "topic", "--resource-name", topic_name], "'fly' is not one of"),
        (["create", "--principal", "User:dave", "--operation", "any", "--permission", "allow",
          "--resource-type", "topic", "--resource-name", topic_name], "'any' is not one of"),
        (["delete"], "needs at least one"),
    ]:
        done = ctl_raw(secured, args)
        assert done.returncode != 0, f"{args} succeeded: {done.stdout}"
        assert expect in done.stderr, f"{args}: {done.stderr}"

    deleted = secured.ctl_json("acl", "delete", "--principal", "User:dave")
    assert [a["principal"] for a in deleted["acls"]] == ["User:dave"], deleted
    assert secured.ctl_json("acl", "list", "--principal", "User:dave")["acls"] == []
    assert "No ACLs deleted." in ctl("delete", "--principal", "User:dave").stdout


def ctl_raw(cluster: ChronikCluster, args: list[str]) -> subprocess.CompletedProcess:
    """`chronikctl acl ...` without raising on a non-zero exit."""
    return subprocess.run([str(chronikctl_path()), "--controllers", cluster.controllers, "acl", *args],
                          capture_output=True, text=True, timeout=30)


def test_a_strict_authorizer_denies_until_an_acl_allows(cluster_factory, topic_name):
    """Without --allow-everyone-if-no-acl-found nothing is allowed until an ACL says so; the controllers
    (chronikctl) are the way in."""
    cluster = cluster_factory(controllers=1, brokers=1, broker_args=["--authorizer=standard"])
    cluster.create_topic(topic_name, partitions=1, replication_factor=1, wait=False)
    bootstrap = cluster.bootstrap_servers
    assert produce_error(bootstrap, topic_name) == ck.KafkaError.TOPIC_AUTHORIZATION_FAILED
    admin = admin_for(bootstrap)
    acl = binding(ResourceType.TOPIC, topic_name, ResourcePatternType.LITERAL, ANONYMOUS, AclOperation.WRITE,
                  AclPermissionType.ALLOW)
    assert error_code(admin.create_acls([acl], request_timeout=30)[acl]) == \
        ck.KafkaError.CLUSTER_AUTHORIZATION_FAILED
    cluster.ctl_json("acl", "create", "--principal", ANONYMOUS, "--operation", "write", "--permission", "allow",
                     "--resource-type", "topic", "--resource-name", topic_name)
    wait_until(lambda: produce_error(bootstrap, topic_name) is None, 30, "the ALLOW WRITE to let writes through")
    # Neither READ on the topic nor anything on the consumer's group was granted.
    with pytest.raises(AssertionError, match="(TOPIC|GROUP)_AUTHORIZATION_FAILED"):
        ck_consume(bootstrap, {(topic_name, 0): 0}, 1, timeout=15)


def test_super_users_may_do_anything(cluster_factory, topic_name):
    cluster = cluster_factory(controllers=1, brokers=1,
                              broker_args=["--authorizer=standard", f"--super-users=User:admin;{ANONYMOUS}"])
    cluster.create_topic(topic_name, partitions=1, replication_factor=1)
    admin = admin_for(cluster.bootstrap_servers)
    deny_all = binding(ResourceType.TOPIC, "*", ResourcePatternType.LITERAL, "User:*", AclOperation.ALL,
                       AclPermissionType.DENY)
    create(admin, [deny_all])  # a super user may alter ACLs
    ck_produce(cluster.bootstrap_servers, topic_name, [Rec(value=b"su")])
    assert [c.value for c in ck_consume(cluster.bootstrap_servers, {(topic_name, 0): 0}, 1)] == [b"su"]


def test_kafka_python_admin_creates_describes_and_deletes_acls(secured, topic_name):
    from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                             KafkaAdminClient, ResourcePattern, ResourcePatternFilter)
    from kafka.admin import ResourceType as KpResourceType
    from kafka.errors import NoError

    admin = KafkaAdminClient(bootstrap_servers=secured.bootstrap_servers, request_timeout_ms=30000)
    erin = ACLFilter("User:erin", None, ACLOperation.ANY, ACLPermissionType.ANY,
                     ResourcePatternFilter(KpResourceType.TOPIC, topic_name, ACLResourcePatternType.MATCH))
    try:
        acl = ACL("User:erin", "*", ACLOperation.WRITE, ACLPermissionType.DENY,
                  ResourcePattern(KpResourceType.TOPIC, topic_name[:8], ACLResourcePatternType.PREFIXED))
        created = admin.create_acls([acl])
        assert created["failed"] == [] and len(created["succeeded"]) == 1, created
        acls, error = admin.describe_acls(erin)
        assert error is NoError, error
        assert [(a.principal, a.resource_pattern.resource_name, a.resource_pattern.pattern_type) for a in acls] == \
            [("User:erin", topic_name[:8], ACLResourcePatternType.PREFIXED)], acls
        deleted = admin.delete_acls([erin])
        assert len(deleted) == 1 and deleted[0][2] is NoError, deleted
        assert [m.principal for m in deleted[0][1]] == ["User:erin"], deleted
        acls, error = admin.describe_acls(erin)
        assert (acls, error) == ([], NoError)
    finally:
        admin.close()
