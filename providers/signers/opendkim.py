"""The OpenDKIM layout: one private key file per key, plus KeyTable and SigningTable.

OpenDKIM 2.11 signs with one algorithm per instance (`SignatureAlgorithm` is a
global setting; an Ed25519 key in an RSA instance fails with "expecting an rsa
key"). So the keys are split in two table sets:

* `{table_dir}/KeyTable` and `{table_dir}/SigningTable` hold the RSA keys, for
  the main instance. They are always written, with nothing but their header
  comment when there is no RSA key, so an instance pointed at them still starts.
* `{table_dir}/KeyTable.ed25519` and `{table_dir}/SigningTable.ed25519` hold the
  Ed25519 keys, for a second instance with `SignatureAlgorithm ed25519-sha256`.
  They are written only when there is at least one Ed25519 key.

The KeyTable is a `file:` dataset (`keyname domain:selector:/path/to/key`); the
SigningTable a `refile:` dataset (`pattern keyname`) that OpenDKIM walks in
order, first match wins. This module is pure: it renders, it does no I/O.
"""

from __future__ import annotations

import re
import shlex
from typing import Sequence

from providers.errors import ConfigError
from providers.signers.base import (
    KEY_TYPES,
    ManagedFile,
    SigningKey,
    check_dir,
    check_key_mode,
    check_keys,
    check_table_mode,
    pem_bytes,
)

# A SigningTable refile pattern: one word, no comment or colon (they end the
# pattern in OpenDKIM's parser), "*" is the only wildcard.
_PATTERN_RE = re.compile(r"^[^\s#:]+$")
# Characters that would break a `file:` dataset value or a refile line.
_BAD_PATH_CHARS = re.compile(r"[\s#:]")


def _check_dir(setting: str, value: str) -> str:
    return check_dir(setting, value, _BAD_PATH_CHARS, "whitespace, '#' or ':', which OpenDKIM tables cannot hold")


def signing_table_order(pattern: str) -> tuple[int, int, str]:
    """Sort key of a SigningTable line: exact addresses first, then wildcard patterns,
    the ones with more literal characters first (so a catch-all `*` comes last and
    never shadows a narrower pattern, since OpenDKIM takes the first match), then
    alphabetically."""
    wildcard = "*" in pattern
    return (1 if wildcard else 0, -len(pattern.replace("*", "")) if wildcard else 0, pattern)


class OpenDkimLayout:
    """Files of an OpenDKIM signer: keys under `key_dir`, tables under `table_dir`."""

    def __init__(
        self,
        key_dir: str,
        table_dir: str,
        owner: str | None = None,
        group: str | None = None,
        key_mode: int = 0o600,
        table_mode: int = 0o644,
    ) -> None:
        self.key_dir = _check_dir("key_dir", key_dir)
        self.table_dir = _check_dir("table_dir", table_dir)
        # OpenDKIM (RequireSafeKeys, on by default) refuses a key file that other
        # users can read or write, or that its group can write.
        check_key_mode(key_mode, "OpenDKIM would refuse it: use 0600, or 0640 with a group only OpenDKIM is in")
        check_table_mode("table_mode", table_mode, "tables")
        self.owner = owner
        self.group = group
        self.key_mode = key_mode
        self.table_mode = table_mode

    def config_test(self) -> str:
        """`opendkim -n` on a throw-away config naming our tables, if the host has opendkim."""
        checks = []
        for key_type in ("rsa", "ed25519"):
            key_table, signing_table = self.table_paths(key_type)
            checks.append(
                f'if [ -e {shlex.quote(signing_table)} ]; then '
                f'printf "KeyTable file:%s\\nSigningTable refile:%s\\n" {shlex.quote(key_table)} '
                f'{shlex.quote(signing_table)} > "$f" && opendkim -n -x "$f" || rc=1; fi'
            )
        script = ('command -v opendkim >/dev/null 2>&1 || exit 0; f=$(mktemp) || exit 1; rc=0; '
                  + "; ".join(checks) + '; rm -f "$f"; exit $rc')
        return f"sh -c {shlex.quote(script)}"

    # paths -----------------------------------------------------------------

    def key_path(self, key: SigningKey) -> str:
        return f"{self.key_dir}/{key.owner_name}.private"

    def table_paths(self, key_type: str) -> tuple[str, str]:
        """(KeyTable, SigningTable) paths of the set for this key type."""
        suffix = "" if key_type == "rsa" else f".{key_type}"
        return (
            f"{self.table_dir}/KeyTable{suffix}",
            f"{self.table_dir}/SigningTable{suffix}",
        )

    def key_dirs(self) -> list[str]:
        return [self.key_dir]

    # rendering -------------------------------------------------------------

    def files(self, keys: Sequence[SigningKey]) -> list[ManagedFile]:
        self._validate(keys)
        ordered = sorted(keys, key=lambda k: (k.domain, k.selector))
        out = [
            ManagedFile(
                path=self.key_path(k),
                content=pem_bytes(k),
                mode=self.key_mode,
                owner=self.owner,
                group=self.group,
                secret=True,
            )
            for k in ordered
        ]
        for key_type in KEY_TYPES:
            subset = [k for k in ordered if k.key_type == key_type]
            if key_type != "rsa" and not subset:
                continue
            key_table, signing_table = self.table_paths(key_type)
            out.append(
                ManagedFile(
                    path=key_table,
                    content=self.render_key_table(subset, key_type).encode("utf-8"),
                    mode=self.table_mode,
                )
            )
            out.append(
                ManagedFile(
                    path=signing_table,
                    content=self.render_signing_table(subset, key_type).encode("utf-8"),
                    mode=self.table_mode,
                )
            )
        return out

    def _header(self, key_type: str) -> list[str]:
        key_table, signing_table = self.table_paths(key_type)
        algorithm = "rsa-sha256" if key_type == "rsa" else "ed25519-sha256"
        instance = "the main" if key_type == "rsa" else "a second"
        return [
            "# Managed by dkimroll: do not edit, changes are overwritten.",
            f"# For {instance} OpenDKIM instance with: KeyTable file:{key_table}, "
            f"SigningTable refile:{signing_table}, SignatureAlgorithm {algorithm}",
        ]

    def render_key_table(self, keys: Sequence[SigningKey], key_type: str = "rsa") -> str:
        lines = self._header(key_type)
        for k in sorted(keys, key=lambda k: (k.domain, k.selector)):
            lines.append(f"{k.owner_name} {k.domain}:{k.selector}:{self.key_path(k)}")
        return "\n".join(lines) + "\n"

    def render_signing_table(self, keys: Sequence[SigningKey], key_type: str = "rsa") -> str:
        rows = sorted(
            {(p, k.owner_name) for k in keys for p in k.patterns},
            key=lambda row: (signing_table_order(row[0]), row[1]),
        )
        lines = self._header(key_type) + [f"{pattern} {name}" for pattern, name in rows]
        return "\n".join(lines) + "\n"

    def _validate(self, keys: Sequence[SigningKey]) -> None:
        check_keys(keys)
        for k in keys:
            for pattern in k.patterns:
                if not _PATTERN_RE.match(pattern):
                    raise ConfigError(
                        k.owner_name,
                        f"sign_for pattern {pattern!r} must be one word without '#' or ':'",
                    )

