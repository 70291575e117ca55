"""A stand-in for the Kubernetes API on loopback, for the operator's reconcile of builds.

It keeps objects in memory by path and answers what :mod:`kfn.kube` asks: get, list (by
equality and existence label selectors, in a namespace or in all), server-side apply (the
applied fields merged into the object, which gets a uid when it is made), a merge patch of
``status``, the ``scale`` subresource (read and merge-patched as the object itself, whose
``spec.replicas`` it shares), create (a POST; a ``generateName`` gets a suffix) and delete.
It checks no schema and keeps no managed fields: tests look at what the operator wrote, and
at :attr:`KubeApi.requests`, each request's method and path.
"""

from __future__ import annotations

import copy
import http.server
import json
import threading
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

#: Collection path (``/apis/batch/v1/namespaces/team/jobs``) → name → object.
Store = dict[str, dict[str, dict[str, Any]]]


def merge(into: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch: mappings merged, anything else replaced, null deletes."""
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, dict) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


def _selected(obj: dict[str, Any], selector: str) -> bool:
    """Equality terms (``key=value``) and existence terms (``key``), as the API server reads
    them."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    terms = [term.split("=", 1) for term in selector.split(",") if term]
    return all(
        (labels.get(term[0]) == term[1]) if len(term) == 2 else term[0] in labels for term in terms
    )


class KubeApi:
    """The objects, and the server that serves them (see the module doc)."""

    def __init__(self) -> None:
        self.objects: Store = {}
        self.lock = threading.RLock()
        #: Every request's method and path (with its query), in order.
        self.requests: list[tuple[str, str]] = []

    def put(self, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Stores ``obj`` under its name (a uid added if it has none)."""
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        with self.lock:
            self.objects.setdefault(collection, {})[meta["name"]] = obj
        return obj

    def get(self, collection: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            return self.objects.get(collection, {}).get(name)

    def names(self, collection: str) -> list[str]:
        with self.lock:
            return sorted(self.objects.get(collection, {}))

    def _split(self, path: str) -> tuple[str, str | None, bool, bool]:
        """(collection, name, whether the status subresource, whether the scale subresource)
        of a request path."""
        parts = path.strip("/").split("/")
        sub = parts[-1] if "namespaces" in parts and len(parts) >= 6 else ""
        status, scale = sub == "status", sub == "scale"
        if status or scale:
            parts = parts[:-1]
        at = parts.index("namespaces") if "namespaces" in parts else -1
        if at >= 0 and len(parts) == at + 4:
            return "/" + "/".join(parts[:-1]), parts[-1], status, scale
        return "/" + "/".join(parts), None, status, scale

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path))
        url = urllib.parse.urlsplit(path)
        collection, name, status, scale = self._split(url.path)
        if method == "POST" and name is None:
            return self._create(collection, body)
        if method == "GET" and name is None:
            query = urllib.parse.parse_qs(url.query)
            return 200, {"items": self._list(collection, query), "metadata": {}}
        assert name is not None, path
        with self.lock:
            objects = self.objects.setdefault(collection, {})
            found = objects.get(name)
            if method == "PATCH" and found is None and not status and not scale:
                return 200, self.put(collection, copy.deepcopy(body))
            if found is None:
                return 404, {"message": f"{name} not found"}
            if method == "DELETE":
                return 200, objects.pop(name)
            if method == "PATCH" and status:
                merge(found.setdefault("status", {}), body.get("status") or {})
            elif method == "PATCH":
                merge(found, body)
            return 200, found

    def _create(self, collection: str, body: dict[str, Any]) -> tuple[int, Any]:
        meta = body.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:10]
        if not meta.get("name"):
            return 422, {"message": "name or generateName is required"}
        with self.lock:
            if meta["name"] in self.objects.get(collection, {}):
                return 409, {"message": f"{meta['name']} already exists"}
            return 201, self.put(collection, copy.deepcopy(body))

    def _list(self, collection: str, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        selector = (query.get("labelSelector") or [""])[0]
        parts = collection.strip("/").split("/")
        with self.lock:
            if "namespaces" in parts:
                found = list(self.objects.get(collection, {}).values())
            else:  # all namespaces: every collection of that kind
                prefix, plural = "/".join(parts[:-1]), parts[-1]
                found = [
                    obj
                    for path, objs in self.objects.items()
                    if path.startswith(f"/{prefix}/namespaces/") and path.endswith(f"/{plural}")
                    for obj in objs.values()
                ]
        return [obj for obj in found if _selected(obj, selector)]

    def serve(self) -> Iterator[str]:
        """Serves on loopback; yields the base URL."""
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                code, doc = api.answer(self.command, self.path, body)
                data = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._handle()

            def do_PATCH(self) -> None:
                self._handle()

            def do_POST(self) -> None:
                self._handle()

            def do_DELETE(self) -> None:
                self._handle()

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{server.server_port}"
        finally:
            server.shutdown()
            server.server_close()
