"""The JSON Web Tokens ``docker-registry`` accepts, signed with ``cryptography``.

The registry (distribution 2.8, ``registry/auth/token/token.go``) checks a token's ``iss``
against its ``issuer``, its ``aud`` against its ``service``, ``exp`` and ``nbf`` with a minute
of leeway, and the signature with a key it trusts. It finds that key by the header's ``kid``
among the public keys of the certificates in ``rootcertbundle``, where a key's ID is
libtrust's: the SHA-256 of its DER SubjectPublicKeyInfo, first 240 bits, base32, in 12 groups
of 4 joined by ``:``. So the bundle holds one certificate of the signing key
(:func:`trust_certificate`), and rotating the key means adding the new certificate to the bundle
before signing with the new key. (The other way, an ``x5c`` chain verified against the bundle,
needs a CA and gains nothing here.)

Keys are ECDSA P-256 (``ES256``) or RSA (``RS256``), both of which libtrust verifies.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import secrets
from collections.abc import Sequence
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.x509.oid import NameOID

from kfn.registry_auth import policy

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
#: The size in bytes of each of r and s in an ES256 signature.
_P256_BYTES: Final = 32


def key_id(public_key: PublicKey) -> str:
    """libtrust's ID of a public key: what the registry looks the ``kid`` header up by."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip("=")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


class SigningKey:
    """The token service's private key, its algorithm and its ``kid``."""

    def __init__(self, private_key: PrivateKey) -> None:
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            if not isinstance(private_key.curve, ec.SECP256R1):
                raise ValueError(f"ECDSA signing keys must be P-256, not {private_key.curve.name}")
            self.algorithm = "ES256"
        elif isinstance(private_key, rsa.RSAPrivateKey):
            if private_key.key_size < 2048:
                raise ValueError("RSA signing keys must have at least 2048 bits")
            self.algorithm = "RS256"
        else:
            raise ValueError("signing keys are ECDSA P-256 or RSA")
        self.private_key = private_key
        self.kid = key_id(private_key.public_key())

    @classmethod
    def from_pem(cls, data: bytes) -> SigningKey:
        key = serialization.load_pem_private_key(data, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise ValueError("signing keys are ECDSA P-256 or RSA")
        return cls(key)

    def sign(self, data: bytes) -> bytes:
        """The JWS signature of ``data``: PKCS #1 v1.5 for RSA, raw ``r || s`` for ECDSA."""
        if isinstance(self.private_key, rsa.RSAPrivateKey):
            return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        der = self.private_key.sign(data, ec.ECDSA(hashes.SHA256()))
        r, s = utils.decode_dss_signature(der)
        return r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")


def mint(
    key: SigningKey,
    *,
    issuer: str,
    subject: str,
    audience: str,
    access: Sequence[policy.Scope],
    now: datetime.datetime,
    ttl: datetime.timedelta,
    jti: str | None = None,
) -> str:
    """A signed token granting ``access`` to ``subject`` at the registry named ``audience``.

    ``jti`` is random unless given (tests give one to compare tokens).
    """
    issued = int(now.timestamp())
    header = {"typ": "JWT", "alg": key.algorithm, "kid": key.kid}
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": issued + int(ttl.total_seconds()),
        "nbf": issued,
        "iat": issued,
        "jti": jti if jti is not None else secrets.token_urlsafe(16),
        "access": [scope.claim() for scope in access],
    }
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"


def trust_certificate(
    key: SigningKey, *, common_name: str, now: datetime.datetime, valid_for: datetime.timedelta
) -> bytes:
    """A self-signed certificate (PEM) of the signing key, for the registry's
    ``rootcertbundle``: the registry trusts the key it holds, by its ``kid``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key.private_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _segment(doc: dict[str, Any]) -> str:
    return _b64(json.dumps(doc, separators=(",", ":"), sort_keys=True).encode())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
