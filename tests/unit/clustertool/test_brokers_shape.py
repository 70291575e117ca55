"""The brokers' configuration and command lines, read without starting them."""

from __future__ import annotations

import ipaddress
import pathlib
import struct
import time

import pytest

from kfncluster import brokers, build, components, config, procs, teardown


def _paths(tmp_path: pathlib.Path) -> config.Paths:
    return config.Paths(state=tmp_path / "state", run=tmp_path / "run", cache=tmp_path / "cache")


def _bins(tmp_path: pathlib.Path) -> dict[str, pathlib.Path]:
    return {"nats-server": tmp_path / "nats-server"}


def _hosts(listeners: str) -> set[str]:
    return {item.split("://", 1)[1].rsplit(":", 1)[0] for item in listeners.split(",")}


def test_kafka_serves_clients_on_the_node_address_and_its_controller_on_loopback_only(
    tmp_path: pathlib.Path,
) -> None:
    props = brokers.kafka_properties(_paths(tmp_path))
    assert props["listeners"] == (
        f"PLAINTEXT://{config.NODE_IP}:{config.KAFKA_PORT},"
        f"CONTROLLER://127.0.0.1:{config.KAFKA_CONTROLLER_PORT}"
    )
    assert props["advertised.listeners"] == f"PLAINTEXT://{config.KAFKA_BOOTSTRAP}"
    assert props["controller.quorum.voters"].endswith(f"@127.0.0.1:{config.KAFKA_CONTROLLER_PORT}")
    for host in _hosts(props["listeners"]):
        assert ipaddress.ip_address(host) in (
            ipaddress.ip_address(config.NODE_IP),
            ipaddress.ip_address("127.0.0.1"),
        )


def test_kafka_is_configured_for_one_node_with_topics_created_explicitly(
    tmp_path: pathlib.Path,
) -> None:
    props = brokers.kafka_properties(_paths(tmp_path))
    replication = {k: v for k, v in props.items() if "replication.factor" in k or "isr" in k}
    assert replication
    assert set(replication.values()) == {"1"}
    assert props["process.roles"] == "broker,controller"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["auto.create.topics.enable"] == "false"


def test_kafka_and_nats_keep_their_data_in_the_cluster_state_that_down_removes(
    tmp_path: pathlib.Path,
) -> None:
    paths = _paths(tmp_path)
    assert brokers.kafka_properties(paths)["log.dirs"] == str(paths.state / "kafka")
    assert f'store_dir: "{paths.state / "nats"}"' in brokers.nats_config(paths)


def test_the_rendered_server_properties_hold_every_setting_once(tmp_path: pathlib.Path) -> None:
    props = brokers.kafka_properties(_paths(tmp_path))
    lines = brokers.render_properties(props).splitlines()
    assert len(lines) == len(props)
    assert dict(line.split("=", 1) for line in lines) == props


def test_write_configs_puts_the_broker_files_where_the_command_lines_point(
    tmp_path: pathlib.Path,
) -> None:
    paths = _paths(tmp_path)
    components.write_configs(paths)
    kafka = brokers.argv("kafka", paths, _bins(tmp_path))
    nats = brokers.argv("nats", paths, _bins(tmp_path))
    assert pathlib.Path(kafka[-1]).read_text().startswith("process.roles=")
    assert pathlib.Path(nats[-1]).read_text() == brokers.nats_config(paths)
    log4j = next(a for a in kafka if a.startswith("-Dlog4j2.configurationFile="))
    assert pathlib.Path(log4j.split("=", 1)[1]).is_file()


def test_kafka_runs_the_broker_class_from_the_cached_classpath_with_at_most_512_mib_of_heap(
    tmp_path: pathlib.Path,
) -> None:
    paths = _paths(tmp_path)
    argv = brokers.argv("kafka", paths, _bins(tmp_path))
    (heap,) = [a for a in argv if a.startswith("-Xmx")]
    assert heap.endswith("m")
    assert int(heap[4:-1]) <= 512
    assert argv[argv.index("-cp") + 1] == f"{paths.cache}/kafka-{brokers.kafka_key()}/libs/*"
    assert argv[-2] == "kafka.Kafka"
    assert not any("jmxremote" in a for a in argv)


def test_kafka_storage_is_formatted_with_the_fixed_cluster_id_and_left_alone_when_formatted(
    tmp_path: pathlib.Path,
) -> None:
    argv = brokers.kafka_format_argv(_paths(tmp_path))
    assert argv[argv.index("kafka.tools.StorageTool") + 1] == "format"
    assert argv[argv.index("--cluster-id") + 1] == brokers.KAFKA_CLUSTER_ID
    assert "--ignore-formatted" in argv
    # A KRaft cluster id is 16 bytes in URL-safe base64 without padding.
    import base64  # noqa: PLC0415

    assert len(base64.urlsafe_b64decode(brokers.KAFKA_CLUSTER_ID + "==")) == 16


def test_fresh_kafka_cluster_ids_are_16_bytes_and_never_begin_like_an_option() -> None:
    import base64  # noqa: PLC0415

    ids = [brokers.new_kafka_cluster_id() for _ in range(2000)]
    assert not any(i.startswith("-") for i in ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)


def test_nats_listens_for_clients_on_the_node_address_and_monitors_on_loopback(
    tmp_path: pathlib.Path,
) -> None:
    conf = brokers.nats_config(_paths(tmp_path))
    assert f'listen: "{config.NODE_IP}:{config.NATS_PORT}"' in conf
    assert f'http: "127.0.0.1:{config.NATS_MONITOR_PORT}"' in conf
    assert "0.0.0.0" not in conf  # noqa: S104
    assert "max_memory_store" in conf
    assert "max_file_store" in conf
    assert brokers.env("nats")["GOMEMLIMIT"]


def test_kafkas_cache_key_follows_its_version_and_its_pom(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project>one</project>")
    monkeypatch.setattr(brokers, "KAFKA_POM", pom)
    first = brokers.kafka_key()
    assert first.startswith(f"{config.KAFKA_VERSION}-")
    assert brokers.kafka_key() == first
    pom.write_text("<project>two</project>")
    assert brokers.kafka_key() != first
    monkeypatch.setattr(config, "KAFKA_VERSION", "9.9.9")
    assert brokers.kafka_key().startswith("9.9.9-")


def test_the_committed_pom_resolves_the_pinned_kafka_and_a_log4j2_binding() -> None:
    pom = brokers.KAFKA_POM.read_text()
    assert f"<kafka.version>{config.KAFKA_VERSION}</kafka.version>" in pom
    assert "<artifactId>kafka_2.13</artifactId>" in pom
    assert "<artifactId>log4j-slf4j-impl</artifactId>" in pom


def test_nats_and_versitygw_are_built_from_pinned_wrapper_modules_keyed_by_version() -> None:
    by_name = {c.name: c for c in build.COMPONENTS}
    for name, version, module in (
        ("nats", config.NATS_VERSION, "github.com/nats-io/nats-server/v2"),
        ("versitygw", config.VERSITYGW_VERSION, "github.com/versity/versitygw"),
    ):
        component = by_name[name]
        assert component.key().startswith(f"{version}-")
        go_mod = (component.module_dir / "go.mod").read_text()
        assert f"require {module} {version}" in go_mod
        assert (component.module_dir / "go.sum").is_file()


def test_the_brokers_are_started_by_up_and_can_join_a_running_cluster() -> None:
    assert set(brokers.BROKERS) <= set(components.ORDER)
    assert set(brokers.BROKERS) <= set(components.EXTRAS)
    core = [n for n in components.ORDER if n not in components.EXTRAS]
    assert "kube-apiserver" in core
    assert not set(core) & set(brokers.BROKERS)


def test_down_removes_the_brokers_data_and_keeps_only_the_registry_cache(
    tmp_path: pathlib.Path,
) -> None:
    paths = _paths(tmp_path)
    for d in (paths.kafka_data / "topic-0", paths.nats_data / "jetstream", paths.registry_data):
        d.mkdir(parents=True)
    (paths.kafka_data / "meta.properties").write_text("cluster.id=x\n")
    teardown.remove(paths)
    assert [p.name for p in paths.state.iterdir()] == [paths.registry_data.name]


def test_a_metadata_request_is_a_size_prefixed_metadata_v4_request_for_no_topics() -> None:
    request = brokers.metadata_request(42, client_id="me")
    (size,) = struct.unpack_from(">i", request)
    assert size == len(request) - 4
    api_key, version, correlation, client_len = struct.unpack_from(">hhih", request, 4)
    assert (api_key, version, correlation) == (3, 4, 42)
    assert request[14 : 14 + client_len] == b"me"
    topics, auto_create = struct.unpack_from(">ib", request, 14 + client_len)
    assert (topics, auto_create) == (0, 0)


def _metadata_response(correlation: int, brokers_: list[tuple[int, str, int, str | None]]) -> bytes:
    body = struct.pack(">iii", correlation, 0, len(brokers_))
    for node, host, port, rack in brokers_:
        body += struct.pack(">ih", node, len(host)) + host.encode() + struct.pack(">i", port)
        body += (
            struct.pack(">h", -1) if rack is None else struct.pack(">h", len(rack)) + rack.encode()
        )
    cluster_id = b"abc"
    return body + struct.pack(">h", len(cluster_id)) + cluster_id + struct.pack(">ii", 1, 0)


def test_a_metadata_response_yields_every_broker_and_the_cluster_id() -> None:
    response = _metadata_response(9, [(1, "10.0.0.1", 9092, None), (2, "h2", 9093, "rack-a")])
    assert brokers.parse_metadata_brokers(response, 9) == (
        [(1, "10.0.0.1", 9092), (2, "h2", 9093)],
        "abc",
    )
    with pytest.raises(ValueError, match="correlation"):
        brokers.parse_metadata_brokers(response, 10)


def test_a_broker_that_dies_while_starting_fails_naming_itself_and_its_log(
    tmp_path: pathlib.Path,
) -> None:
    sup = procs.Supervisor(tmp_path / "pids", tmp_path / "logs")
    # It lives a moment: one that is gone before start() looks is refused there ("exited at
    # once"), which is another path.
    record = sup.start("kafka", ["/bin/sh", "-c", "echo no java here; sleep 0.3; exit 3"])
    # Dead before the first check, so the outcome does not hang on whether a broker answers.
    deadline = time.monotonic() + 10
    while record.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(procs.ComponentError) as failed:
        brokers.wait(sup, [record])
    assert failed.value.component == "kafka"
    assert failed.value.log == tmp_path / "logs" / "kafka.log"
    assert str(tmp_path / "logs" / "kafka.log") in str(failed.value)
    assert "no java here" in (tmp_path / "logs" / "kafka.log").read_text()
