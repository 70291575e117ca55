"""``python -m kfn.registry_auth``: the token service, configured by files and flags.

Secrets (the signing key, the robot key, the admin password) are read from files, never from
flags, so that they do not show in the process list.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import pathlib
import signal
import sys
import threading
from types import FrameType
from typing import Final

from kfn.registry_auth import jwt, policy, server, tokens

#: A shorter robot key would make the HMAC guessable offline.
MIN_ROBOT_KEY: Final = 32


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kfn.registry_auth",
        description="Docker registry token service: robot credentials per namespace.",
    )
    p.add_argument("--address", default="0.0.0.0", help="address to listen on")  # noqa: S104 - a service
    p.add_argument("--port", type=int, default=5001)
    p.add_argument("--tls-cert", help="PEM certificate chain; without it, plain HTTP (tests only)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument(
        "--signing-key",
        required=True,
        help="PEM private key (ECDSA P-256 or RSA) tokens are signed with",
    )
    p.add_argument(
        "--issuer", required=True, help="the iss claim: the registry's auth.token.issuer"
    )
    p.add_argument(
        "--service", required=True, help="the aud claim: the registry's auth.token.service"
    )
    p.add_argument(
        "--robot-key-file",
        required=True,
        help=f"HMAC key of robot credentials (at least {MIN_ROBOT_KEY} bytes)",
    )
    p.add_argument("--admin-password-file", required=True, help="password of the user 'admin'")
    p.add_argument(
        "--public-prefix",
        action="append",
        default=[],
        help="repository prefix anyone may pull (repeatable), e.g. kfn/",
    )
    p.add_argument("--token-ttl-seconds", type=int, default=300)
    p.add_argument("--log-level", default="INFO")
    return p


def settings(args: argparse.Namespace) -> tokens.Settings:
    """The service's settings from the parsed flags; ``ValueError`` says what is wrong."""
    robot_key = pathlib.Path(args.robot_key_file).read_bytes().strip()
    if len(robot_key) < MIN_ROBOT_KEY:
        raise ValueError(
            f"{args.robot_key_file}: the robot key needs at least {MIN_ROBOT_KEY} bytes"
        )
    admin_password = pathlib.Path(args.admin_password_file).read_text().strip("\r\n")
    if not admin_password:
        raise ValueError(f"{args.admin_password_file}: the admin password is empty")
    if args.token_ttl_seconds < 60:
        raise ValueError("--token-ttl-seconds must be at least 60")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")
    return tokens.Settings(
        issuer=args.issuer,
        service=args.service,
        signing_key=jwt.SigningKey.from_pem(pathlib.Path(args.signing_key).read_bytes()),
        robot_key=robot_key,
        admin_password=admin_password,
        policy=policy.Policy(tuple(args.public_prefix)),
        ttl=datetime.timedelta(seconds=args.token_ttl_seconds),
    )


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("kfn.registry_auth")
    try:
        config = settings(args)
        tls = server.tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
        service = server.Server((args.address, args.port), config, tls)
    except (OSError, ValueError) as exc:
        log.error("cannot start: %s", exc)
        return 1

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=service.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scheme = "https" if tls else "http"
    log.info(
        "serving tokens for %s (issuer %s, key %s) at %s://%s:%d%s; public: %s",
        config.service,
        config.issuer,
        config.signing_key.kid,
        scheme,
        args.address,
        service.server_address[1],
        server.TOKEN_PATH,
        ", ".join(args.public_prefix) or "nothing",
    )
    with service:
        service.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
