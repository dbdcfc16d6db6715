"""Generate and import DKIM private keys, and derive the `p=` value published in DNS.

Keys travel as unencrypted PKCS#8 PEM text whatever their origin, so signer
layouts and state handle exactly one format. Errors never carry key material.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Literal

import cryptography.exceptions
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from providers import errors

KeyType = Literal["rsa", "ed25519"]

ALGORITHMS: tuple[str, ...] = ("rsa-1024", "rsa-2048", "rsa-3072", "rsa-4096", "ed25519")
ALIASES: dict[str, str] = {"rsa": "rsa-2048"}
MIN_RSA_BITS = 1024  # RFC 8301: verifiers must not accept less
STRONG_RSA_BITS = 2048  # RFC 8301: signers should use at least this
RSA_PUBLIC_EXPONENT = 65537
ED25519_BITS = 256

_RSA_NAME = re.compile(r"rsa-(\d+)")


class KeyImportError(errors.DkimrollError):
    """A supplied private key could not be used. The message never contains key material."""


@dataclass(frozen=True)
class KeySpec:
    """What kind of key to generate, parsed from an algorithm name such as "rsa-2048"."""

    key_type: KeyType
    bits: int
    name: str


@dataclass(frozen=True)
class PrivateKey:
    """A private key as unencrypted PKCS#8 PEM. `repr` hides the PEM so logs stay clean."""

    pem: str = field(repr=False)
    key_type: KeyType
    bits: int


def parse_algorithm(name: str) -> KeySpec:
    """The KeySpec for an algorithm name; ConfigError names the valid choices otherwise."""
    canonical = ALIASES.get(name.strip().lower(), name.strip().lower())
    valid = ", ".join(ALGORITHMS)
    if canonical == "ed25519":
        return KeySpec(key_type="ed25519", bits=ED25519_BITS, name="ed25519")
    match = _RSA_NAME.fullmatch(canonical)
    if match and int(match.group(1)) < MIN_RSA_BITS:
        raise errors.ConfigError(
            "algorithm", f"{name!r}: RSA keys below {MIN_RSA_BITS} bits are refused (RFC 8301); use one of {valid}"
        )
    if canonical not in ALGORITHMS or match is None:
        raise errors.ConfigError("algorithm", f"unknown algorithm {name!r}; use one of {valid} (or 'rsa')")
    return KeySpec(key_type="rsa", bits=int(match.group(1)), name=canonical)


def weak(spec: KeySpec) -> bool:
    """True for RSA keys below 2048 bits: still verifiable, but the caller should warn."""
    return spec.key_type == "rsa" and spec.bits < STRONG_RSA_BITS


def generate(spec: KeySpec) -> PrivateKey:
    """A fresh private key for `spec`."""
    if spec.key_type == "ed25519":
        return _wrap(ed25519.Ed25519PrivateKey.generate())
    return _wrap(rsa.generate_private_key(public_exponent=RSA_PUBLIC_EXPONENT, key_size=spec.bits))


def import_pem(text: str) -> PrivateKey:
    """Accept an operator's RSA (PKCS#1 or PKCS#8) or Ed25519 (PKCS#8) key, normalised to PKCS#8."""
    try:
        key = serialization.load_pem_private_key(text.encode("utf-8"), password=None)
    except TypeError:
        # Raised for encrypted keys; the original message is safe but we keep ours uniform.
        raise KeyImportError("private key is encrypted; supply it unencrypted") from None
    except (ValueError, UnicodeError, cryptography.exceptions.UnsupportedAlgorithm):
        # `from None`: the parser's context must not drag the input into tracebacks.
        raise KeyImportError("not a readable PEM private key (expected PKCS#8 or PKCS#1)") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyImportError(f"RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} are required")
        return _wrap(key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return _wrap(key)
    raise KeyImportError(f"unsupported key type {type(key).__name__}; DKIM uses RSA or Ed25519")


def public_p_value(private: PrivateKey) -> str:
    """The base64 `p=` value: SPKI DER for RSA (as opendkim-genkey), raw 32 bytes for Ed25519 (RFC 8463)."""
    public = _load(private).public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(raw).decode("ascii")


def _wrap(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> PrivateKey:
    """Serialise a cryptography key object into our PKCS#8 value object."""
    pem = key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    ).decode("ascii")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return PrivateKey(pem=pem, key_type="ed25519", bits=ED25519_BITS)
    return PrivateKey(pem=pem, key_type="rsa", bits=key.key_size)


def _load(private: PrivateKey) -> rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey:
    """The cryptography object behind a PrivateKey, re-checked because state files can be edited."""
    try:
        key = serialization.load_pem_private_key(private.pem.encode("utf-8"), password=None)
    except (TypeError, ValueError, UnicodeError, cryptography.exceptions.UnsupportedAlgorithm):
        raise KeyImportError(f"stored {private.key_type} private key is unreadable") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)):
        raise KeyImportError(f"stored key has unsupported type {type(key).__name__}")
    return key
