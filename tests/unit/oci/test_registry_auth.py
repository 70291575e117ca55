"""kfn.oci against registries that want a login: docker-registry over TLS with token auth
(kfn's token service on another loopback port) or with htpasswd (Basic).

The token registry is shared by the session (``token_registry`` in tests/unit/conftest.py);
each test uses repositories of its own.
"""

from __future__ import annotations

import datetime
import http.server
import json
import pathlib
import re
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest

from kfn import oci
from tests.unit import registries


def _image(
    tmp_path: pathlib.Path, name: str, files: dict[str, str]
) -> tuple[oci.BlobStore, oci.Image]:
    src = tmp_path / f"src-{name}"
    for path, content in files.items():
        (src / path).parent.mkdir(parents=True, exist_ok=True)
        (src / path).write_text(content)
    store = oci.BlobStore(tmp_path / f"store-{name}")
    layer = store.layer_from_tree([("app", src)])
    return store, store.image([layer], oci.ImageConfig(cmd=["sh"], env={"NAME": name}))


@pytest.fixture(scope="module")
def base(
    token_registry: registries.TokenRegistry, tmp_path_factory: pytest.TempPathFactory
) -> tuple[oci.Reference, oci.Image]:
    """``kfn/base:1``, pushed by the admin."""
    _, image = _image(tmp_path_factory.mktemp("base"), "base", {"lib/base.txt": "the base\n"})
    ref = oci.Reference(token_registry.host, "kfn/base", "1")
    token_registry.client(token_registry.admin).push_image(image, ref)
    return ref, image


def _token_decisions(reg: registries.TokenRegistry, subject: str) -> list[str]:
    return [
        line for line in reg.token_log.read_text().splitlines() if f"token for {subject}:" in line
    ]


def test_the_admin_pushes_a_public_image_and_anyone_pulls_it(
    token_registry: registries.TokenRegistry, base: tuple[oci.Reference, oci.Image]
) -> None:
    ref, image = base
    anonymous = token_registry.client()
    found = anonymous.get_manifest(ref)
    assert found is not None
    assert found[0] == image.digest
    config = json.loads(anonymous.get_blob(ref.repository, image.config.digest))
    assert config["config"]["Env"] == ["NAME=base"]


def test_a_namespace_robot_pushes_and_pulls_its_function_mounting_the_base_layers(
    token_registry: registries.TokenRegistry,
    base: tuple[oci.Reference, oci.Image],
    tmp_path: pathlib.Path,
) -> None:
    base_ref, base_image = base
    robot = token_registry.client(token_registry.robot("a"))
    store, code = _image(tmp_path, "code", {"handler.py": "def handler(e, c): return 1\n"})
    target = oci.Reference(token_registry.host, "fn/a/app", "v1")
    digest = oci.extend(
        robot,
        base_ref,
        store=store,
        layers=list(code.layers),
        overrides=oci.ImageConfig(entrypoint=["python3"]),
        target=target,
    )
    found = robot.get_manifest(target.with_digest(digest))
    assert found is not None
    layers = [d["digest"] for d in found[1]["layers"]]
    assert layers == [base_image.layers[0].blob.digest, code.layers[0].blob.digest]
    assert robot.has_blob("fn/a/app", base_image.layers[0].blob.digest), "mounted, not copied"
    assert (
        robot.get_blob("fn/a/app", code.layers[0].blob.digest)
        == code.layers[0].blob.path.read_bytes()
    )


def test_a_robot_can_neither_push_to_nor_pull_from_another_namespace(
    token_registry: registries.TokenRegistry, tmp_path: pathlib.Path
) -> None:
    _, image = _image(tmp_path, "b", {"b.py": "b"})
    theirs = oci.Reference(token_registry.host, "fn/b/app", "v1")
    token_registry.client(token_registry.robot("b")).push_image(image, theirs)
    robot_a = token_registry.client(token_registry.robot("a"))

    with pytest.raises(oci.RegistryAuthError) as push:
        robot_a.push_image(image, oci.Reference(token_registry.host, "fn/b/app", "v2"))
    assert re.search(
        r"registry 127\.0\.0\.1:\d+ denied push to fn/b/app with the credentials of "
        r"Secret a/kfn-registry: HTTP (401|403) ",
        str(push.value),
    ), push.value

    with pytest.raises(oci.RegistryAuthError) as pull:
        robot_a.get_manifest(theirs)
    assert (
        "denied pull from fn/b/app with the credentials of Secret a/kfn-registry: HTTP 401"
        in str(pull.value)
    )
    with pytest.raises(oci.RegistryAuthError, match="denied pull from fn/b/app"):
        robot_a.get_blob("fn/b/app", image.config.digest)


def test_a_robot_cannot_mount_another_namespaces_blobs_into_its_own(
    token_registry: registries.TokenRegistry, tmp_path: pathlib.Path
) -> None:
    _, image = _image(tmp_path, "secret", {"secret.txt": "b's code"})
    token_registry.client(token_registry.robot("b")).push_image(
        image, oci.Reference(token_registry.host, "fn/b/secret", "v1")
    )
    robot_a = token_registry.client(token_registry.robot("a"))
    with pytest.raises(oci.RegistryAuthError) as err:
        robot_a.mount_blob("fn/a/stolen", image.layers[0].blob.digest, "fn/b/secret")
    assert "denied push to fn/a/stolen (mounting from fn/b/secret)" in str(err.value)
    assert not token_registry.client(token_registry.admin).has_blob(
        "fn/a/stolen", image.layers[0].blob.digest
    )


def test_anonymous_clients_pull_only_public_repositories_and_push_nothing(
    token_registry: registries.TokenRegistry,
    base: tuple[oci.Reference, oci.Image],
    tmp_path: pathlib.Path,
) -> None:
    _, image = _image(tmp_path, "anon", {"x": "x"})
    anonymous = token_registry.client()
    with pytest.raises(oci.RegistryAuthError) as push:
        anonymous.push_image(image, oci.Reference(token_registry.host, "kfn/anonymous", "1"))
    assert "denied push to kfn/anonymous without credentials: HTTP 401" in str(push.value)
    token_registry.client(token_registry.robot("c")).push_image(
        image, oci.Reference(token_registry.host, "fn/c/app", "1")
    )
    with pytest.raises(
        oci.RegistryAuthError, match="denied pull from fn/c/app without credentials"
    ):
        anonymous.get_manifest(oci.Reference(token_registry.host, "fn/c/app", "1"))
    assert anonymous.get_manifest(oci.Reference(token_registry.host, "kfn/missing", "1")) is None


def test_a_wrong_password_is_refused_naming_the_secret_and_the_token_services_answer(
    token_registry: registries.TokenRegistry,
) -> None:
    forged = token_registry.robot("a", key=b"not the service's key, 32 bytes.")
    with pytest.raises(oci.RegistryAuthError) as err:
        token_registry.client(forged).get_manifest(
            oci.Reference(token_registry.host, "fn/a/app", "v1")
        )
    assert str(err.value) == (
        f"registry {token_registry.host} refused the credentials of Secret a/kfn-registry "
        f"(token service {token_registry.token_url}): "
        "HTTP 401 UNAUTHORIZED: incorrect username or password"
    )


def test_expired_robot_credentials_are_refused_saying_they_expired(
    token_registry: registries.TokenRegistry,
) -> None:
    expired = token_registry.robot(
        "a", expires=datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=1)
    )
    with pytest.raises(oci.RegistryAuthError) as err:
        token_registry.client(expired).get_manifest(
            oci.Reference(token_registry.host, "fn/a/app", "v1")
        )
    message = str(err.value)
    assert "refused the credentials of Secret a/kfn-registry" in message
    assert "HTTP 401 UNAUTHORIZED: the robot credentials of namespace a expired at" in message


def test_tls_is_verified_against_the_ca_bundle_and_fails_without_it(
    token_registry: registries.TokenRegistry,
) -> None:
    ref = oci.Reference(token_registry.host, "kfn/missing", "1")
    with pytest.raises(oci.RegistryError) as err:
        oci.Registry(token_registry.host).get_manifest(ref)
    assert not isinstance(err.value, oci.RegistryAuthError)
    host = token_registry.host
    assert f"registry {host}: the TLS certificate of {host} is not trusted" in str(err.value)
    assert "CA bundle" in str(err.value)
    assert (
        oci.Registry(token_registry.host, ca_file=str(token_registry.ca_file)).get_manifest(ref)
        is None
    )

    address, port = host.split(":")
    with (
        socket.create_connection((address, int(port)), timeout=5) as sock,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ssl.create_default_context().wrap_socket(sock, server_hostname=address)
    with socket.create_connection((address, int(port)), timeout=5) as sock:
        context = ssl.create_default_context(cafile=str(token_registry.ca_file))
        with context.wrap_socket(sock, server_hostname=address) as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_a_plain_http_client_of_a_tls_registry_is_told_what_is_wrong(
    token_registry: registries.TokenRegistry,
) -> None:
    ref = oci.Reference(token_registry.host, "kfn/missing", "1")
    with pytest.raises(oci.RegistryError):
        oci.Registry(token_registry.host, plain_http=True).get_manifest(ref)


def test_a_push_asks_the_token_service_once_per_repository_and_kind_of_access(
    token_registry: registries.TokenRegistry, tmp_path: pathlib.Path
) -> None:
    store = oci.BlobStore(tmp_path / "store")
    layers = []
    for i in range(4):
        src = tmp_path / f"layer-{i}"
        src.mkdir()
        (src / "f").write_text(str(i))
        layers.append(store.layer_from_tree([("l", src)]))
    image = store.image(layers, oci.ImageConfig())
    robot = token_registry.client(token_registry.robot("cache"))
    robot.push_image(image, oci.Reference(token_registry.host, "fn/cache/app", "1"))
    decisions = _token_decisions(token_registry, "kfn+cache")
    assert len(decisions) == 2, decisions  # pull (looking for blobs), then pull,push
    robot.push_image(image, oci.Reference(token_registry.host, "fn/cache/app", "2"))
    assert len(_token_decisions(token_registry, "kfn+cache")) == 2, "cached tokens were reused"


def test_the_token_service_logs_each_decision_and_never_a_password(
    token_registry: registries.TokenRegistry,
) -> None:
    credentials = token_registry.robot("logged")
    client = token_registry.client(credentials)
    assert client.get_manifest(oci.Reference(token_registry.host, "fn/logged/app", "1")) is None
    with pytest.raises(oci.RegistryAuthError):
        client.get_manifest(oci.Reference(token_registry.host, "fn/other/app", "1"))
    decisions = _token_decisions(token_registry, "kfn+logged")
    assert decisions[0].endswith(
        "requested=['repository:fn/logged/app:pull'] granted=['repository:fn/logged/app:pull']"
    )
    assert decisions[1].endswith("requested=['repository:fn/other/app:pull'] granted=[]")
    log = token_registry.token_log.read_text()
    assert credentials.password not in log
    assert registries.ADMIN_PASSWORD not in log


def test_an_index_and_a_helm_chart_are_pushed_with_robot_credentials(
    token_registry: registries.TokenRegistry, tmp_path: pathlib.Path
) -> None:
    robot = token_registry.client(token_registry.robot("multi"))
    repository = "fn/multi/app"
    _, amd = _image(tmp_path, "amd64", {"a": "amd64"})
    _, arm = _image(tmp_path, "arm64", {"a": "arm64"})
    for image in (amd, arm):
        robot.push_image(
            image, oci.Reference(token_registry.host, repository, image.digest.replace(":", "-"))
        )
    index = oci.Reference(token_registry.host, repository, "multi")
    digest = robot.push_index(
        index,
        [
            (
                amd.digest,
                len(amd.manifest),
                oci.MEDIA_MANIFEST,
                {"architecture": "amd64", "os": "linux"},
            ),
            (
                arm.digest,
                len(arm.manifest),
                oci.MEDIA_MANIFEST,
                {"architecture": "arm64", "os": "linux"},
            ),
        ],
    )
    found = robot.get_manifest(index)
    assert found is not None
    assert found[0] == digest
    assert found[1]["mediaType"] == oci.MEDIA_INDEX
    resolved = robot.get_image_manifest(index, {"architecture": "arm64", "os": "linux"})
    assert resolved is not None
    assert resolved[0] == arm.digest

    store = oci.BlobStore(tmp_path / "chart")
    config = store.put_bytes(b'{"name":"kfn","version":"0.1.0"}', oci.MEDIA_HELM_CONFIG)
    chart = store.put_bytes(b"\x1f\x8b not really a chart", oci.MEDIA_HELM_CHART)
    for blob in (config, chart):
        robot.push_blob("fn/multi/chart", blob)
    chart_ref = oci.Reference(token_registry.host, "fn/multi/chart", "0.1.0")
    pushed = robot.put_manifest(chart_ref, oci.artifact_manifest(config, [chart]))
    found = robot.get_manifest(chart_ref)
    assert found is not None
    assert found[0] == pushed
    assert found[1]["config"]["mediaType"] == oci.MEDIA_HELM_CONFIG
    assert found[1]["layers"][0]["mediaType"] == oci.MEDIA_HELM_CHART


# Basic authentication


@pytest.fixture(scope="module")
def basic_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[registries.BasicRegistry]:
    with registries.basic_registry(
        tmp_path_factory.mktemp("basic-registry"), "pusher", "basic-password-for-tests"
    ) as found:
        yield found


def test_a_basic_auth_registry_takes_the_password_and_refuses_a_wrong_one(
    basic_registry: registries.BasicRegistry, tmp_path: pathlib.Path
) -> None:
    _, image = _image(tmp_path, "basic", {"b": "basic"})
    ref = oci.Reference(basic_registry.host, "team/app", "1")
    good = oci.Credentials(basic_registry.username, basic_registry.password, "Secret ns/basic")
    client = oci.Registry(
        basic_registry.host, credentials=good, ca_file=str(basic_registry.ca_file)
    )
    assert client.push_image(image, ref) == image.digest
    found = client.get_manifest(ref)
    assert found is not None
    assert found[0] == image.digest

    wrong = oci.Credentials(basic_registry.username, "guess", "Secret ns/basic")
    refused = oci.Registry(
        basic_registry.host, credentials=wrong, ca_file=str(basic_registry.ca_file)
    )
    with pytest.raises(oci.RegistryAuthError) as err:
        refused.get_manifest(ref)
    assert str(err.value) == (
        f"registry {basic_registry.host} refused the credentials of Secret ns/basic: "
        "HTTP 401 UNAUTHORIZED: authentication required"
    )
    anonymous = oci.Registry(basic_registry.host, ca_file=str(basic_registry.ca_file))
    with pytest.raises(
        oci.RegistryAuthError, match="denied pull from team/app without credentials: HTTP 401"
    ):
        anonymous.get_manifest(ref)


# A challenge in the middle of an upload


class _ChallengingUploads(http.server.BaseHTTPRequestHandler):
    """A registry stand-in that lets anyone start an upload but asks for Basic credentials
    on the PUT that carries the blob, after reading it: the client must send it again."""

    protocol_version = "HTTP/1.1"
    bodies: list[tuple[str | None, bytes]]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in {"Content-Length": "0", **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()

    def do_HEAD(self) -> None:
        self._reply(404)

    def do_POST(self) -> None:
        self._reply(202, {"Location": "/v2/team/app/blobs/uploads/u1?_state=x"})

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        authorization = self.headers.get("Authorization")
        self.bodies.append((authorization, body))
        if authorization is None:
            self._reply(401, {"WWW-Authenticate": 'Basic realm="uploads"'})
        else:
            self._reply(201)


def test_a_blob_upload_challenged_after_its_body_was_sent_is_sent_again_whole(
    tmp_path: pathlib.Path,
) -> None:
    bodies: list[tuple[str | None, bytes]] = []
    handler = type("Handler", (_ChallengingUploads,), {"bodies": bodies})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        store = oci.BlobStore(tmp_path / "store")
        blob = store.put_bytes(b"layer bytes " * 1000, oci.MEDIA_LAYER)
        credentials = oci.Credentials("u", "p", "Secret ns/x")
        host = f"127.0.0.1:{server.server_address[1]}"
        oci.Registry(host, credentials=credentials, plain_http=True).push_blob("team/app", blob)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert [auth is not None for auth, _ in bodies] == [False, True]
    assert bodies[0][1] == bodies[1][1] == blob.path.read_bytes()
