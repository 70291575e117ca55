"""``python -m kfncluster up|down|status|tools|…``: the local cluster's command line."""

from __future__ import annotations

import argparse
import sys

from kfncluster import build, cluster, config, install, kfnimage, release, runtimeimages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kfncluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="bring the cluster up (idempotent)")
    sub.add_parser("stop", help="stop the cluster, keeping its data for the next `up`")
    sub.add_parser("down", help="tear the cluster down and delete its data, leaving nothing")
    sub.add_parser("status", help="say whether the cluster runs and what a previous run left")
    sub.add_parser("image", help="build and push the kfn image from operator/Dockerfile")
    sub.add_parser("install", help="up, then install kfn with Helm and run the example")
    sub.add_parser("monitoring", help="on the running cluster, install Prometheus (idempotent)")
    sub.add_parser(
        "tools", help="build the tools the unit tests need (helm, promtool), without a cluster"
    )
    sub.add_parser(
        "runtime-bases",
        help="make every runtime's base image in the cache (the runtime tests run in them)",
    )
    rel = sub.add_parser("release", help="publish the images and the chart to the registry")
    rel.add_argument("--version", default=None, help="default: the chart's version")
    args = parser.parse_args(argv)
    simple = {
        "up": cluster.up,
        "stop": cluster.stop,
        "down": cluster.down,
        "install": install.up,
        "monitoring": install.monitoring_up,
        "runtime-bases": runtimeimages.bases_up,
    }
    if args.command in simple:
        return simple[args.command]()
    if args.command == "image":
        print(kfnimage.build(config.Paths()))
        return 0
    if args.command == "tools":
        for name, path in build.ensure_tools(config.Paths()).items():
            print(f"{name}: {path}")
        return 0
    if args.command == "release":
        url, version = release.release(config.Paths(), args.version)
        print(f"released kfn {version}: images {config.REGISTRY}/kfn/*:{version}, chart {url}")
        print(
            f"  helm install kfn {url} --version {version} --namespace kfn-system "
            "--create-namespace --set registry.host=... (docs/install.md)"
        )
        return 0
    paths = config.Paths()
    if cluster.running(paths):
        print("running")
        return 0
    left = cluster.leftovers(paths)
    if left:
        print("not running; left behind:\n  " + "\n  ".join(left))
    elif paths.stopped.exists():
        print(f"stopped; its data is kept in {paths.state} for the next bring-up")
    else:
        print("not running")
    return 1


if __name__ == "__main__":
    sys.exit(main())
