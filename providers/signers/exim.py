"""The Exim layout: one key file per selector plus a sender lookup table.

Files
-----
* `{key_dir}/{domain}.{selector}.key`, mode 0640, group Debian-exim (the user
  Debian's Exim runs as), PKCS#8 PEM for RSA and Ed25519 alike (Exim 4.92+
  reads Ed25519 PKCS#8 keys with GnuTLS >= 3.6 or OpenSSL >= 1.1.1).
* `{table_dir}/dkim_domains`, mode 0644, an `nwildlsearch` table keyed by the
  sender address, first match wins, exact addresses before `*@domain` lines::

      alice@customer.example: domain=example.com selectors=s202601
      *@example.com: domain=example.com selectors=e202601:s202601
      *@customer.example: domain=example.com selectors=s202601

  `domain` is the signing domain (`d=`), `selectors` an Exim list of the
  selectors to sign with: several selectors sign the message several times
  (dual RSA + Ed25519, Exim 4.92+ takes a list in `dkim_selector` and expands
  `dkim_private_key` once per selector). A line exists for every sender rule
  (`sign_for`) of a key, default `*@<domain>`; the selectors of a line are the
  keys of that domain whose rules include that pattern. Patterns are
  `user@domain` or `*@domain` (nwildlsearch reads a leading `*` as "ends
  with"); other forms are refused with a ConfigError.

Wiring it into Exim
-------------------
Debian's `remote_smtp` transport takes its DKIM options from macros; define
them in `/etc/exim4/exim4.conf.localmacros` (or
`conf.d/main/00_local_macros`), with your `table_dir` and `key_dir`::

    DKIMROLL_ENTRY = ${lookup{${lc:${address:$h_from:}}}nwildlsearch{/etc/exim4/dkim_domains}}
    DKIM_DOMAIN = ${extract{domain}{DKIMROLL_ENTRY}}
    DKIM_SELECTOR = ${extract{selectors}{DKIMROLL_ENTRY}}
    DKIM_PRIVATE_KEY = /etc/exim4/dkim/${dkim_domain}.${dkim_selector}.key

Outside Debian, set the same expansions as the smtp transport's
`dkim_domain`, `dkim_selector` and `dkim_private_key` options. The lookup key
is the From header's address, as OpenDKIM and rspamd use; use
`${lc:$sender_address}` instead to sign by envelope sender. A sender without
a line gets an empty `dkim_domain`, and Exim does not sign. Exim reads the
table and the keys at each delivery, so no reload is needed (leave `reload`
unset). The table's header comment repeats these lines with the real paths.

This module is pure: it renders, it does no I/O.
"""

from __future__ import annotations

import re
from typing import Sequence

from providers.errors import ConfigError
from providers.signers.base import (
    NAME_RE,
    ManagedFile,
    SigningKey,
    check_dir,
    check_key_mode,
    check_keys,
    check_table_mode,
    pem_bytes,
)
from providers.signers.opendkim import signing_table_order

TABLE_NAME = "dkim_domains"

# Local parts an lsearch key can hold unquoted: no colon, whitespace, quote or
# backslash (they end or escape the key), no '*' (a wildcard) or '^' (a regex).
_LOCAL_RE = re.compile(r"^[A-Za-z0-9!#$%&'+/=?_`{|}~.-]+$")
# Characters that would break an expansion string or the table.
_BAD_PATH_CHARS = re.compile(r"[\s\"'\\$:{}\x00-\x1f]")


def _check_dir(setting: str, value: str) -> str:
    return check_dir(setting, value, _BAD_PATH_CHARS,
                     "whitespace, quotes, '$', ':' or braces, which Exim expansions and lists cannot hold unescaped")


class EximLayout:
    """Files of an Exim signer: keys under `key_dir`, the lookup table in `table_dir`."""

    def __init__(
        self,
        key_dir: str,
        table_dir: str,
        owner: str | None = None,
        group: str | None = "Debian-exim",
        key_mode: int = 0o640,
        table_mode: int = 0o644,
    ) -> None:
        self.key_dir = _check_dir("key_dir", key_dir)
        self.table_dir = _check_dir("table_dir", table_dir)
        check_key_mode(key_mode, "use 0640 with group Debian-exim")
        check_table_mode("table_mode", table_mode, "table")
        self.owner = owner
        self.group = group
        self.key_mode = key_mode
        self.table_mode = table_mode

    # paths -----------------------------------------------------------------

    def key_path(self, key: SigningKey) -> str:
        return f"{self.key_dir}/{key.domain.lower()}.{key.selector}.key"

    @property
    def table_path(self) -> str:
        return f"{self.table_dir}/{TABLE_NAME}"

    def key_dirs(self) -> list[str]:
        return [self.key_dir]

    def macros(self) -> str:
        """The Debian macros that wire the table into the remote_smtp transport."""
        entry = (
            "${lookup{${lc:${address:$h_from:}}}nwildlsearch{" + self.table_path + "}}"
        )
        return (
            f"DKIMROLL_ENTRY = {entry}\n"
            "DKIM_DOMAIN = ${extract{domain}{DKIMROLL_ENTRY}}\n"
            "DKIM_SELECTOR = ${extract{selectors}{DKIMROLL_ENTRY}}\n"
            f"DKIM_PRIVATE_KEY = {self.key_dir}/${{dkim_domain}}.${{dkim_selector}}.key\n"
        )

    # rendering -------------------------------------------------------------

    def files(self, keys: Sequence[SigningKey]) -> list[ManagedFile]:
        rows = self._rows(keys)
        ordered = sorted(keys, key=lambda k: (k.domain.lower(), k.selector))
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
        out.append(
            ManagedFile(
                path=self.table_path,
                content=self._render(rows).encode("utf-8"),
                mode=self.table_mode,
            )
        )
        return out

    def render_table(self, keys: Sequence[SigningKey]) -> str:
        return self._render(self._rows(keys))

    def _render(self, rows: list[tuple[str, str, list[str]]]) -> str:
        header = [
            "# Managed by dkimroll: do not edit, changes are overwritten.",
            "# Exim nwildlsearch table: sender address -> signing domain and selectors",
            "# (first match wins). Wire it in with these macros (Debian remote_smtp):",
            *[f"#   {line}" for line in self.macros().splitlines()],
        ]
        body = [f"{pattern}: domain={domain} selectors={':'.join(sels)}" for pattern, domain, sels in rows]
        return "\n".join(header + body) + "\n"

    def _rows(self, keys: Sequence[SigningKey]) -> list[tuple[str, str, list[str]]]:
        """(pattern, signing domain, selectors) per table line, in match order."""
        check_keys(keys)
        by_pattern: dict[str, tuple[str, list[str]]] = {}
        for k in sorted(keys, key=lambda k: (k.domain.lower(), k.selector)):
            where = k.owner_name
            domain = k.domain.lower()
            for pattern in k.patterns:
                normalized = _check_pattern(where, pattern)
                row = by_pattern.setdefault(normalized, (domain, []))
                if row[0] != domain:
                    raise ConfigError(
                        where,
                        f"sign_for pattern {pattern!r} is also claimed by {row[0]}; the Exim "
                        "table maps a sender to one signing domain",
                    )
                if k.selector not in row[1]:
                    row[1].append(k.selector)
        return [
            (pattern, domain, sels)
            for pattern, (domain, sels) in sorted(
                by_pattern.items(), key=lambda item: (signing_table_order(item[0]), item[1][0])
            )
        ]


def _check_pattern(where: str, pattern: str) -> str:
    """A sign_for pattern the table can hold: `user@domain` or `*@domain`, lowercased."""
    local, at, domain = pattern.lower().rpartition("@")
    valid_local = local == "*" or bool(_LOCAL_RE.match(local or ""))
    if not at or not valid_local or not NAME_RE.match(domain):
        raise ConfigError(
            where,
            f"sign_for pattern {pattern!r} cannot be expressed in Exim's table: use "
            "'user@domain' or '*@domain'",
        )
    return f"{local}@{domain}"

