"""The model of what a signer host holds, and the protocols of layouts and transports.

A *layout* (OpenDKIM, rspamd, Exim) turns the keys a host must sign with into
files: private keys plus the software's tables. A *transport* (local directory,
SSH) puts files on the host atomically and runs its reload command. The sync
logic between the two lives in `providers.signers.sync` and is shared.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Protocol, Sequence

from providers.errors import ConfigError

KEY_TYPES = ("rsa", "ed25519")
# One DNS label (LDH plus "_", as selectors and A-label domains use), then more.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
NAME_RE = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")


@dataclass(frozen=True)
class SigningKey:
    """A key one host signs with, and the sender patterns it signs for."""

    domain: str  # A-label domain, the d= of signatures
    selector: str
    key_type: str  # "rsa" or "ed25519"
    private_key_pem: str = field(repr=False)  # PKCS#8 PEM; never printed
    sign_for: tuple[str, ...] = ()  # SigningTable patterns; empty means "*@<domain>"

    @property
    def owner_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def patterns(self) -> tuple[str, ...]:
        return self.sign_for or (f"*@{self.domain}",)


@dataclass(frozen=True)
class ManagedFile:
    """One file dkimroll owns on a host. `secret` files have their content never shown."""

    path: str  # absolute path on the host
    content: bytes = field(repr=False)
    mode: int = 0o644
    owner: str | None = None
    group: str | None = None
    secret: bool = False


def check_dir(setting: str, value: str, bad_chars: re.Pattern[str], why: str) -> str:
    """An absolute directory whose path the signer's files can quote (`why` says what breaks)."""
    if not value or not posixpath.isabs(value):
        raise ConfigError(setting, f"must be an absolute path, got {value!r}")
    if bad_chars.search(value):
        raise ConfigError(setting, f"{value!r} contains {why}")
    return posixpath.normpath(value)


def check_keys(keys: Sequence[SigningKey]) -> None:
    """What every layout requires of its keys: known type, DNS names, no duplicates, a PEM block."""
    seen: set[str] = set()
    for k in keys:
        where = k.owner_name
        if k.key_type not in KEY_TYPES:
            raise ConfigError(where, f"key type {k.key_type!r} is not one of {KEY_TYPES}")
        if not NAME_RE.match(k.domain):
            raise ConfigError(where, f"domain {k.domain!r} is not an A-label domain name")
        if not NAME_RE.match(k.selector):
            raise ConfigError(where, f"selector {k.selector!r} is not a valid selector")
        if where.lower() in seen:
            raise ConfigError(where, "two keys share this selector and domain")
        seen.add(where.lower())
        if "PRIVATE KEY-----" not in k.private_key_pem:
            # Do not echo the value: it may be a key in the wrong format.
            raise ConfigError(where, "private key is not a PEM block")


def pem_bytes(key: SigningKey) -> bytes:
    """The key file's content: the PEM block with a final newline."""
    pem = key.private_key_pem
    return (pem if pem.endswith("\n") else pem + "\n").encode("utf-8")


def check_key_mode(mode: int, advice: str) -> int:
    """Private keys: never writable by the group, never readable or writable by others."""
    if mode & ~0o7777 or mode & 0o027:
        raise ConfigError("key_mode", f"{mode:04o} lets other users read or write the private key ({advice})")
    return mode


def check_table_mode(setting: str, mode: int, what: str) -> int:
    """Tables and configuration: never writable by group or others."""
    if mode & ~0o7777 or mode & 0o022:
        raise ConfigError(setting, f"{mode:04o} lets other users rewrite the {what} (use 0644)")
    return mode


class SignerLayout(Protocol):
    """Renders a signer software's files for a set of keys. Pure: no I/O."""

    def files(self, keys: Sequence[SigningKey]) -> list[ManagedFile]:
        """Every file the host must hold for these keys (keys and tables)."""

    def key_dirs(self) -> list[str]:
        """Directories holding private keys, which must not be group/world writable."""


class Transport(Protocol):
    """Moves files to one host. Implementations own the connection."""

    name: str  # the signer's name in the stack file

    def digests(self, paths: Sequence[str]) -> dict[str, str | None]:
        """sha256 hex of each file's content plus its mode/owner, or None when absent."""

    def write(self, file: ManagedFile) -> None:
        """Write to a temporary file in the same directory, fsync, chmod/chown, rename."""

    def remove(self, path: str) -> None:
        """Remove a file if it exists."""

    def ensure_safe_dir(self, path: str, mode: int = 0o750) -> None:
        """Create `path` if needed and fail if it or a parent is group/world writable."""

    def run(self, command: str, privileged: bool = True) -> None:
        """Run a command on the host; raise SignerError on failure.

        The reload is privileged; a configuration test runs as the login user.
        """

    def close(self) -> None:
        """Release the connection."""
