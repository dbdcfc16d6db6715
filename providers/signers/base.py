"""The model of what a signer host holds, and the protocols of layouts and transports.

A *layout* (OpenDKIM, rspamd, Exim) turns the keys a host must sign with into
files: private keys plus the software's tables. A *transport* (local directory,
SSH) puts files on the host atomically and runs its reload command. The sync
logic between the two lives in `providers.signers.sync` and is shared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from providers.errors import ConfigError


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
