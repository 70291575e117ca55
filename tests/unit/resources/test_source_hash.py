"""The source hash changes exactly when the image would have to be rebuilt."""

from __future__ import annotations

from typing import Any

import pytest

from kfn import resources
from kfn.api import function

FILES = [{"name": "app.py", "content": "def handler(e, c): ..."}, {"name": "lib.py", "content": ""}]


def _function(**spec: Any) -> function.Function:
    base: dict[str, Any] = {
        "runtime": "python3.11",
        "handler": "app.handler",
        "source": {"inline": {"files": FILES}},
    }
    base.update(spec)
    return function.Function.model_validate({"metadata": {"name": "f"}, "spec": base})


def test_hash_is_a_stable_hex_sha256() -> None:
    first, second = resources.source_hash(_function()), resources.source_hash(_function())
    assert first == second
    assert len(first) == 64
    int(first, 16)


def test_configuration_outside_the_image_does_not_change_the_hash() -> None:
    base = resources.source_hash(_function())
    changed = _function(
        handler="lib.other",
        env=[{"name": "A", "value": "1"}],
        timeout="5m",
        concurrency=5,
        scale={"maxReplicas": 3},
    )
    assert resources.source_hash(changed) == base


@pytest.mark.parametrize(
    "change",
    [
        {"runtime": "nodejs18", "handler": "app.handler"},
        {"source": {"inline": {"files": [{**FILES[0], "content": "changed"}, FILES[1]]}}},
        {"source": {"inline": {"files": [FILES[0], {"name": "lib2.py", "content": ""}]}}},
        {"source": {"inline": {"files": FILES[:1]}}},
        {"dependencies": ["requests==2.32.3"]},
    ],
)
def test_anything_that_goes_into_the_image_changes_the_hash(change: dict[str, Any]) -> None:
    assert resources.source_hash(_function(**change)) != resources.source_hash(_function())


def test_file_order_does_not_matter_but_dependency_order_does() -> None:
    reordered = _function(source={"inline": {"files": list(reversed(FILES))}})
    assert resources.source_hash(reordered) == resources.source_hash(_function())
    deps = resources.source_hash(_function(dependencies=["a", "b"]))
    assert resources.source_hash(_function(dependencies=["b", "a"])) != deps


def test_same_files_from_a_config_map_build_the_same_image() -> None:
    from_map = _function(source={"configMapRef": {"name": "code"}})
    files = {file["name"]: file["content"].encode() for file in FILES}
    assert resources.source_hash(from_map, files) == resources.source_hash(_function())


def test_config_map_source_needs_the_config_maps_files() -> None:
    with pytest.raises(ValueError, match="needs the ConfigMap's files"):
        resources.source_hash(_function(source={"configMapRef": {"name": "code"}}))


def test_archive_is_identified_by_its_digest_not_its_url() -> None:
    def archive(url: str, digest: str) -> function.Function:
        return _function(source={"archive": {"url": url, "sha256": digest}})

    base = resources.source_hash(archive("https://a.example/x.zip", "a" * 64))
    assert resources.source_hash(archive("https://b.example/y.zip", "a" * 64)) == base
    assert resources.source_hash(archive("https://a.example/x.zip", "b" * 64)) != base


def test_file_boundaries_are_part_of_the_hash() -> None:
    joined = _function(source={"inline": {"files": [{"name": "a", "content": "bc"}]}})
    split = _function(source={"inline": {"files": [{"name": "ab", "content": "c"}]}})
    assert resources.source_hash(joined) != resources.source_hash(split)


_SHA = "b" * 64
_IMAGE = "registry.example.com/layers/tools@sha256:" + "a" * 64


def _layer(name: str, sha256: str = _SHA) -> dict[str, Any]:
    return {"name": name, "archive": {"url": f"https://example.com/{name}.zip", "sha256": sha256}}


def test_a_function_without_layers_hashes_as_before_layers_existed() -> None:
    assert resources.source_hash(_function()) == resources.source_hash(_function(layers=[]))


def test_adding_changing_or_reordering_layers_changes_the_hash() -> None:
    one = [_layer("a")]
    two = [_layer("a"), {"name": "b", "image": _IMAGE}]
    variants = [
        [],
        one,
        [_layer("a", "c" * 64)],
        two,
        list(reversed(two)),
        [_layer("a"), {"name": "b", "image": _IMAGE.replace("a" * 64, "e" * 64)}],
    ]
    hashes = {resources.source_hash(_function(layers=layers)) for layers in variants}
    assert len(hashes) == len(variants)


def test_a_layer_is_hashed_by_its_content_not_its_name_or_url() -> None:
    renamed = {"name": "other", "archive": {"url": "https://mirror.example/x.zip", "sha256": _SHA}}
    assert resources.source_hash(_function(layers=[_layer("a")])) == resources.source_hash(
        _function(layers=[renamed])
    )
