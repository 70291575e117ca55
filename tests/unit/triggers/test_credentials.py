"""Client settings for Kafka and NATS from the credentials Secret a Trigger names."""

from __future__ import annotations

import os

import pytest

from kfn import kube
from kfn.api import endpoints, meta
from kfn.triggers import credentials


def test_kafka_settings_follow_the_credentials_secret() -> None:
    servers = ["kafka-0:9092", "kafka-1:9092"]
    assert credentials.kafka_config(servers, None) == {
        "bootstrap.servers": "kafka-0:9092,kafka-1:9092"
    }
    sasl = credentials.kafka_config(servers, {"username": b"fn", "password": b"s3cret"})
    assert sasl["security.protocol"] == "SASL_PLAINTEXT"
    assert sasl["sasl.mechanism"] == "SCRAM-SHA-512"
    tls = credentials.kafka_config(servers, {"ca.crt": b"PEM"})
    assert (tls["security.protocol"], tls["ssl.ca.pem"]) == ("SSL", "PEM")
    with pytest.raises(credentials.CredentialsError, match="no password"):
        credentials.kafka_config(servers, {"username": b"fn"})


def test_a_nats_creds_file_is_written_private() -> None:
    options = credentials.nats_options({"creds": b"-----BEGIN NATS USER JWT-----"})
    path = options["user_credentials"]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert credentials.nats_options({"token": b"t"}) == {"token": "t"}
    with pytest.raises(credentials.CredentialsError, match="none of token"):
        credentials.nats_options({"other": b"x"})


TOKEN_SECRET = {"token": b"t0ken"}


def holding(monkeypatch: pytest.MonkeyPatch, annotations: dict[str, str]) -> None:
    """Secret team-a/nats-creds holds a token, with these annotations."""

    def get_secret(namespace: str, name: str) -> kube.Secret | None:
        found = (namespace, name) == ("team-a", "nats-creds")
        return kube.Secret(dict(TOKEN_SECRET), annotations) if found else None

    monkeypatch.setattr(kube, "get_secret", get_secret)


REF = meta.LocalObjectReference(name="nats-creds")
TEAM = endpoints.nats(["nats://nats.team-a.svc:4222"])
EVIL = endpoints.nats(["nats://evil:4222"])


def test_the_secret_is_read_only_for_endpoints_its_annotation_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holding(monkeypatch, {endpoints.ANNOTATION: "nats://nats.team-a.svc:4222"})
    assert credentials.read_secret("team-a", REF, TEAM) == TOKEN_SECRET
    with pytest.raises(credentials.SecretNotAllowedError, match="does not allow nats://evil"):
        credentials.read_secret("team-a", REF, EVIL)


def test_a_secret_without_the_annotation_is_refused_unless_the_chart_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holding(monkeypatch, {})
    with pytest.raises(credentials.SecretNotAllowedError):
        credentials.read_secret("team-a", REF, EVIL)
    monkeypatch.setenv(credentials.REQUIRE_OPT_IN_ENV, "false")
    assert credentials.read_secret("team-a", REF, EVIL) == TOKEN_SECRET
    monkeypatch.setenv(credentials.REQUIRE_OPT_IN_ENV, "no")  # anything else keeps it
    with pytest.raises(credentials.SecretNotAllowedError):
        credentials.read_secret("team-a", REF, EVIL)


def test_a_refused_secret_and_a_missing_one_have_their_own_reasons(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holding(monkeypatch, {})
    with pytest.raises(credentials.CredentialsError) as refused:
        credentials.read_secret("team-a", REF, EVIL)
    assert credentials.reason_of(refused.value) == "SecretNotAllowed"
    with pytest.raises(credentials.CredentialsError) as missing:
        credentials.read_secret("team-a", meta.LocalObjectReference(name="gone"), EVIL)
    assert credentials.reason_of(missing.value) == "CredentialsNotFound"
    assert str(missing.value) == "Secret team-a/gone does not exist"
