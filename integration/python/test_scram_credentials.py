"""SCRAM credentials (KIP-554): AlterUserScramCredentials and DescribeUserScramCredentials through
confluent-kafka's AdminClient against real brokers. Credentials live in the controller's metadata log,
so every broker describes the same ones right after a change is answered.

- `test_upsert_describe_and_delete`: two mechanisms for one user and one for another; describing all
  users and named ones on every broker (mechanisms and iteration counts, never a key); deleting one
  mechanism leaves the other.
- `test_refusals_fail_only_their_user`: too few and too many iterations (UNACCEPTABLE_CREDENTIAL),
  deleting a credential that does not exist and describing an unknown user (RESOURCE_NOT_FOUND), while
  a good alteration in the same request succeeds.
"""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from clients import LIBRDKAFKA_BASE

pytestmark = pytest.mark.admin

SHA256 = ScramMechanism.SCRAM_SHA_256
SHA512 = ScramMechanism.SCRAM_SHA_512


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({**LIBRDKAFKA_BASE, "bootstrap.servers": bootstrap})


def user(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def alter(client: AdminClient, alterations) -> dict[str, KafkaError | None]:
    """{user: None on success, else the KafkaError}."""
    outcome: dict[str, KafkaError | None] = {}
    for name, future in client.alter_user_scram_credentials(alterations, request_timeout=30).items():
        try:
            future.result(timeout=60)
            outcome[name] = None
        except KafkaException as error:
            outcome[name] = error.args[0]
    return outcome


def upsert(name: str, mechanism: ScramMechanism, iterations: int) -> UserScramCredentialUpsertion:
    return UserScramCredentialUpsertion(name, ScramCredentialInfo(mechanism, iterations),
                                        password=b"pencil", salt=b"a-salt-of-16byte")


def described(client: AdminClient, users: list[str]) -> dict[str, set[tuple[ScramMechanism, int]]]:
    futures = client.describe_user_scram_credentials(users, request_timeout=30)
    return {name: {(info.mechanism, info.iterations)
                   for info in future.result(timeout=60).scram_credential_infos}
            for name, future in futures.items()}


def test_upsert_describe_and_delete(shared_cluster):
    client = admin(shared_cluster.bootstrap_servers)
    alice, bob = user("alice"), user("bob")

    assert alter(client, [upsert(alice, SHA256, 8192), upsert(alice, SHA512, 4096),
                          upsert(bob, SHA512, 16384)]) == {alice: None, bob: None}

    expected = {alice: {(SHA256, 8192), (SHA512, 4096)}, bob: {(SHA512, 16384)}}
    for broker in shared_cluster.brokers:
        assert described(admin(broker["addr"]), [alice, bob]) == expected, broker
    everyone = client.describe_user_scram_credentials(request_timeout=30).result(timeout=60)
    assert {name: {(i.mechanism, i.iterations) for i in d.scram_credential_infos}
            for name, d in everyone.items() if name in (alice, bob)} == expected

    assert alter(client, [UserScramCredentialDeletion(alice, SHA256)]) == {alice: None}
    for broker in shared_cluster.brokers:
        assert described(admin(broker["addr"]), [alice]) == {alice: {(SHA512, 4096)}}, broker


def test_refusals_fail_only_their_user(shared_cluster):
    client = admin(shared_cluster.bootstrap_servers)
    few, many, ghost, fine = user("few"), user("many"), user("ghost"), user("fine")

    outcome = alter(client, [upsert(few, SHA256, 4095), upsert(many, SHA512, 16385),
                             UserScramCredentialDeletion(ghost, SHA256),
                             upsert(fine, SHA256, 4096)])

    assert outcome[fine] is None
    assert outcome[few].code() == KafkaError.UNACCEPTABLE_CREDENTIAL, outcome[few]
    assert "iterations" in outcome[few].str()
    assert outcome[many].code() == KafkaError.UNACCEPTABLE_CREDENTIAL, outcome[many]
    assert outcome[ghost].code() == KafkaError.RESOURCE_NOT_FOUND, outcome[ghost]

    futures = client.describe_user_scram_credentials([fine, few], request_timeout=30)
    assert {(i.mechanism, i.iterations)
            for i in futures[fine].result(timeout=60).scram_credential_infos} == {(SHA256, 4096)}
    with pytest.raises(KafkaException) as refused:
        futures[few].result(timeout=60)
    assert refused.value.args[0].code() == KafkaError.RESOURCE_NOT_FOUND
