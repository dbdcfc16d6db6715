"""The rspamd layout: key files plus the `dkim_signing` module's configuration.

Files
-----
* `{key_dir}/{domain}.{selector}.key`, mode 0640, owner root, group _rspamd:
  rspamd's workers run as `_rspamd` and read the key at signing time. RSA keys
  are written as the PKCS#8 PEM dkimroll holds. Ed25519 keys are written in
  rspamd's own format, base64 of the 64-byte libsodium secret key (seed then
  public key), exactly what `rspamadm dkim_keygen -t ed25519` writes: rspamd
  3.x loads PEM keys through OpenSSL as RSA only and refuses a PKCS#8 Ed25519
  key ("cannot extract rsa key from evp key", rspamd issue #4630).
* `{config_dir}/dkim_signing.conf`, mode 0644: the content of
  `/etc/rspamd/local.d/dkim_signing.conf` (point `config_dir` at
  `/etc/rspamd/local.d`). It lists every domain with all its selectors::

      domain {
        "example.com" {
          selectors [
            { path = "/var/lib/rspamd/dkim/example.com.s202601.key"; selector = "s202601"; },
            { path = "/var/lib/rspamd/dkim/example.com.e202601.key"; selector = "e202601"; }
          ]
        }
      }

  rspamd signs a message with every selector of the domain it picked, so one
  RSA and one Ed25519 selector give the dual signature (RFC 8463, section 5).

Settings written besides the domain map, and why:

* `use_domain = "header"`: the domain comes from the From header, as OpenDKIM's
  SigningTable does.
* `allow_username_mismatch = true`: an authenticated submitter may send for a
  domain other than their login's.
* `use_esld = false`: sign with exactly the configured domain. rspamd's default
  folds `mail.example.com` into `example.com`; dkimroll configures each signing
  domain (subdomains included) explicitly, and publishes keys there.
* `try_fallback = false`: a domain dkimroll does not manage is not signed (the
  default would look for `/var/lib/rspamd/dkim/<domain>.dkim.key`).

Sender rules (`sign_for`)
-------------------------
rspamd's domain map signs a message with `d=` set to the domain it looked up
(`lua_dkim_tools.prepare_dkim_signing`: the selectors carry no domain of their
own). So a `*@customer.example` rule cannot be a `domain` entry pointing at
example.com's key: the signature would say `d=customer.example` and fail, since
the key is published under example.com. Instead, when a key has sender rules
beyond `*@<its domain>`, the layout adds a `use_domain_custom` Lua function
that maps the From address to the signing domain -- exact addresses first,
then `*@domain` patterns, like OpenDKIM's SigningTable -- and rspamd then signs
with every selector of that domain (`d=example.com`). Only those two pattern
forms can be expressed; others are refused with a ConfigError. Sender rules
apply per domain: the union of the rules of a domain's keys selects all its
selectors (with dual signing, both keys carry the same rules anyway).

This module is pure: it renders, it does no I/O.
"""

from __future__ import annotations

import base64
import re
from typing import Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from providers.errors import ConfigError
from providers.signers.base import (
    NAME_RE,
    ManagedFile,
    SigningKey,
    check_dir,
    check_key_mode,
    check_keys,
    check_table_mode,
)
from providers.signers.opendkim import signing_table_order

CONFIG_NAME = "dkim_signing.conf"

# Local parts dkimroll passes into the Lua table: RFC 5322 atext and dots.
_LOCAL_RE = re.compile(r"^[A-Za-z0-9!#$%&'+/=?^_`{|}~.-]+$")
# Paths rspamd reads: no quote, backslash, '$' (rspamd templates $domain and
# $selector in key paths), whitespace or control characters.
_BAD_PATH_CHARS = re.compile(r"[\s\"'\\$;{}\x00-\x1f]")


def _check_dir(setting: str, value: str) -> str:
    return check_dir(setting, value, _BAD_PATH_CHARS,
                     "whitespace, quotes, '$', ';' or braces, which the config cannot hold")


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RspamdLayout:
    """Files of an rspamd signer: keys under `key_dir`, `dkim_signing.conf` in `config_dir`."""

    def __init__(
        self,
        key_dir: str,
        config_dir: str,
        owner: str | None = "root",
        group: str | None = "_rspamd",
        key_mode: int = 0o640,
        config_mode: int = 0o644,
    ) -> None:
        self.key_dir = _check_dir("key_dir", key_dir)
        self.config_dir = _check_dir("config_dir", config_dir)
        check_key_mode(key_mode, "use 0640 with group _rspamd, or 0600 when rspamd's user owns the key")
        check_table_mode("config_mode", config_mode, "configuration")
        self.owner = owner
        self.group = group
        self.key_mode = key_mode
        self.config_mode = config_mode

    def config_test(self) -> str:
        """`rspamadm configtest` when the host has rspamd."""
        return "sh -c 'command -v rspamadm >/dev/null 2>&1 || exit 0; rspamadm configtest -q'"

    # paths -----------------------------------------------------------------

    def key_path(self, key: SigningKey) -> str:
        return f"{self.key_dir}/{key.domain.lower()}.{key.selector}.key"

    @property
    def config_path(self) -> str:
        return f"{self.config_dir}/{CONFIG_NAME}"

    def key_dirs(self) -> list[str]:
        return [self.key_dir]

    # rendering -------------------------------------------------------------

    def files(self, keys: Sequence[SigningKey]) -> list[ManagedFile]:
        senders = self._validate(keys)
        ordered = sorted(keys, key=lambda k: (k.domain.lower(), k.selector))
        out = [
            ManagedFile(
                path=self.key_path(k),
                content=key_file_content(k),
                mode=self.key_mode,
                owner=self.owner,
                group=self.group,
                secret=True,
            )
            for k in ordered
        ]
        out.append(
            ManagedFile(
                path=self.config_path,
                content=self._render(ordered, senders).encode("utf-8"),
                mode=self.config_mode,
            )
        )
        return out

    def render_config(self, keys: Sequence[SigningKey]) -> str:
        senders = self._validate(keys)
        return self._render(sorted(keys, key=lambda k: (k.domain.lower(), k.selector)), senders)

    def _render(self, keys: Sequence[SigningKey], senders: list[tuple[str, str]] | None) -> str:
        lines = [
            "# Managed by dkimroll: do not edit, changes are overwritten.",
            f"# rspamd local.d/{CONFIG_NAME}: every selector of a domain signs (dual RSA + Ed25519).",
            "enabled = true;",
            'use_domain = "header";',
            "allow_username_mismatch = true;",
            "use_esld = false;",
            "try_fallback = false;",
        ]
        if senders is not None:
            lines += self._render_sender_map(senders)
        lines.append("domain {")
        domains: dict[str, list[SigningKey]] = {}
        for k in keys:
            domains.setdefault(k.domain.lower(), []).append(k)
        for domain, subset in domains.items():
            lines.append(f'  "{domain}" {{')
            lines.append("    selectors [")
            entries = [
                f'      {{ path = "{self.key_path(k)}"; selector = "{k.selector}"; }}' for k in subset
            ]
            lines.append(",\n".join(entries))
            lines.append("    ]")
            lines.append("  }")
        lines.append("}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _render_sender_map(senders: list[tuple[str, str]]) -> list[str]:
        exact = [(p, d) for p, d in senders if not p.startswith("*@")]
        wild = [(p[2:], d) for p, d in senders if p.startswith("*@")]
        lines = [
            "# The signing domain of each sender (dkimroll sign_for rules): exact",
            "# addresses first, then whole domains; anyone else is not signed.",
            "use_domain_custom = <<EOD",
            "return function(task)",
            "  local by_address = {",
            *[f"    [{_lua_string(p)}] = {_lua_string(d)}," for p, d in exact],
            "  }",
            "  local by_domain = {",
            *[f"    [{_lua_string(p)}] = {_lua_string(d)}," for p, d in wild],
            "  }",
            "  local from = task:get_from('mime')",
            "  if not from or not from[1] or not from[1].addr then return nil end",
            "  local addr = string.lower(from[1].addr)",
            "  local found = by_address[addr]",
            "  if found then return found end",
            "  local domain = string.match(addr, '@([^@]+)$')",
            "  if domain then return by_domain[domain] end",
            "  return nil",
            "end",
            "EOD",
        ]
        return lines

    def _validate(self, keys: Sequence[SigningKey]) -> list[tuple[str, str]] | None:
        """Check the keys; return the sender map (pattern, domain) when sender
        rules need one, None when every key signs just for `*@<its domain>`."""
        check_keys(keys)
        if all(k.patterns == (f"*@{k.domain}",) for k in keys):
            return None
        owner_of: dict[str, str] = {}
        for k in keys:
            domain = k.domain.lower()
            for pattern in k.patterns:
                normalized = _check_pattern(k.owner_name, pattern)
                other = owner_of.setdefault(normalized, domain)
                if other != domain:
                    raise ConfigError(
                        k.owner_name,
                        f"sign_for pattern {pattern!r} is also claimed by {other}; rspamd signs "
                        "a sender for one domain only",
                    )
        return sorted(owner_of.items(), key=lambda row: (signing_table_order(row[0]), row[1]))


def _check_pattern(where: str, pattern: str) -> str:
    """A sign_for pattern rspamd's sender map can hold: `user@domain` or `*@domain`."""
    local, at, domain = pattern.lower().rpartition("@")
    valid_local = local == "*" or ("*" not in local and _LOCAL_RE.match(local or ""))
    if not at or not valid_local or not NAME_RE.match(domain):
        raise ConfigError(
            where,
            f"sign_for pattern {pattern!r} cannot be expressed for rspamd: use 'user@domain' "
            "or '*@domain'",
        )
    return f"{local}@{domain}"


def key_file_content(key: SigningKey) -> bytes:
    """The key file rspamd loads: PEM for RSA, rspamd's base64 seed+public key for Ed25519."""
    if key.key_type != "ed25519":
        pem = key.private_key_pem
        return (pem if pem.endswith("\n") else pem + "\n").encode("utf-8")
    try:
        private = serialization.load_pem_private_key(key.private_key_pem.encode("utf-8"), None)
    except (ValueError, TypeError):
        raise ConfigError(key.owner_name, "private key is not an unencrypted PEM key") from None
    if not isinstance(private, ed25519.Ed25519PrivateKey):
        raise ConfigError(key.owner_name, "key type is ed25519 but the private key is not Ed25519")
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(seed + public)
