"""Caching package proxies on the node, for builds inside the cluster.

Pods cannot reach off the machine (the egress guard), yet a function's build
installs its dependencies from PyPI or npm. So the node runs two caching
proxies as supervised host processes, listening on the node IP where pods
reach them, and the host process is what talks to the real registry, exactly
as pip and npm on this machine do:

* ``devpi-server`` (PyPI): its ``root/pypi`` index mirrors pypi.org on demand;
  installed into its own virtualenv under the cache, pinned.
* ``verdaccio`` (npm): proxies registry.npmjs.org with its ``npmjs`` uplink;
  installed with the machine's npm under the cache, pinned.

Both keep what they fetched in the cache (``~/.cache/kfn/proxies``), so it
survives a tear-down and a second build of the same dependencies never leaves
the machine. The chart's ``builder`` values point builds at them.
"""

from __future__ import annotations

import http.client
import json
import pathlib
import shutil
import sys
import time

import yaml

from kfncluster import config, host

DEVPI_VERSION = "6.20.3"
VERDACCIO_VERSION = "5.33.0"
DEVPI_PORT = 3141
VERDACCIO_PORT = 4873
PYPI_INDEX_URL = f"http://{config.NODE_IP}:{DEVPI_PORT}/root/pypi/+simple/"
NPM_REGISTRY_URL = f"http://{config.NODE_IP}:{VERDACCIO_PORT}/"
UPSTREAM_NPM = "https://registry.npmjs.org/"
#: The page asked for to warm the PyPI mirror: small, and every build's pip needs it.
WARM_PROJECT = "pip"


def devpi_venv(paths: config.Paths) -> pathlib.Path:
    return paths.cache / f"devpi-venv-{DEVPI_VERSION}"


def devpi_serverdir(paths: config.Paths) -> pathlib.Path:
    return paths.cache / "proxies" / "devpi"


def verdaccio_prefix(paths: config.Paths) -> pathlib.Path:
    return paths.cache / f"verdaccio-{VERDACCIO_VERSION}"


def verdaccio_storage(paths: config.Paths) -> pathlib.Path:
    return paths.cache / "proxies" / "verdaccio"


def verdaccio_config_path(paths: config.Paths) -> pathlib.Path:
    return paths.config / "verdaccio.yaml"


def verdaccio_config(paths: config.Paths) -> str:
    """Anyone on the node may read through the proxy; nobody may publish to it."""
    return yaml.safe_dump(
        {
            "storage": str(verdaccio_storage(paths)),
            "uplinks": {"npmjs": {"url": UPSTREAM_NPM, "timeout": "60s", "maxage": "30m"}},
            "packages": {
                "@*/*": {"access": "$all", "publish": "$authenticated", "proxy": "npmjs"},
                "**": {"access": "$all", "publish": "$authenticated", "proxy": "npmjs"},
            },
            "web": {"enable": False},
            "auth": {
                "htpasswd": {"file": str(verdaccio_storage(paths) / "htpasswd"), "max_users": -1}
            },
            "log": {"type": "stdout", "format": "pretty", "level": "warn"},
            "max_body_size": "100mb",
        },
        sort_keys=False,
    )


def verdaccio_package() -> dict[str, object]:
    """The npm project that installs verdaccio, pinned.

    ``verdaccio-audit`` asks for ``node-fetch@cjs``, a dist-tag; registries and mirrors that
    keep only the ``latest`` tag cannot resolve it, so it is pinned to the version that tag
    names (2.7.0, the last CommonJS release).
    """
    return {
        "name": "kfn-verdaccio",
        "private": True,
        "dependencies": {"verdaccio": VERDACCIO_VERSION},
        "overrides": {"verdaccio-audit": {"node-fetch": "2.7.0"}},
    }


def argv(name: str, paths: config.Paths) -> list[str]:
    """The command line of proxy ``name`` (``devpi`` or ``verdaccio``)."""
    if name == "devpi":
        return [
            str(devpi_venv(paths) / "bin" / "devpi-server"),
            f"--serverdir={devpi_serverdir(paths)}",
            f"--host={config.NODE_IP}",
            f"--port={DEVPI_PORT}",
            # Pages of PyPI are refreshed after an hour; files are immutable and kept.
            "--mirror-cache-expiry=3600",
        ]
    if name == "verdaccio":
        return [
            shutil.which("node") or "/usr/bin/node",
            str(verdaccio_prefix(paths) / "node_modules" / "verdaccio" / "bin" / "verdaccio"),
            f"--config={verdaccio_config_path(paths)}",
            f"--listen={config.NODE_IP}:{VERDACCIO_PORT}",
        ]
    raise KeyError(name)


def ensure_installed(paths: config.Paths, log: pathlib.Path) -> list[str]:
    """Installs the pinned proxies once (cached by version); returns what it installed."""
    installed = []
    venv = devpi_venv(paths)
    if not (venv / ".complete").exists():
        shutil.rmtree(venv, ignore_errors=True)
        host.run_logged(
            [sys.executable, "-m", "venv", str(venv)], log, "creating devpi's virtualenv"
        )
        host.run_logged(
            [str(venv / "bin" / "pip"), "install", "--quiet", f"devpi-server=={DEVPI_VERSION}"],
            log,
            f"pip install devpi-server=={DEVPI_VERSION}",
        )
        (venv / ".complete").touch()
        installed.append(f"devpi-server {DEVPI_VERSION}")
    serverdir = devpi_serverdir(paths)
    if not (serverdir / ".nodeinfo").exists():
        serverdir.mkdir(parents=True, exist_ok=True)
        host.run_logged(
            [str(venv / "bin" / "devpi-init"), f"--serverdir={serverdir}"],
            log,
            "devpi-init",
        )
    prefix = verdaccio_prefix(paths)
    if not (prefix / ".complete").exists():
        shutil.rmtree(prefix, ignore_errors=True)
        prefix.mkdir(parents=True)
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is required to install verdaccio")
        (prefix / "package.json").write_text(json.dumps(verdaccio_package(), indent=2) + "\n")
        host.run_logged(
            [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--omit=dev"],
            log,
            f"npm install verdaccio@{VERDACCIO_VERSION}",
        )
        (prefix / ".complete").touch()
        installed.append(f"verdaccio {VERDACCIO_VERSION}")
    verdaccio_storage(paths).mkdir(parents=True, exist_ok=True)
    return installed


def write_configs(paths: config.Paths) -> None:
    paths.config.mkdir(parents=True, exist_ok=True)
    verdaccio_config_path(paths).write_text(verdaccio_config(paths))


def warm_pypi(timeout: float = 180.0) -> float:
    """Asks devpi for one project page and returns how long it took.

    A new devpi mirror sets itself up with its upstream on the first page it is asked for,
    which took 10-20 s here: longer than pip's read timeout in a build started at once.
    Asking during bring-up moves that wait out of the first build. Raises OSError (or
    http.client's errors) when devpi does not answer 200 within ``timeout``.
    """
    started = time.monotonic()
    conn = http.client.HTTPConnection(config.NODE_IP, DEVPI_PORT, timeout=timeout)
    try:
        conn.request("GET", f"/root/pypi/+simple/{WARM_PROJECT}/")
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise OSError(f"devpi answered {resp.status} for the {WARM_PROJECT} page")
    finally:
        conn.close()
    return time.monotonic() - started
