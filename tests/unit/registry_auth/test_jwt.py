"""kfn.registry_auth.jwt: tokens signed the way docker-registry verifies them."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

from kfn.registry_auth import jwt, policy

NOW = datetime.datetime(2026, 6, 1, 12, 0, tzinfo=datetime.UTC)


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _verify(token: str, public_key: jwt.PublicKey) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of ``token`` once its signature checks out."""
    header, claims, signature = token.split(".")
    signed = f"{header}.{claims}".encode()
    raw = _b64decode(signature)
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(raw, signed, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert len(raw) == 64, "ES256 signatures are r || s, 32 bytes each"
        der = utils.encode_dss_signature(
            int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        )
        public_key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    return json.loads(_b64decode(header)), json.loads(_b64decode(claims))


def test_a_key_id_is_libtrusts_twelve_groups_of_base32_from_the_public_key_digest() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    kid = jwt.key_id(key.public_key())
    assert re.fullmatch(r"([A-Z2-7]{4}:){11}[A-Z2-7]{4}", kid)
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
    assert kid.replace(":", "") == expected


@pytest.mark.parametrize(
    ("make", "algorithm"),
    [
        (lambda: ec.generate_private_key(ec.SECP256R1()), "ES256"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
    ],
)
def test_a_token_carries_the_claims_the_registry_checks_under_a_valid_signature(
    make: Any, algorithm: str
) -> None:
    key = jwt.SigningKey(make())
    access = [policy.Scope("repository", "fn/a/app", ("pull", "push"))]
    token = jwt.mint(
        key,
        issuer="kfn-token-service",
        subject="kfn+a",
        audience="kfn-registry",
        access=access,
        now=NOW,
        ttl=datetime.timedelta(minutes=5),
        jti="fixed",
    )
    header, claims = _verify(token, key.private_key.public_key())
    assert header == {"typ": "JWT", "alg": algorithm, "kid": key.kid}
    issued = int(NOW.timestamp())
    assert claims == {
        "iss": "kfn-token-service",
        "sub": "kfn+a",
        "aud": "kfn-registry",
        "exp": issued + 300,
        "nbf": issued,
        "iat": issued,
        "jti": "fixed",
        "access": [{"type": "repository", "name": "fn/a/app", "actions": ["pull", "push"]}],
    }


def test_each_token_gets_its_own_id() -> None:
    key = jwt.SigningKey(ec.generate_private_key(ec.SECP256R1()))

    def mint() -> str:
        return jwt.mint(
            key, issuer="i", subject="", audience="a", access=[], now=NOW,
            ttl=datetime.timedelta(minutes=1),
        )  # fmt: skip

    assert mint() != mint()


def test_the_trust_certificate_holds_the_signing_key_so_the_registry_finds_it_by_kid() -> None:
    key = jwt.SigningKey(ec.generate_private_key(ec.SECP256R1()))
    pem = jwt.trust_certificate(
        key, common_name="kfn token service", now=NOW, valid_for=datetime.timedelta(days=365)
    )
    cert = x509.load_pem_x509_certificate(pem)
    public_key = cert.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert jwt.key_id(public_key) == key.kid
    assert cert.issuer == cert.subject


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ec.generate_private_key(ec.SECP384R1()), "must be P-256"),
        (lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024), "2048"),  # noqa: S505 - the weak key is the point
    ],
)
def test_keys_the_registry_cannot_verify_or_too_weak_are_refused(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        jwt.SigningKey(make())


def test_a_signing_key_loads_from_pem() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert jwt.SigningKey.from_pem(pem).kid == jwt.key_id(key.public_key())
