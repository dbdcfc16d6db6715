"""PEM helpers for tests: keys are made at run time, never written into the repository."""

from __future__ import annotations

from keys import keygen


def pem_label(pem: str) -> str:
    """The label of a PEM block's first line, e.g. 'PRIVATE KEY' (PKCS#8) or 'RSA PRIVATE KEY'."""
    first = pem.strip().splitlines()[0]
    return first.strip("-").removeprefix("BEGIN ").strip()


def fresh_pem(algorithm: str = "ed25519") -> str:
    """A real, newly generated PKCS#8 private key (Ed25519 by default: instant), without
    its final newline, so layouts' own newline handling is exercised."""
    return keygen.generate(keygen.parse_algorithm(algorithm)).pem.rstrip("\n")
