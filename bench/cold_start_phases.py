"""Where each cold start's time goes: the ``Server-Timing`` phases of ``--trials`` cold starts.

A Function at zero replicas (no pod left) is invoked once per trial through the invoke
Service's ClusterIP; the activator answers the request that paid for the cold start with
``Server-Timing`` (``docs/operations.md``, "Cold starts, phase by phase"): one entry per
phase and ``cold-start`` for the whole. This script collects them and prints, per phase,
the median and p90 in milliseconds and the phase's share of the median cold start, then
checks the one remainder, ``other``, against its bound: under 10 % of the median cold start.

The client's own time for the request (sending to complete response) is printed beside
the activator's ``cold-start`` total: the difference is the hop from this host to the
activator and back, which no phase counts.

    .venv/bin/python bench/cold_start_phases.py --trials 20
    .venv/bin/python bench/cold_start_phases.py --trials 20 --runtime nodejs22 --markdown

Expects kfn installed (``make up``). Everything it creates lives in one namespace that is
deleted at the end. All traffic goes to cluster addresses on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import statistics
import sys
import uuid

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path[:0] = [
    str(REPO / "bench"),
    str(REPO),
    str(REPO / "operator"),
    str(REPO / "hack" / "cluster"),
]

from kubernetes import client, config  # noqa: E402
from tests.cluster import httpload  # noqa: E402
from tests.cluster.invoking import bearer  # noqa: E402
from tests.cluster.kubeutil import KUBECONFIG, kubectl, kubectl_json  # noqa: E402

import cold_start  # noqa: E402
import pod_start  # noqa: E402
from kfn.activator import cold_start as cold_start_phases  # noqa: E402
from kfncluster import fnimage  # noqa: E402

#: The phases in the order the activator sends them; ``other`` is the only remainder.
PHASES = (*cold_start_phases.PHASES, cold_start_phases.OTHER)
TOTAL = "cold-start"
#: ``other`` must stay under this share of the median cold start.
OTHER_BOUND = 0.10


def server_timing(header: str) -> dict[str, float]:
    """``{name: milliseconds}`` from a ``Server-Timing`` value (entries without ``dur`` skipped)."""
    timings: dict[str, float] = {}
    for entry in header.split(","):
        name, *params = (part.strip() for part in entry.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "dur" and name:
                timings[name] = float(value.strip().strip('"'))
    return timings


def trial(
    api: client.CoreV1Api, ns: str, name: str, path: str, address: tuple[str, int]
) -> tuple[dict[str, float], float]:
    """One cold invocation: its phases (ms) and the client's own time for it (ms)."""
    label = f"kfn.dev/function={name},app.kubernetes.io/component=function"
    cold_start.wait_until(
        lambda: (
            cold_start._replicas(ns, name) == 0
            and not api.list_namespaced_pod(ns, label_selector=label).items
        ),
        f"{name} at zero with no pod left",
    )
    response = asyncio.run(httpload.request(*address, "POST", path, b"{}", headers=bearer()))
    if response.status != 200:
        raise SystemExit(f"cold invocation answered {response.status}: {response.body!r}")
    header = {k.lower(): v for k, v in response.headers.items()}.get("server-timing")
    if header is None:
        raise SystemExit("the cold invocation's answer has no Server-Timing header")
    timings = server_timing(header)
    missing = [p for p in (*PHASES, TOTAL) if p not in timings]
    if missing:
        raise SystemExit(f"Server-Timing lacks {missing}: {header}")
    return timings, response.seconds * 1000


def report(rows: list[dict[str, float]], client_ms: list[float], markdown: bool) -> bool:
    """Prints the table; True when ``other`` stays under its bound."""
    totals = [row[TOTAL] for row in rows]
    median_total = statistics.median(totals)
    lines = []
    for phase in (*PHASES, TOTAL):
        values = [row[phase] for row in rows]
        median, p90 = statistics.median(values), pod_start.percentile(values, 90)
        lines.append((phase, median, p90, median / median_total))
    if markdown:
        print("| phase | median (ms) | p90 (ms) | share of the median cold start |")
        print("|---|---:|---:|---:|")
        for phase, median, p90, share in lines:
            print(f"| `{phase}` | {median:.1f} | {p90:.1f} | {share * 100:.1f} % |")
    else:
        print(f"{'phase':<16} {'median':>9} {'p90':>9} {'share':>7}")
        for phase, median, p90, share in lines:
            print(f"{phase:<16} {median:7.1f}ms {p90:7.1f}ms {share * 100:6.1f}%")
    parts = statistics.median([sum(row[p] for p in PHASES) for row in rows])
    print(
        f"\nmedian of the phases' sum {parts:.1f} ms against the median cold start "
        f"{median_total:.1f} ms; the client's own median {statistics.median(client_ms):.1f} ms "
        f"(n={len(rows)})"
    )
    other = statistics.median([row["other"] for row in rows])
    share = other / median_total
    held = share < OTHER_BOUND
    print(
        f"other: median {other:.1f} ms = {share * 100:.1f} % of the median cold start "
        f"(bound {OTHER_BOUND * 100:.0f} %): {'held' if held else 'NOT held'}"
    )
    return held


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--namespace", default="kfn-system", help="where kfn runs")
    parser.add_argument(
        "--runtime",
        default="",
        help="a runtime to build the function on from inline source (default: python3.11 "
        "from a pre-built image, no build to wait for)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args()

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(KUBECONFIG)))  # type: ignore[no-untyped-call]
    service = kubectl_json("-n", args.namespace, "get", "service", "kfn-invoke")
    address = (service["spec"]["clusterIP"], 80)
    ns = f"bench-phases-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    rows: list[dict[str, float]] = []
    client_ms: list[float] = []
    try:
        if args.runtime:
            spec = cold_start.runtime_function(args.runtime)
        else:
            image = fnimage.push_python_function(
                "bench/cold-start", "v1", {"app.py": cold_start.HANDLER}
            )
            spec = {"runtime": "python3.11", "source": {"image": image}}
        path = cold_start.deploy_function(ns, address, "phases", spec)
        print("waiting for the function to be Ready", flush=True)
        cold_start.wait_until(
            lambda: cold_start.function_ready(ns, "phases"), "Ready", timeout=1200
        )
        for number in range(1, args.trials + 1):
            timings, seconds = trial(api, ns, "phases", path, address)
            rows.append(timings)
            client_ms.append(seconds)
            print(
                f"trial {number:2d}: "
                + "  ".join(f"{p} {timings[p]:.0f}" for p in (*PHASES, TOTAL))
                + f"  (client {seconds:.0f} ms)",
                flush=True,
            )
    finally:
        kubectl("delete", "namespace", ns, "--wait=false")
    print()
    return 0 if report(rows, client_ms, args.markdown) else 1


if __name__ == "__main__":
    sys.exit(main())
