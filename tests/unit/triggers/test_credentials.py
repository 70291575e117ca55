"""Client settings for Kafka and NATS from the credentials Secret a Trigger names."""

from __future__ import annotations

import os

import pytest

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
