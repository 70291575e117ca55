"""What a pool pod is told to become: the kubelet's environment and the image's own layers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kfn.activator import specialise
from kfn.api import function as function_api
from kfn.resources import deployment

NO_SOURCES = specialise.Sources({}, {})


def _layer(digest: str, size: int = 10) -> dict[str, Any]:
    return {
        "digest": digest,
        "size": size,
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
    }


# --- the environment ---------------------------------------------------------------------------


def test_container_variables_override_the_image_config_env_and_keep_the_rest() -> None:
    env = specialise.environment(
        ["PATH=/usr/bin", "PYTHONPATH=/opt/kfn/runtime", "KFN_PORT=8080"],
        {"env": [{"name": "KFN_PORT", "value": "9090"}, {"name": "A", "value": "1"}]},
        NO_SOURCES,
    )
    assert env == {
        "PATH": "/usr/bin",
        "PYTHONPATH": "/opt/kfn/runtime",
        "KFN_PORT": "9090",
        "A": "1",
    }


def test_doubled_dollars_become_one_and_references_expand_to_earlier_variables() -> None:
    env = specialise.environment(
        [],
        {
            "env": [
                {"name": "HOST", "value": "db"},
                {"name": "URL", "value": "pg://$(HOST)/x"},
                {"name": "LITERAL", "value": "pa$$word $(HOST)"},
                {"name": "UNKNOWN", "value": "$(LATER) $x $("},
                {"name": "LATER", "value": "late"},
            ]
        },
        NO_SOURCES,
    )
    assert env["URL"] == "pg://db/x"
    assert env["LITERAL"] == "pa$word db"
    assert env["UNKNOWN"] == "$(LATER) $x $("


def test_a_user_value_from_the_deployment_builder_arrives_as_the_user_wrote_it() -> None:
    fn = function_api.Function.model_validate(
        {
            "apiVersion": "kfn.dev/v1alpha1",
            "kind": "Function",
            "metadata": {"name": "f", "namespace": "team", "uid": "u-1"},
            "spec": {
                "runtime": "python3.11",
                "handler": "app.handler",
                "source": {
                    "inline": {
                        "files": [{"name": "app.py", "content": "def handler(e, c): return 1\n"}]
                    }
                },
                "env": [{"name": "PRICE", "value": "$(NOT_A_REF) costs $5"}],
            },
        }
    )
    built = deployment.build_deployment(
        fn, image="r/x@sha256:" + "0" * 64, source_hash="", initial_replicas=None
    )
    container = built["spec"]["template"]["spec"]["containers"][0]
    env = specialise.environment([], container, NO_SOURCES)
    assert env["PRICE"] == "$(NOT_A_REF) costs $5"
    assert env["AWS_LAMBDA_FUNCTION_NAME"] == "f"
    assert env["_HANDLER"] == "app.handler"


def test_values_from_secrets_and_config_maps_are_taken_as_they_are() -> None:
    sources = specialise.Sources(
        secrets={"creds": {"password": b"s3cr$(et)", "user": b"app"}},
        config_maps={"settings": {"MODE": "fast", "bad key": "x"}},
    )
    env = specialise.environment(
        [],
        {
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
            "env": [
                {
                    "name": "PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}},
                },
                {
                    "name": "MODE",
                    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}},
                },
            ],
        },
        sources,
    )
    assert env == {"CFG_MODE": "fast", "PASSWORD": "s3cr$(et)", "MODE": "fast"}


def test_env_entries_win_over_env_from_sources_and_later_sources_over_earlier_ones() -> None:
    sources = specialise.Sources(
        secrets={"s": {"A": b"secret"}}, config_maps={"c": {"A": "map", "B": "b"}}
    )
    env = specialise.environment(
        [],
        {
            "envFrom": [{"configMapRef": {"name": "c"}}, {"secretRef": {"name": "s"}}],
            "env": [{"name": "B", "value": "own"}],
        },
        sources,
    )
    assert env == {"A": "secret", "B": "own"}


def test_a_missing_secret_or_key_stops_the_pod_as_the_kubelet_would_unless_optional() -> None:
    with pytest.raises(specialise.UnresolvableError, match="Secret 'gone' not found"):
        specialise.environment([], {"envFrom": [{"secretRef": {"name": "gone"}}]}, NO_SOURCES)
    with pytest.raises(specialise.UnresolvableError, match="ConfigMap 'c' has no key 'K'"):
        specialise.environment(
            [],
            {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "K"}}}]},
            specialise.Sources({}, {"c": {}}),
        )
    env = specialise.environment(
        [],
        {
            "envFrom": [{"secretRef": {"name": "gone", "optional": True}}],
            "env": [
                {
                    "name": "X",
                    "valueFrom": {"secretKeyRef": {"name": "gone", "key": "K", "optional": True}},
                }
            ],
        },
        NO_SOURCES,
    )
    assert env == {}


def test_the_sources_a_container_reads_are_named() -> None:
    secrets, config_maps = specialise.referenced(
        {
            "envFrom": [{"secretRef": {"name": "a"}}, {"configMapRef": {"name": "b"}}],
            "env": [
                {"name": "X", "value": "1"},
                {"name": "Y", "valueFrom": {"secretKeyRef": {"name": "c", "key": "k"}}},
                {"name": "Z", "valueFrom": {"configMapKeyRef": {"name": "d", "key": "k"}}},
            ],
        }
    )
    assert secrets == {"a", "c"}
    assert config_maps == {"b", "d"}


# --- the layers --------------------------------------------------------------------------------


def test_the_layers_sent_are_those_above_the_pool_base() -> None:
    base = {"layers": [_layer("sha256:a"), _layer("sha256:b")]}
    image = {
        "layers": [
            _layer("sha256:a"),
            _layer("sha256:b"),
            _layer("sha256:deps", 5),
            _layer("sha256:code", 3),
        ]
    }
    layers = specialise.own_layers(image, base)
    assert layers is not None
    assert [(la.digest, la.size) for la in layers] == [("sha256:deps", 5), ("sha256:code", 3)]


def test_an_image_built_on_another_base_cannot_be_specialised_from_the_pool() -> None:
    base = {"layers": [_layer("sha256:a"), _layer("sha256:new")]}
    image = {"layers": [_layer("sha256:a"), _layer("sha256:old"), _layer("sha256:code")]}
    assert specialise.own_layers(image, base) is None


def test_the_request_head_is_one_json_line_listing_the_layers_in_order() -> None:
    layers = (specialise.Layer("sha256:d", 5, "m1"), specialise.Layer("sha256:c", 3, "m2"))
    line = specialise.head("app.handler", {"A": "1"}, layers)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert json.loads(line) == {
        "handler": "app.handler",
        "env": {"A": "1"},
        "layers": [
            {"digest": "sha256:d", "size": 5, "mediaType": "m1"},
            {"digest": "sha256:c", "size": 3, "mediaType": "m2"},
        ],
    }
