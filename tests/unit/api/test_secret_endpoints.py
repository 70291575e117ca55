"""Credentials follow their owner: where a Secret's annotation lets kfn send it.

Each row of a table is the annotation ``kfn.dev/allowed-endpoints`` a Secret carries, the
endpoint a Trigger would send it to, and whether kfn may. Endpoints are written as Triggers
write them (NATS servers, Kafka bootstrap servers, an S3 endpoint).
"""

from __future__ import annotations

import pytest

from kfn.api import endpoints

ANNOTATION = endpoints.ANNOTATION


def nats(url: str) -> endpoints.Endpoint:
    (endpoint,) = endpoints.nats([url])
    return endpoint


def kafka(server: str) -> endpoints.Endpoint:
    (endpoint,) = endpoints.kafka([server])
    return endpoint


def s3(url: str) -> endpoints.Endpoint:
    (endpoint,) = endpoints.s3(url)
    return endpoint


def allowed(annotation: str | None, *to: endpoints.Endpoint, require: bool = True) -> bool:
    annotations = {} if annotation is None else {ANNOTATION: annotation}
    refusal = endpoints.decide("team-a", "creds", annotations, to, require_opt_in=require)
    return refusal is None


TEAM_NATS = "nats://nats.team-a.svc:4222"

TABLE = [
    # --- the entry names the endpoint ---
    pytest.param(TEAM_NATS, nats("nats://nats.team-a.svc:4222"), True,
                 id="a nats url the annotation lists is allowed"),
    pytest.param(TEAM_NATS, nats("nats://evil.example:4222"), False,
                 id="a nats server the annotation does not list is refused"),
    pytest.param(TEAM_NATS, nats("nats://nats.team-a.svc:4223"), False,
                 id="another port of a listed host is refused"),
    pytest.param(TEAM_NATS, nats("tls://nats.team-a.svc:4222"), False,
                 id="another scheme than the entry's is refused"),
    pytest.param("nats.team-a.svc:4222", nats("tls://nats.team-a.svc:4222"), True,
                 id="an entry without a scheme allows any scheme on its host and port"),
    pytest.param("nats://nats.team-a.svc", nats("nats://nats.team-a.svc:4222"), True,
                 id="an entry without a port means the scheme's default port"),
    pytest.param(TEAM_NATS, nats("nats://nats.team-a.svc"), True,
                 id="a url without a port connects to the scheme's default port"),
    pytest.param("wss://nats.team-a.example", nats("wss://nats.team-a.example:443"), True,
                 id="websocket urls default to 443 for wss"),
    pytest.param(TEAM_NATS, nats("nats://NATS.Team-A.svc:4222"), True,
                 id="host names compare without case"),
    pytest.param("NATS://NATS.TEAM-A.SVC:4222", nats(TEAM_NATS), True,
                 id="entries compare without case"),
    pytest.param(TEAM_NATS, nats("nats://nats.team-a.svc.cluster.local:4222"), False,
                 id="another spelling of the same service is another name"),
    pytest.param(TEAM_NATS, nats("nats://fn:hunter2@nats.team-a.svc:4222"), True,
                 id="the user part of a nats url does not change where it connects"),
    pytest.param(TEAM_NATS, nats("nats://nats.team-a.svc:4222@evil.example:4222"), False,
                 id="a listed host in the user part is not where the client connects"),
    pytest.param(TEAM_NATS, nats("nats://a@nats.team-a.svc@evil.example:4222"), False,
                 id="a url whose host is ambiguous is refused"),
    pytest.param("nats://nats.team-a.svc:4222/", nats(TEAM_NATS), True,
                 id="an entry may end in a slash"),
    # --- separators and several entries ---
    pytest.param("kafka-0.k.team-a.svc:9092,  kafka-1.k.team-a.svc:9092\n" + TEAM_NATS,
                 nats(TEAM_NATS), True, id="entries are separated by commas or white space"),
    pytest.param("", nats(TEAM_NATS), False, id="an empty annotation allows nothing"),
    # --- kafka ---
    pytest.param("kafka-0.kafka.team-a.svc:9092", kafka("kafka-0.kafka.team-a.svc:9092"), True,
                 id="a kafka broker the annotation lists is allowed"),
    pytest.param("kafka://kafka-0.kafka.team-a.svc", kafka("kafka-0.kafka.team-a.svc:9092"),
                 True, id="kafka brokers have the scheme kafka and its default port 9092"),
    pytest.param(TEAM_NATS, kafka("nats.team-a.svc:4222"), False,
                 id="a nats entry does not allow kafka on the same host and port"),
    # --- s3 ---
    pytest.param("https://s3.team-a.example", s3("https://s3.team-a.example/"), True,
                 id="an https endpoint the annotation lists is allowed"),
    pytest.param("https://s3.team-a.example", s3("https://s3.team-a.example/base/path"), True,
                 id="the path of an s3 endpoint is not compared"),
    pytest.param("https://s3.team-a.example", s3("http://s3.team-a.example:443"), False,
                 id="plain http is refused where the entry says https"),
    pytest.param("https://s3.team-a.example", s3("https://s3.team-a.example:8443"), False,
                 id="another port than https's default is refused"),
    pytest.param("https://s3.team-a.example", s3("https://me@s3.team-a.example"), False,
                 id="an s3 endpoint with a user part is refused"),
    # --- wildcards ---
    pytest.param("*.kafka.team-a.svc:9092", kafka("kafka-2.kafka.team-a.svc:9092"), True,
                 id="a wildcard allows a name below its domain"),
    pytest.param("*.team-a.example:443", s3("https://a.b.team-a.example"), True,
                 id="a wildcard allows names at any depth below its domain"),
    pytest.param("*.team-a.example:443", s3("https://team-a.example"), False,
                 id="a wildcard does not allow its domain itself"),
    pytest.param("*.team-a.example:443", s3("https://evilteam-a.example"), False,
                 id="a wildcard matches whole labels only"),
    # --- addresses ---
    pytest.param("10.0.0.7:4222", nats("nats://10.0.0.7:4222"), True,
                 id="an ipv4 address the annotation lists is allowed"),
    pytest.param("10.0.0.7:4222", nats("nats://10.0.0.8:4222"), False,
                 id="another ipv4 address is refused"),
    pytest.param("[fd00:0::7]:4222", nats("nats://[FD00::7]:4222"), True,
                 id="ipv6 addresses compare as addresses"),
    pytest.param("*.0.7:4222", nats("nats://10.0.0.7:4222"), False,
                 id="an address matches no wildcard"),
]  # fmt: skip


@pytest.mark.parametrize(("annotation", "endpoint", "expected"), TABLE)
def test_the_annotation_decides_where_a_secret_may_go(
    annotation: str, endpoint: endpoints.Endpoint, expected: bool
) -> None:
    assert allowed(annotation, endpoint) is expected


def test_a_secret_without_the_annotation_goes_nowhere_by_default() -> None:
    assert not allowed(None, nats(TEAM_NATS))


def test_without_the_requirement_a_secret_without_the_annotation_goes_anywhere() -> None:
    assert allowed(None, nats("nats://evil.example:4222"), require=False)


def test_without_the_requirement_an_annotated_secret_is_still_held_to_it() -> None:
    assert not allowed(TEAM_NATS, nats("nats://evil.example:4222"), require=False)
    assert allowed(TEAM_NATS, nats(TEAM_NATS), require=False)


def test_every_endpoint_of_a_trigger_must_be_allowed() -> None:
    servers = endpoints.nats([TEAM_NATS, "nats://evil.example:4222"])
    assert not allowed(TEAM_NATS, *servers)
    assert allowed(f"{TEAM_NATS} nats://evil.example", *servers)


# --- what the user reads ------------------------------------------------------------------


def refusal(annotation: str | None, *to: endpoints.Endpoint) -> str:
    annotations = {} if annotation is None else {ANNOTATION: annotation}
    decided = endpoints.decide("team-a", "nats-creds", annotations, to)
    assert decided is not None
    return decided.message


def test_a_refusal_names_the_secret_the_endpoint_and_what_its_owner_may_do() -> None:
    assert refusal(TEAM_NATS, nats("nats://evil:4222")) == (
        "Secret team-a/nats-creds does not allow nats://evil:4222; add it to the annotation "
        "kfn.dev/allowed-endpoints if the Secret's owner agrees (it allows "
        "nats://nats.team-a.svc:4222)"
    )


def test_a_secret_without_the_annotation_is_told_how_its_owner_opts_in() -> None:
    assert refusal(None, nats("nats://evil:4222"), nats("nats://evil-2")) == (
        "Secret team-a/nats-creds does not allow nats://evil:4222, nats://evil-2:4222: it has "
        "no annotation kfn.dev/allowed-endpoints listing where it may be sent; if the "
        "Secret's owner agrees, they annotate it "
        'kfn.dev/allowed-endpoints="nats://evil:4222 nats://evil-2:4222"'
    )


def test_a_refusal_never_shows_the_user_part_of_a_url() -> None:
    message = refusal(TEAM_NATS, nats("nats://fn:hunter2@evil:4222"))
    assert "hunter2" not in message
    assert "nats://evil:4222" in message
    message = refusal(TEAM_NATS, nats("nats://x@y:hunter2@evil:4222"))
    assert "hunter2" not in message


def test_an_endpoint_kfn_cannot_read_for_certain_is_refused_whatever_the_annotation() -> None:
    message = refusal("*.example:4222", nats("nats://a@b@evil.example:4222"))
    assert message.startswith(
        "kfn sends Secret team-a/nats-creds to no endpoint whose host and port it cannot tell "
        "for certain: nats://evil.example:4222"
    )


UNREADABLE = [
    pytest.param("nats.team-a.svc", "without a scheme it needs a port", id="no scheme no port"),
    pytest.param("smtp://mail:25", "unknown scheme 'smtp'", id="unknown scheme"),
    pytest.param("https://s3.example/bucket", "no path", id="a path"),
    pytest.param("nats://fn@nats:4222", "no path", id="a user part"),
    pytest.param("nats://nats:99999", "port from 1 to 65535", id="a port out of range"),
    pytest.param("*", "not a host", id="a bare star"),
    pytest.param("*.10.0.0.1:4222", "not an address", id="a wildcard address"),
    pytest.param("nats://ev!l:4222", "not a host", id="a character no name has"),
]


@pytest.mark.parametrize(("annotation", "why"), UNREADABLE)
def test_an_unreadable_annotation_sends_the_secret_nowhere_and_says_which_entry(
    annotation: str, why: str
) -> None:
    message = refusal(f"{TEAM_NATS}, {annotation}", nats(TEAM_NATS))
    assert message.startswith(
        "Secret team-a/nats-creds goes nowhere until its owner corrects its annotation "
        f"kfn.dev/allowed-endpoints: entry {annotation!r}"
    )
    assert why in message
