"""The stack file, parsed once into validated, typed objects.

Everything under `dkimroll:` in `stacks/Pulumi.<stack>.yaml` passes through
`parse_stack_config` before any resource is declared, so bad input fails at
preview time with the stack key at fault and nothing changed (invariant 7).
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from keys import keygen, names, selector as selectors
from providers.errors import ConfigError

NAMESPACE = "dkimroll"
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: Any) -> timedelta:
    """'180d', '12h', '2w' → timedelta. Plain integers are seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a duration; use a number and a unit s, m, h, d or w (e.g. 180d)")
    amount, unit = match.groups()
    return timedelta(**{_UNITS[unit]: int(amount)})


Duration = Annotated[timedelta, Field(json_schema_extra={"format": "duration"})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RotationPolicy(_Strict):
    """When keys roll, how long they are announced ahead and kept after use."""

    every: timedelta = timedelta(days=180)
    publish_ahead: timedelta = timedelta(days=2)
    retain: timedelta = timedelta(days=7)
    revoke: Literal["empty-p", "withdraw"] = "empty-p"
    revoke_for: timedelta = timedelta(days=7)

    @field_validator("every", "publish_ahead", "retain", "revoke_for", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        return parse_duration(value)


# --- DNS targets -----------------------------------------------------------


class _Target(_Strict):
    nameservers: tuple[str, ...] = ()  # host:port to verify against; default: NS discovery
    # How a new record is confirmed before signers use it: "nameservers" queries every
    # authoritative server directly; "backend" reads it back through the target (a zone
    # file, an API), which proves less. "auto": nameservers, except a bind-file target
    # with no nameservers listed.
    verify: Literal["auto", "nameservers", "backend"] = "auto"
    verify_timeout: float = Field(default=180.0, ge=0)

    def settings(self, base: str) -> dict[str, Any]:
        """Plain settings as the DNS backend gets them: directories resolved against `base`."""
        settings = self.model_dump(mode="json")
        for key in ("zone_dir", "export_dir"):
            if settings.get(key):
                settings[key] = os.path.normpath(os.path.join(base, settings[key]))
        return settings

    @field_validator("nameservers")
    @classmethod
    def _hostports(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            host, _, port = item.rpartition(":") if ":" in item else (item, "", "53")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{item!r} is not host:port")
        return value


class BindFileTargetConfig(_Target):
    type: Literal["bind-file"]
    zone_dir: str
    file_pattern: str = "{zone}.zone"
    create: bool = False
    create_nameserver: str | None = None
    reload: str | None = None
    check_command: str | None = "named-checkzone"


class ManualTargetConfig(_Target):
    type: Literal["manual"]
    export_dir: str | None = None


class Rfc2136TargetConfig(_Target):
    type: Literal["rfc2136"]
    server: str
    port: int = Field(default=53, ge=1, le=65535)
    tsig_name: str | None = None
    tsig_algorithm: Literal["hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1",
                            "hmac-md5"] = "hmac-sha256"
    tsig_secret: str | None = Field(default=None, repr=False)  # a stack secret
    timeout: float = Field(default=10.0, gt=0)

    @model_validator(mode="after")
    def _tsig_pair(self) -> "Rfc2136TargetConfig":
        if self.tsig_secret and not self.tsig_name:
            raise ValueError("tsig_secret needs tsig_name")
        return self


class Route53TargetConfig(_Target):
    type: Literal["route53"]
    profile: str | None = None
    region: str | None = None
    hosted_zone_id: str | None = None
    private_zone: bool = False
    endpoint_url: str | None = None
    wait_timeout: float = Field(default=300.0, gt=0)


class GoDaddyTargetConfig(_Target):
    type: Literal["godaddy"]
    environment: Literal["production", "ote"] = "production"
    base_url: str | None = None
    api_key: str | None = Field(default=None, repr=False)  # a stack secret, or GODADDY_API_KEY
    api_secret: str | None = Field(default=None, repr=False)  # a stack secret, or GODADDY_API_SECRET
    pace_seconds: float = Field(default=1.0, ge=0)


DnsTargetConfig = Annotated[
    Union[BindFileTargetConfig, ManualTargetConfig, Rfc2136TargetConfig, Route53TargetConfig,
          GoDaddyTargetConfig],
    Field(discriminator="type"),
]
DNS_TYPES = ("bind-file", "manual", "rfc2136", "route53", "godaddy")
# Settings that are secrets: passed to resources as Pulumi secrets, never printed.
SECRET_SETTINGS = frozenset({"tsig_secret", "api_key", "api_secret", "passphrase"})

# --- signer hosts ----------------------------------------------------------

_MODE = re.compile(r"^0?[0-7]{3}$")


SOFTWARE_DEFAULTS = {
    # software: (key_dir, table_dir, group, mode) on a real host
    "opendkim": ("/etc/opendkim/keys", "/etc/opendkim", None, "0600"),
    "rspamd": ("/var/lib/rspamd/dkim", "/etc/rspamd/local.d", "_rspamd", "0640"),
    "exim": ("/etc/exim4/dkim", "/etc/exim4", "Debian-exim", "0640"),
}


class _Signer(_Strict):
    software: Literal["opendkim", "rspamd", "exim"] = "opendkim"
    key_dir: str | None = None
    table_dir: str | None = None
    owner: str | None = None
    group: str | None = None
    mode: str | None = None
    reload: str | None = None

    @field_validator("mode")
    @classmethod
    def _octal(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not _MODE.match(value):
            raise ValueError(f"{value!r} is not an octal file mode such as \"0600\" or \"0640\"")
        if int(value, 8) & 0o007:
            raise ValueError(f"{value} gives others access to private keys; use 0600 or 0640")
        return value

    def layout_settings(self, key_dir: str, table_dir: str) -> dict[str, Any]:
        """Settings for the layout, with the software's defaults filled in."""
        _key_dir, _table_dir, group, mode = SOFTWARE_DEFAULTS[self.software]
        return {
            "software": self.software,
            "key_dir": key_dir,
            "table_dir": table_dir,
            "owner": self.owner,
            "group": self.group if self.group is not None else group,
            "mode": self.mode or mode,
            "reload": self.reload,
        }


class LocalSignerConfig(_Signer):
    transport: Literal["local"]
    root: str

    def resolved_dirs(self, base: str) -> tuple[str, str]:
        """Key and table directories, absolute: default `<root>/keys` and `<root>`; relative to root."""
        root = os.path.join(base, self.root)
        key_dir = os.path.join(root, self.key_dir or "keys")
        table_dir = os.path.join(root, self.table_dir or ".")
        return os.path.normpath(key_dir), os.path.normpath(table_dir)


class SshSignerConfig(_Signer):
    transport: Literal["ssh"]
    host: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str = "root"
    known_hosts: str | None = "~/.ssh/known_hosts"
    host_key_fingerprint: str | None = None  # "SHA256:…", pins the host key instead of known_hosts
    identity_file: str | None = None
    passphrase: str | None = Field(default=None, repr=False)  # a stack secret
    use_agent: bool = True
    sudo: bool = False
    timeout: float = Field(default=30.0, gt=0)

    def resolved_dirs(self, base: str) -> tuple[str, str]:
        """Absolute paths on the host, defaulting to the software's usual places."""
        key_dir, table_dir, _group, _mode = SOFTWARE_DEFAULTS[self.software]
        return self.key_dir or key_dir, self.table_dir or table_dir

    @field_validator("key_dir", "table_dir")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError(f"{value!r} must be an absolute path on the host")
        return value


SignerConfig = Annotated[Union[LocalSignerConfig, SshSignerConfig], Field(discriminator="transport")]
SIGNER_TRANSPORTS = ("local", "ssh")

# --- domains ---------------------------------------------------------------


class DomainConfig(_Strict):
    dns: str
    zone: str | None = None
    signers: tuple[str, ...] = ()
    mode: Literal["shared", "per-signer"] = "shared"
    algorithm: tuple[str, ...] = ("rsa-2048",)
    selector: str | None = None
    rotation: RotationPolicy | None = None
    testing: Union[bool, Literal["staged"]] = False  # "staged": t=y until the first key is verified
    sign_for: tuple[str, ...] = ()
    ttl: int = Field(default=3600, ge=60, le=604800)
    private_key: str | None = Field(default=None, repr=False)  # imported PEM; set as a secret

    @model_validator(mode="after")
    def _import_fits(self) -> "DomainConfig":
        if self.private_key is not None and (len(self.algorithm) != 1 or self.mode != "shared"):
            raise ValueError("private_key (an imported key) needs mode: shared and exactly one algorithm")
        return self

    @field_validator("algorithm", mode="before")
    @classmethod
    def _algorithms(cls, value: Any) -> tuple[str, ...]:
        items = (value,) if isinstance(value, str) else tuple(value)
        if not items:
            raise ValueError("list at least one algorithm")
        try:
            specs = [keygen.parse_algorithm(item) for item in items]
        except ConfigError as exc:
            raise ValueError(exc.problem) from None
        types = [spec.key_type for spec in specs]
        if len(set(types)) != len(types):
            raise ValueError("list at most one RSA size and at most one ed25519")
        return tuple(spec.name for spec in specs)

    @field_validator("sign_for")
    @classmethod
    def _patterns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if "@" not in pattern or any(ch.isspace() for ch in pattern):
                raise ValueError(f"{pattern!r} is not a sender pattern such as \"*@example.com\"")
        return value


class Defaults(_Strict):
    selector: str = "s{yyyy}{mm}"
    per_signer_selector: str = "{signer}-{yyyy}{mm}"
    rotation: RotationPolicy = RotationPolicy()


class StackConfig(_Strict):
    dns: dict[str, DnsTargetConfig]
    signers: dict[str, SignerConfig] = {}
    domains: dict[str, DomainConfig]
    defaults: Defaults = Defaults()

    @model_validator(mode="after")
    def _references(self) -> "StackConfig":
        for domain, spec in self.domains.items():
            if spec.dns not in self.dns:
                known = ", ".join(sorted(self.dns)) or "none defined"
                raise ConfigError(
                    f"{NAMESPACE}:domains.{domain}.dns",
                    f"unknown DNS target {spec.dns!r}; targets in dkimroll:dns: {known}",
                )
            for signer in spec.signers:
                if signer not in self.signers:
                    known = ", ".join(sorted(self.signers)) or "none defined"
                    raise ConfigError(
                        f"{NAMESPACE}:domains.{domain}.signers",
                        f"unknown signer {signer!r}; signers in dkimroll:signers: {known}",
                    )
        return self

    # Resolved views, so callers never re-apply defaults themselves.
    def rotation_for(self, domain: str) -> RotationPolicy:
        return self.domains[domain].rotation or self.defaults.rotation

    def selector_template(self, domain: str) -> str:
        spec = self.domains[domain]
        if spec.selector:
            template = spec.selector
        elif spec.mode == "per-signer":
            template = self.defaults.per_signer_selector
        else:
            template = self.defaults.selector
        if len(spec.algorithm) > 1 and "{alg}" not in template:
            if spec.selector:
                raise ConfigError(
                    f"{NAMESPACE}:domains.{domain}.selector",
                    "with several algorithms the selector must contain {alg}, e.g. \"s{yyyy}{mm}-{alg}\"",
                )
            template += "-{alg}"
        if spec.mode == "per-signer" and "{signer}" not in template and len(spec.signers) > 1:
            raise ConfigError(
                f"{NAMESPACE}:domains.{domain}.selector",
                "per-signer mode needs {signer} in the selector so each server gets its own, "
                "e.g. \"{signer}-{yyyy}{mm}\"",
            )
        return template

    def zone_for(self, domain: str) -> str:
        return self.domains[domain].zone or domain


def _loc_to_key(loc: tuple) -> str:
    parts = [str(part) for part in loc if not str(part).startswith(("function-", "tagged-union"))]
    # Drop discriminator tags pydantic inserts (e.g. 'bind-file', 'local').
    parts = [p for p in parts if p not in DNS_TYPES + SIGNER_TRANSPORTS]
    return f"{NAMESPACE}:" + ".".join(parts)


def parse_stack_config(raw: dict[str, Any]) -> StackConfig:
    """Validate the `dkimroll:*` values of a stack; raise ConfigError naming the key at fault."""
    try:
        config = StackConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "union_tag_invalid":
            message += f" (valid: {', '.join(DNS_TYPES if 'dns' in first['loc'][:1] else SIGNER_TRANSPORTS)})"
        if first["type"] == "extra_forbidden":
            message = "unknown setting"
        raise ConfigError(_loc_to_key(first["loc"]), message) from None
    except ConfigError:
        raise
    _check_names(config)
    return config


def _check_names(config: StackConfig) -> None:
    """Domains must be valid DNS names in A-label form; selector templates must render."""
    from datetime import datetime, timezone

    sample = datetime(2026, 12, 1, tzinfo=timezone.utc)
    for domain in config.domains:
        key = f"{NAMESPACE}:domains.{domain}"
        try:
            a_label = names.validate_domain(domain)
        except ConfigError as exc:
            raise ConfigError(key, exc.problem) from None
        if a_label != domain:
            raise ConfigError(key, f"write the domain in A-label form: {a_label}")
        for signer in config.domains[domain].signers or ("mta1",):
            for alg in config.domains[domain].algorithm:
                try:
                    selectors.render_selector(
                        config.selector_template(domain), sample, signer=signer,
                        alg=keygen.parse_algorithm(alg).key_type,
                    )
                except ConfigError as exc:
                    raise ConfigError(f"{key}.selector", exc.problem) from None
