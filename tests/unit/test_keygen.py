"""Key generation, import and p= derivation, checked against cryptography and a real verifier (dkimpy)."""

from __future__ import annotations

import base64
import secrets

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from keys import keygen, record
from providers import errors
from tests.pem import pem_label


@pytest.fixture(scope="module")
def rsa2048() -> keygen.PrivateKey:
    return keygen.generate(keygen.parse_algorithm("rsa-2048"))


@pytest.fixture(scope="module")
def rsa4096() -> keygen.PrivateKey:
    # slow (~seconds): generate once for the module
    return keygen.generate(keygen.parse_algorithm("rsa-4096"))


@pytest.fixture(scope="module")
def ed() -> keygen.PrivateKey:
    return keygen.generate(keygen.parse_algorithm("ed25519"))


def _pem(key, fmt: serialization.PrivateFormat) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


# --- parse_algorithm / weak -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "key_type", "bits"),
    [
        ("rsa-1024", "rsa", 1024),
        ("rsa-2048", "rsa", 2048),
        ("rsa-3072", "rsa", 3072),
        ("rsa-4096", "rsa", 4096),
        ("ed25519", "ed25519", 256),
        ("rsa", "rsa", 2048),
        (" RSA-3072 ", "rsa", 3072),
    ],
)
def test_parse_algorithm(name: str, key_type: str, bits: int) -> None:
    spec = keygen.parse_algorithm(name)
    assert (spec.key_type, spec.bits) == (key_type, bits)
    assert spec.name in keygen.ALGORITHMS


def test_alias_is_canonicalised() -> None:
    assert keygen.parse_algorithm("rsa") == keygen.KeySpec("rsa", 2048, "rsa-2048")


@pytest.mark.parametrize("name", ["rsa-512", "rsa-768", "rsa-0"])
def test_small_rsa_rejected(name: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        keygen.parse_algorithm(name)
    assert "1024" in str(info.value)
    assert "rsa-2048" in str(info.value)  # lists the valid names


@pytest.mark.parametrize("name", ["dsa", "rsa-8192", "rsa-2000", "ed448", "", "ecdsa-p256"])
def test_unknown_algorithm_lists_valid_names(name: str) -> None:
    with pytest.raises(errors.ConfigError) as info:
        keygen.parse_algorithm(name)
    for valid in keygen.ALGORITHMS:
        assert valid in str(info.value)


def test_1024_accepted_but_weak() -> None:
    spec = keygen.parse_algorithm("rsa-1024")
    assert keygen.weak(spec)
    assert not keygen.weak(keygen.parse_algorithm("rsa-2048"))
    assert not keygen.weak(keygen.parse_algorithm("ed25519"))


# --- generate ---------------------------------------------------------------


def test_generate_rsa_is_pkcs8_with_exponent_65537(rsa2048: keygen.PrivateKey) -> None:
    assert pem_label(rsa2048.pem) == "PRIVATE KEY"  # PKCS#8
    assert (rsa2048.key_type, rsa2048.bits) == ("rsa", 2048)
    key = serialization.load_pem_private_key(rsa2048.pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    assert key.private_numbers().public_numbers.e == 65537


def test_generate_rsa_4096(rsa4096: keygen.PrivateKey) -> None:
    key = serialization.load_pem_private_key(rsa4096.pem.encode(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 4096
    assert rsa4096.bits == 4096


def test_generate_ed25519(ed: keygen.PrivateKey) -> None:
    assert pem_label(ed.pem) == "PRIVATE KEY"  # PKCS#8
    assert (ed.key_type, ed.bits) == ("ed25519", 256)
    assert isinstance(serialization.load_pem_private_key(ed.pem.encode(), None), ed25519.Ed25519PrivateKey)


def test_generate_1024_works() -> None:
    key = keygen.generate(keygen.parse_algorithm("rsa-1024"))
    assert key.bits == 1024


def test_repr_hides_pem(rsa2048: keygen.PrivateKey, ed: keygen.PrivateKey) -> None:
    for key in (rsa2048, ed):
        text = repr(key) + str(key)
        assert "PRIVATE KEY" not in text
        body = key.pem.splitlines()[1]
        assert body not in text
        assert key.key_type in text


def test_private_key_is_frozen(ed: keygen.PrivateKey) -> None:
    with pytest.raises(AttributeError):
        ed.pem = "x"  # type: ignore[misc]


# --- import_pem --------------------------------------------------------------


def test_import_pkcs1_returns_pkcs8(rsa2048: keygen.PrivateKey) -> None:
    obj = serialization.load_pem_private_key(rsa2048.pem.encode(), None)
    pkcs1 = _pem(obj, serialization.PrivateFormat.TraditionalOpenSSL)
    assert pem_label(pkcs1) == "RSA PRIVATE KEY"  # PKCS#1
    imported = keygen.import_pem(pkcs1)
    assert pem_label(imported.pem) == "PRIVATE KEY"
    assert imported == rsa2048
    assert keygen.public_p_value(imported) == keygen.public_p_value(rsa2048)


def test_import_pkcs8_rsa_and_ed25519(rsa2048: keygen.PrivateKey, ed: keygen.PrivateKey) -> None:
    assert keygen.import_pem(rsa2048.pem) == rsa2048
    assert keygen.import_pem(ed.pem) == ed
    assert keygen.import_pem("\n  " + ed.pem + "\n\n") == ed


def _probable_prime(bits: int) -> int:
    """A random prime with the top two bits set (Miller-Rabin, 32 rounds)."""
    while True:
        n = secrets.randbits(bits) | (3 << (bits - 2)) | 1
        if any(n % small == 0 for small in (3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37)):
            continue
        d, s = n - 1, 0
        while d % 2 == 0:
            d, s = d // 2, s + 1
        for _ in range(32):
            x = pow(secrets.randbelow(n - 3) + 2, d, n)
            if x in (1, n - 1):
                continue
            for _ in range(s - 1):
                x = pow(x, 2, n)
                if x == n - 1:
                    break
            else:
                break
        else:
            if (n - 1) % 65537:
                return n


def _rsa_512_pem() -> str:
    """cryptography refuses to generate 512-bit keys, so build one from primes to test import."""
    p, q, e = _probable_prime(256), _probable_prime(256), 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q), rsa.RSAPublicNumbers(e, p * q)
    )
    return _pem(numbers.private_key(), serialization.PrivateFormat.TraditionalOpenSSL)


def test_import_rejects_512_bits() -> None:
    text = _rsa_512_pem()
    with pytest.raises(keygen.KeyImportError) as info:
        keygen.import_pem(text)
    assert "512" in str(info.value)
    assert text.splitlines()[1] not in str(info.value)


def test_import_rejects_other_key_types() -> None:
    text = _pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8)
    with pytest.raises(keygen.KeyImportError, match="unsupported key type"):
        keygen.import_pem(text)


def test_import_rejects_encrypted_key(rsa2048: keygen.PrivateKey) -> None:
    obj = serialization.load_pem_private_key(rsa2048.pem.encode(), None)
    text = obj.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    ).decode()
    with pytest.raises(keygen.KeyImportError, match="encrypted"):
        keygen.import_pem(text)


def test_import_error_never_contains_material(rsa2048: keygen.PrivateKey) -> None:
    lines = rsa2048.pem.splitlines()
    damaged = "\n".join(lines[:5] + ["!!!!" + lines[5][4:]] + lines[6:])
    for text in (damaged, "garbage", "", lines[3]):
        with pytest.raises(keygen.KeyImportError) as info:
            keygen.import_pem(text)
        message = str(info.value)
        assert all(line not in message for line in lines[1:-1])
        assert info.value.__cause__ is None and info.value.__suppress_context__
    assert issubclass(keygen.KeyImportError, errors.DkimrollError)


# --- public_p_value ------------------------------------------------------------


def test_rsa_p_is_spki(rsa2048: keygen.PrivateKey) -> None:
    p = keygen.public_p_value(rsa2048)
    public = serialization.load_der_public_key(base64.b64decode(p, validate=True))
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 2048
    assert p.startswith("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")  # opendkim-genkey prefix


def test_ed25519_p_is_raw_32_bytes(ed: keygen.PrivateKey) -> None:
    raw = base64.b64decode(keygen.public_p_value(ed), validate=True)
    assert len(raw) == 32
    obj = serialization.load_pem_private_key(ed.pem.encode(), None)
    assert raw == obj.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def test_unreadable_stored_key_raises() -> None:
    with pytest.raises(keygen.KeyImportError, match="unreadable"):
        keygen.public_p_value(keygen.PrivateKey(pem="nope", key_type="rsa", bits=2048))


# --- end to end with an independent verifier ---------------------------------

MESSAGE = (
    b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@example.com>\r\n\r\nbody\r\n"
)


def _dns_for(rec: record.DkimRecord):
    text = record.build(rec).encode()

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return text if name == b"sel._domainkey.example.com." else None

    return lookup


def test_dkimpy_verifies_rsa_signature(rsa2048: keygen.PrivateKey) -> None:
    sig = dkim.sign(MESSAGE, b"sel", b"example.com", rsa2048.pem.encode())
    rec = record.DkimRecord(k="rsa", p=keygen.public_p_value(rsa2048))
    assert dkim.verify(sig + MESSAGE, dnsfunc=_dns_for(rec))


def test_dkimpy_verifies_ed25519_signature(ed: keygen.PrivateKey) -> None:
    obj = serialization.load_pem_private_key(ed.pem.encode(), None)
    seed = obj.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    sig = dkim.sign(
        MESSAGE, b"sel", b"example.com", base64.b64encode(seed), signature_algorithm=b"ed25519-sha256"
    )
    rec = record.DkimRecord(k="ed25519", p=keygen.public_p_value(ed))
    assert dkim.verify(sig + MESSAGE, dnsfunc=_dns_for(rec))
