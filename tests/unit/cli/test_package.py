"""A folder as a Function's inline source: what is sent, what is refused and why, the hash that
tells an unchanged deploy, and the Function made from function.yaml."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Mapping
from typing import Any

import pytest

from kfn.api import function
from kfn.cli import errors, package

FUNCTION: dict[str, Any] = {
    "apiVersion": "kfn.dev/v1alpha1",
    "kind": "Function",
    "metadata": {"name": "hello"},
    "spec": {"runtime": "python3.13", "handler": "app.handler"},
}


def write(root: pathlib.Path, files: Mapping[str, str | bytes]) -> pathlib.Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def names(source: package.Source) -> list[str]:
    return [f.name for f in source.files]


# --- what is sent ---------------------------------------------------------------------------------


def test_the_source_is_every_file_of_the_folder_and_its_subfolders_sorted_by_name(
    tmp_path: pathlib.Path,
) -> None:
    write(tmp_path, {"z.py": "z", "app.py": "a", "lib/b/deep.py": "d", "lib/a.py": "l"})

    source = package.read(tmp_path)

    assert names(source) == ["app.py", "lib/a.py", "lib/b/deep.py", "z.py"]
    assert source.to_spec() == {
        "inline": {
            "files": [
                {"name": "app.py", "content": "a"},
                {"name": "lib/a.py", "content": "l"},
                {"name": "lib/b/deep.py", "content": "d"},
                {"name": "z.py", "content": "z"},
            ]
        }
    }


def test_the_default_ignores_and_kfnignore_leave_files_out(tmp_path: pathlib.Path) -> None:
    write(
        tmp_path,
        {
            "app.py": "a",
            "requirements.txt": "requests==2.32.3\n",
            "function.yaml": "spec: {}\n",
            ".kfnignore": "events/\n*.md\n!KEEP.md\n",
            "README.md": "r",
            "KEEP.md": "k",
            "events/event.json": "{}",
            ".git/HEAD": "ref",
            "__pycache__/app.cpython-313.pyc": b"\x00\x01",
            "lib/x.pyc": b"\x00",
            "node_modules/left-pad/index.js": "x",
            ".venv/bin/python": "x",
        },
    )

    assert names(package.read(tmp_path)) == ["KEEP.md", "app.py", "requirements.txt"]


def test_more_patterns_can_leave_out_a_function_yaml_kept_elsewhere(
    tmp_path: pathlib.Path,
) -> None:
    write(tmp_path, {"app.py": "a", "deploy/prod.yaml": "x"})

    assert names(package.read(tmp_path, also_ignore=["/deploy/prod.yaml"])) == ["app.py"]


# --- what is refused ------------------------------------------------------------------------------


def test_a_binary_file_is_refused_with_its_name_and_what_to_do(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {"app.py": "a", "img/logo.png": b"\x89PNG\r\n\x1a\n\x00\x00"})

    with pytest.raises(errors.CliError) as caught:
        package.read(tmp_path)

    message = str(caught.value)
    assert "inline source holds UTF-8 text only, and img/logo.png is not" in message
    assert ".kfnignore" in message
    assert "an archive or an image" in message


def test_text_that_is_not_utf8_is_refused(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {"app.py": "a", "latin1.txt": "café".encode("latin-1")})

    with pytest.raises(errors.CliError, match=r"latin1\.txt is not"):
        package.read(tmp_path)


def test_source_beyond_the_inline_limit_is_refused_naming_the_largest_files(
    tmp_path: pathlib.Path,
) -> None:
    half = function.INLINE_SOURCE_LIMIT // 2
    write(tmp_path, {"app.py": "a", "data/big.json": "x" * half, "data/bigger.json": "y" * half})

    with pytest.raises(errors.CliError) as caught:
        package.read(tmp_path)

    message = str(caught.value)
    assert f"hold {function.INLINE_SOURCE_LIMIT + 1} characters" in message
    assert f"at most {function.INLINE_SOURCE_LIMIT}" in message
    assert f"data/big.json ({half})" in message
    assert "configMapRef, an archive or an image" in message


def test_source_of_exactly_the_inline_limit_is_sent(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {"app.py": "a" * function.INLINE_SOURCE_LIMIT})

    assert package.read(tmp_path).characters == function.INLINE_SOURCE_LIMIT


def test_the_limit_counts_characters_not_bytes(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {"app.py": "é" * function.INLINE_SOURCE_LIMIT})

    assert package.read(tmp_path).characters == function.INLINE_SOURCE_LIMIT


def test_more_files_than_inline_source_holds_are_refused_naming_the_fullest_folders(
    tmp_path: pathlib.Path,
) -> None:
    write(tmp_path, {f"vendor/m{i}.py": "" for i in range(package.MAX_FILES)} | {"app.py": ""})

    with pytest.raises(errors.CliError) as caught:
        package.read(tmp_path)

    assert f"has {package.MAX_FILES + 1} files to deploy" in str(caught.value)
    assert f"vendor/ ({package.MAX_FILES})" in str(caught.value)


def test_a_file_name_the_api_refuses_is_refused_before_deploying(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {"app.py": "a", "my notes.txt": "n"})

    with pytest.raises(errors.CliError, match=r"my notes\.txt holds characters"):
        package.read(tmp_path)


def test_a_folder_with_nothing_to_send_is_refused(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {".kfnignore": "*\n"})

    with pytest.raises(errors.CliError, match="there are no files to deploy"):
        package.read(tmp_path)


def test_a_link_to_a_directory_is_refused_rather_than_followed(tmp_path: pathlib.Path) -> None:
    code = write(tmp_path / "code", {"app.py": "a"})
    write(tmp_path / "elsewhere", {"secret.txt": "s"})
    os.symlink(tmp_path / "elsewhere", code / "lib")

    with pytest.raises(errors.CliError, match="lib is a symbolic link to a directory"):
        package.read(code)


# --- the hash -------------------------------------------------------------------------------------


def test_the_hash_is_the_same_for_the_same_files_wherever_and_whenever_read(
    tmp_path: pathlib.Path,
) -> None:
    files: dict[str, str | bytes] = {"app.py": "a", "lib/util.py": "u"}
    first = package.read(write(tmp_path / "one", files)).hash
    # Written in the other order, in another folder, with an ignored file more.
    second = package.read(
        write(tmp_path / "two", {"lib/util.py": "u", "app.py": "a", "x.pyc": b"\x00"})
    ).hash

    assert first == second == package.read(tmp_path / "one").hash
    assert len(first) == 64


def test_the_hash_changes_with_a_files_content_or_name(tmp_path: pathlib.Path) -> None:
    base = package.check([("app.py", b"a"), ("lib.py", b"l")]).hash

    assert package.check([("app.py", b"b"), ("lib.py", b"l")]).hash != base
    assert package.check([("main.py", b"a"), ("lib.py", b"l")]).hash != base
    assert package.check([("app.py", b"a")]).hash != base
    # Bytes moved between a name and a content do not collide.
    assert package.check([("ab", b"c")]).hash != package.check([("a", b"bc")]).hash


# --- the Function to apply ------------------------------------------------------------------------


def test_the_manifest_adds_the_folder_as_inline_source_with_its_hash(
    tmp_path: pathlib.Path,
) -> None:
    write(tmp_path, {"app.py": "def handler(e, c):\n    return e\n", "function.yaml": "x"})

    applied = package.manifest(FUNCTION, tmp_path, "team-a")

    fn = function.Function.model_validate(applied)
    assert fn.metadata.namespace == "team-a"
    assert fn.spec.source.inline is not None
    assert [f.name for f in fn.spec.source.inline.files] == ["app.py"]
    assert applied["metadata"]["annotations"] == {
        package.SOURCE_HASH_ANNOTATION: package.read(tmp_path).hash
    }
    assert "source" not in FUNCTION["spec"], "the document given is left as it was"


def test_a_function_yaml_that_names_its_source_is_sent_as_written(tmp_path: pathlib.Path) -> None:
    document = {**FUNCTION, "spec": {**FUNCTION["spec"], "source": {"configMapRef": {"name": "c"}}}}

    applied = package.manifest(document, tmp_path / "not-even-there", "default")

    assert applied["spec"]["source"] == {"configMapRef": {"name": "c"}}
    assert "annotations" not in applied["metadata"]


def test_a_namespace_in_function_yaml_must_be_the_one_deployed_to(tmp_path: pathlib.Path) -> None:
    write(tmp_path, {"app.py": "a"})
    document = {**FUNCTION, "metadata": {"name": "hello", "namespace": "prod"}}

    assert package.manifest(document, tmp_path, "prod")["metadata"]["namespace"] == "prod"
    with pytest.raises(errors.CliError, match="pass --namespace=prod"):
        package.manifest(document, tmp_path, "dev")


def test_an_invalid_function_is_refused_with_the_apis_own_message(
    tmp_path: pathlib.Path,
) -> None:
    write(tmp_path, {"app.py": "a"})
    document = {**FUNCTION, "spec": {"runtime": "python3.13", "handler": "app-handler"}}

    with pytest.raises(errors.CliError) as caught:
        package.manifest(document, tmp_path, "default")

    assert "the Function hello is not valid" in str(caught.value)
    assert "a Python handler must look like module.function" in str(caught.value)


def test_a_document_that_is_not_a_function_is_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(errors.CliError, match="must hold a Function"):
        package.manifest({**FUNCTION, "kind": "Trigger"}, tmp_path, "default")


def test_function_yaml_may_hold_more_documents_and_bad_yaml_says_so() -> None:
    text = "apiVersion: kfn.dev/v1alpha1\nkind: Function\n---\n---\nkind: Trigger\n"

    assert [d["kind"] for d in package.parse_documents(text)] == ["Function", "Trigger"]
    with pytest.raises(errors.CliError, match=r"function\.yaml is not valid YAML"):
        package.parse_documents("a: [\n")
    with pytest.raises(
        errors.CliError, match=r"document 1 of function\.yaml is not a YAML mapping"
    ):
        package.parse_documents("- a\n")


@pytest.mark.parametrize(
    ("spec", "files", "warned"),
    [
        ({"runtime": "python3.13", "handler": "app.handler"}, ["app.py"], False),
        ({"runtime": "python3.13", "handler": "app.main.handler"}, ["app/main.py"], False),
        ({"runtime": "python3.13", "handler": "pkg.handler"}, ["pkg/__init__.py"], False),
        ({"runtime": "python3.13", "handler": "app.handler"}, ["main.py"], True),
        ({"runtime": "nodejs22", "handler": "src/app.handler"}, ["src/app.mjs"], False),
        ({"runtime": "nodejs22", "handler": "index.handler"}, ["app.js"], True),
    ],
)
def test_a_handler_whose_file_is_not_sent_is_warned_about(
    spec: dict[str, str], files: list[str], warned: bool
) -> None:
    assert (package.handler_warning(spec, files) is not None) is warned
