"""Errors raised by backends. Each names where it happened and never carries secrets."""

from __future__ import annotations


class DkimrollError(Exception):
    """Base of every error dkimroll raises on purpose."""


class ConfigError(DkimrollError):
    """Bad input, found before anything was changed."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


class DnsTargetError(DkimrollError):
    """A DNS target refused or failed a read or a write."""

    def __init__(self, target: str, zone: str, detail: str, record: str | None = None) -> None:
        where = f"dns target '{target}', zone {zone}"
        if record:
            where += f", record {record}"
        super().__init__(f"{where}: {detail}")
        self.target = target
        self.zone = zone
        self.record = record
        self.detail = detail


class SignerError(DkimrollError):
    """A signer host refused or failed a push, a check or a reload."""

    def __init__(self, signer: str, detail: str, path: str | None = None) -> None:
        where = f"signer '{signer}'"
        if path:
            where += f", {path}"
        super().__init__(f"{where}: {detail}")
        self.signer = signer
        self.path = path
        self.detail = detail
