"""An S3-compatible store in a test namespace: versitygw on an emptyDir.

``deploy_s3_store(namespace, webhook_url=...)`` creates a Secret with fresh
credentials (annotated so that kfn may send them to the store's ``endpoint``), a
Deployment and a Service ``s3`` (port 7070) running the
``kfn/versitygw`` image that ``kfncluster up`` builds from the Go module
proxy, and waits until the gateway answers a signed request from the host.

versitygw's posix backend keeps buckets as directories and object metadata
in extended attributes (``user.*``) of the files; the emptyDir lives on the
node's ext4, which has them, so no sidecar metadata directory is needed.

Event notifications: with ``webhook_url`` the gateway POSTs one JSON document
``{"Records": [...]}`` (S3's event-notification shape) for every object event
of every bucket — one global webhook, sent fire-and-forget from a goroutine
with a 3 s client timeout and no retry. At start it POSTs a test event
(``{"Service": "S3", "Event": "s3:TestEvent", ...}``, no ``Records``) and
*exits* if the connection is refused (a timeout is tolerated): so the
receiver must be listening before the store starts, or the pod restarts
until it is.

kfn-bucket takes a notification only signed for its path: :func:`events_url` is the URL
with the namespace's token as its password (Go's HTTP client sends it as Basic
authentication), the ``url`` the operator writes into the namespace's Secret
``kfn-bucket-events`` once it has a Push Trigger, made here from the release's key so that
a store can start before any Trigger.

Requests from the host go to the pod IP (``host_endpoint``), signed with a
small stdlib AWS Signature V4 signer, so tests need no S3 client library.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import hashlib
import hmac
import http.client
import json
import secrets
import urllib.parse
from typing import Any

from kfn.authn import webhooks
from kfncluster import config
from tests.cluster import kubeutil

PORT = 7070
NAME = "s3"
REGION = "us-east-1"
IMAGE = config.VERSITYGW_IMAGE
#: The Secret annotation listing where kfn may send the Secret (docs/security.md).
ALLOWED_ENDPOINTS = "kfn.dev/allowed-endpoints"


def endpoint_of(namespace: str) -> str:
    """Where Triggers reach the store of ``namespace``."""
    return f"http://{NAME}.{namespace}.svc.{config.CLUSTER_DOMAIN}:{PORT}"


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass(frozen=True)
class S3Store:
    """A running store: where it answers, its root credentials, and a few requests."""

    namespace: str
    endpoint: str
    host_endpoint: str
    access_key: str
    secret_key: str
    secret_name: str
    region: str = REGION

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """A SigV4-signed request to the store from the host."""
        url = urllib.parse.urlsplit(self.host_endpoint)
        signed = sign_v4(
            method,
            url.netloc,
            path,
            query=query or {},
            headers=headers or {},
            body=body,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            now=datetime.datetime.now(datetime.UTC),
        )
        target = _quote_path(path) + (f"?{_canonical_query(query)}" if query else "")
        conn = http.client.HTTPConnection(url.hostname or "", url.port or PORT, timeout=10)
        try:
            conn.request(method, target, body=body, headers=signed)
            resp = conn.getresponse()
            return Response(resp.status, dict(resp.getheaders()), resp.read())
        finally:
            conn.close()

    def _ok(self, resp: Response, what: str) -> Response:
        if resp.status >= 300:
            raise AssertionError(f"{what}: HTTP {resp.status} {resp.body[:300]!r}")
        return resp

    def create_bucket(self, bucket: str) -> None:
        self._ok(self.request("PUT", f"/{bucket}"), f"create bucket {bucket}")

    def put_object(self, bucket: str, key: str, data: bytes) -> str:
        """Uploads ``data``; returns the object's ETag (without quotes)."""
        resp = self._ok(self.request("PUT", f"/{bucket}/{key}", data), f"put {bucket}/{key}")
        return resp.headers.get("ETag", "").strip('"')

    def get_object(self, bucket: str, key: str) -> bytes:
        return self._ok(self.request("GET", f"/{bucket}/{key}"), f"get {bucket}/{key}").body

    def delete_object(self, bucket: str, key: str) -> None:
        self._ok(self.request("DELETE", f"/{bucket}/{key}"), f"delete {bucket}/{key}")


# --- AWS Signature Version 4 ---------------------------------------------------------


def _quote_path(path: str) -> str:
    return urllib.parse.quote(path, safe="/-_.~")


def _canonical_query(query: dict[str, str] | None) -> str:
    return "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
        for k, v in sorted((query or {}).items())
    )


def sign_v4(
    method: str,
    host: str,
    path: str,
    *,
    query: dict[str, str],
    headers: dict[str, str],
    body: bytes,
    access_key: str,
    secret_key: str,
    region: str,
    now: datetime.datetime,
    service: str = "s3",
) -> dict[str, str]:
    """The request's headers plus ``Host``, ``X-Amz-Date``, ``X-Amz-Content-Sha256`` and
    ``Authorization`` (AWS Signature Version 4, every header signed)."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    payload_hash = hashlib.sha256(body).hexdigest()
    all_headers = {
        **headers,
        "Host": host,
        "X-Amz-Date": amz_date,
        "X-Amz-Content-Sha256": payload_hash,
    }
    canonical = {k.lower(): " ".join(v.strip().split()) for k, v in all_headers.items()}
    signed_headers = ";".join(sorted(canonical))
    canonical_request = "\n".join(
        [
            method,
            _quote_path(path),
            _canonical_query(query),
            "".join(f"{k}:{canonical[k]}\n" for k in sorted(canonical)),
            signed_headers,
            payload_hash,
        ]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{secret_key}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    all_headers["Authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return all_headers


# --- deployment -------------------------------------------------------------------------


def events_key(kfn: str) -> bytes:
    """The key the release's notification tokens derive from (its Secret kfn-bucket)."""
    secret = kubeutil.kubectl_json("-n", kfn, "get", "secret", "kfn-bucket")
    return base64.b64decode(secret["data"]["events-key"])


def events_url(kfn: str, namespace: str, trigger: str = "") -> str:
    """Where a store sends ``namespace``'s notifications (or one Trigger's), signed for it."""
    token = webhooks.token(events_key(kfn), namespace, trigger)
    base = f"http://kfn-bucket.{kfn}.svc.{config.CLUSTER_DOMAIN}:80"
    return webhooks.signed_url(base, webhooks.path(namespace, trigger), token)


def manifests(
    namespace: str, *, access_key: str, secret_key: str, webhook_url: str | None
) -> list[dict[str, Any]]:
    """The Secret, Deployment and Service of a store (Pod Security ``restricted``)."""
    labels = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/part-of": "kfn-tests"}
    secret_name = f"{NAME}-credentials"
    args = [f"--port=$(POD_IP):{PORT}", "--health=/_health", "--quiet"]
    if webhook_url:
        args.append(f"--event-webhook-url={webhook_url}")
    args += ["posix", "/data"]
    key_ref = {"secretKeyRef": {"name": secret_name, "key": "AWS_ACCESS_KEY_ID"}}
    secret_ref = {"secretKeyRef": {"name": secret_name, "key": "AWS_SECRET_ACCESS_KEY"}}
    container = {
        "name": "versitygw",
        "image": IMAGE,
        "args": args,
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "ROOT_ACCESS_KEY", "valueFrom": key_ref},
            {"name": "ROOT_SECRET_KEY", "valueFrom": secret_ref},
        ],
        "ports": [{"name": "s3", "containerPort": PORT}],
        "readinessProbe": {
            "httpGet": {"path": "/_health", "port": PORT},
            "periodSeconds": 1,
            "failureThreshold": 3,
        },
        "resources": {
            "requests": {"cpu": "50m", "memory": "64Mi"},
            "limits": {"memory": "256Mi"},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "data", "mountPath": "/data"},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": secret_name,
                "namespace": namespace,
                "labels": labels,
                "annotations": {ALLOWED_ENDPOINTS: endpoint_of(namespace)},
            },
            "type": "Opaque",
            "stringData": {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": secret_key},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": 1,
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "enableServiceLinks": False,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "fsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                        "volumes": [
                            {"name": "data", "emptyDir": {}},
                            {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": NAME, "namespace": namespace, "labels": labels},
            "spec": {
                "selector": {"app.kubernetes.io/name": NAME},
                "ports": [{"name": "s3", "port": PORT, "targetPort": PORT}],
            },
        },
    ]


def deploy_s3_store(namespace: str, *, webhook_url: str | None, timeout: float = 90) -> S3Store:
    """Deploys a store into ``namespace`` and returns it once it answers from the host."""
    access_key = "kfn" + secrets.token_hex(8)
    secret_key = secrets.token_urlsafe(30)
    docs = manifests(
        namespace, access_key=access_key, secret_key=secret_key, webhook_url=webhook_url
    )
    listing = {"apiVersion": "v1", "kind": "List", "items": docs}
    kubeutil.kubectl("apply", "-f", "-", input=json.dumps(listing))
    selector = f"app.kubernetes.io/name={NAME}"

    def ready_pod_ip() -> str | None:
        pods = kubeutil.kubectl_json("-n", namespace, "get", "pods", "-l", selector)["items"]
        for pod in pods:
            conditions = pod.get("status", {}).get("conditions", [])
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                return str(pod["status"]["podIP"])
        return None

    pod_ip = kubeutil.wait_for(f"the S3 store in {namespace} to be Ready", ready_pod_ip, timeout)
    store = S3Store(
        namespace=namespace,
        endpoint=endpoint_of(namespace),
        host_endpoint=f"http://{pod_ip}:{PORT}",
        access_key=access_key,
        secret_key=secret_key,
        secret_name=f"{NAME}-credentials",
    )
    kubeutil.wait_for(
        "the S3 store to answer a signed request",
        lambda: store.request("GET", "/").status == 200,
        timeout=30,
    )
    return store
