"""A DNS target that publishes DKIM TXT values through GoDaddy's v1 Domains API.

GoDaddy's quirks live here, the rest of dkimroll never sees them:

* `PUT /v1/domains/{domain}/records/TXT/{name}` REPLACES every TXT value at
  that name, so each change is read, merge, write: the current list minus the
  values dkimroll withdraws plus the values it adds. Every other value at the
  name (SPF, verification tokens, other tools' records) is written back as it
  was, TTL included. When nothing would remain, the name is DELETEd (GoDaddy
  does not accept an empty PUT). When the merged list equals the current one,
  nothing is written.
* TXT `data` is the raw, joined text (no quotes, no 255-octet chunks: GoDaddy
  splits long strings itself), at most 512 characters, TTL at least 600. An
  RSA key above 2048 bits does not fit; `check` says so at preview time,
  without calling the API.
* About 60 requests per minute per key: requests are paced client-side
  (`pace_seconds`), 429 is retried after the `retryAfterSec` GoDaddy sends (or
  its Retry-After header), and the transient 409 (and conflict-like 422) that
  GoDaddy answers right after an edit, 5xx and connection failures are retried
  with exponential backoff, at most `max_retries` times per request. A
  validation 422 (bad TTL, too long data) is never retried.
* Errors name the target, zone, record, HTTP status, GoDaddy's code and
  message, and never the API key or secret.

GoDaddy has no multi-name transaction, so one `apply` is one write per
affected name; names that gain values are written before names that only lose
values, so an interruption leaves more published, never less. GoDaddy has no
conditional write either: a change made by someone else between our GET and
our PUT at the same name can be lost (the next run's `present` finds drift).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence
from urllib.parse import quote

import dns.exception
import dns.name
import requests

from providers.dns.base import TxtRecord, in_zone, record_problems, relative_name
from providers.errors import ConfigError, DnsTargetError

__all__ = [
    "ENVIRONMENTS",
    "MAX_DATA_CHARS",
    "MIN_TTL",
    "GoDaddyTarget",
]

log = logging.getLogger(__name__)

ENVIRONMENTS: dict[str, str] = {
    "production": "https://api.godaddy.com",
    "ote": "https://api.ote-godaddy.com",
}
ENV_API_KEY = "GODADDY_API_KEY"
ENV_API_SECRET = "GODADDY_API_SECRET"

MIN_TTL = 600
MAX_DATA_CHARS = 512
MAX_BACKOFF = 60.0  # seconds, cap of the exponential backoff
MAX_RETRY_AFTER = 600.0  # seconds, cap of a server-requested wait
TRANSIENT_422_CODES = frozenset({"CONFLICT", "DUPLICATE_RECORD"})

NO_CREDENTIALS = (
    "no GoDaddy API credentials: set api_key/api_secret as stack secrets or GODADDY_API_KEY/GODADDY_API_SECRET"
)
AUTH_REJECTED = (
    "GoDaddy rejected the API key (401 UNABLE_TO_AUTHENTICATE): check api_key/api_secret and that they "
    "belong to the environment (OTE and production keys differ)"
)


@dataclass(frozen=True)
class _Reply:
    """One HTTP answer, reduced to what the error mapping needs."""

    method: str
    path: str
    status: int
    body: Any  # parsed JSON, or None
    text: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def code(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("code"), str):
            return self.body["code"]
        return ""

    @property
    def message(self) -> str:
        if isinstance(self.body, dict) and isinstance(self.body.get("message"), str):
            return self.body["message"]
        return " ".join(self.text.split())[:200]

    @property
    def fields(self) -> list[dict]:
        if isinstance(self.body, dict) and isinstance(self.body.get("fields"), list):
            return [f for f in self.body["fields"] if isinstance(f, dict)]
        return []

    def status_text(self) -> str:
        """`HTTP 422 INVALID_BODY: message; records[0].ttl: must be >= 600`."""
        text = f"HTTP {self.status}"
        if self.code:
            text += f" {self.code}"
        if self.message:
            text += f": {self.message}"
        details = [
            f"{f.get('path', '?')}: {f.get('message') or f.get('code') or '?'}" for f in self.fields
        ]
        if details:
            text += " (" + "; ".join(details) + ")"
        return text


@dataclass
class _Entry:
    """One TXT value as GoDaddy holds it."""

    data: str
    ttl: int | None

    def body(self) -> dict:
        return {"data": self.data} if self.ttl is None else {"data": self.data, "ttl": self.ttl}


class GoDaddyTarget:
    """DKIM TXT values in domains hosted by GoDaddy DNS, through the v1 Domains API.

    `zone` in every call is the GoDaddy domain (e.g. `example.com`); record
    names are sent relative to it (`@` for the apex). `sleep` and `clock` are
    the pacing/backoff time sources, injectable so tests stay fast.
    """

    def __init__(
        self,
        name: str,
        api_key: str | None = None,
        api_secret: str | None = None,
        environment: str = "production",
        base_url: str | None = None,
        pace_seconds: float = 1.0,
        max_retries: int = 6,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        key = f"dkimroll:dns.{name}"
        env = (environment or "").strip().lower()
        if env not in ENVIRONMENTS:
            raise ConfigError(f"{key}.environment", f"must be one of {', '.join(ENVIRONMENTS)}, got {environment!r}")
        if base_url is not None:
            base_url = str(base_url).strip().rstrip("/")
            if not base_url.startswith(("https://", "http://")):
                raise ConfigError(f"{key}.base_url", f"must be an http(s) URL, got {base_url!r}")
        if not _number(pace_seconds) or pace_seconds < 0:
            raise ConfigError(f"{key}.pace_seconds", f"must be a number >= 0, got {pace_seconds!r}")
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ConfigError(f"{key}.max_retries", f"must be an integer >= 0, got {max_retries!r}")
        if not _number(timeout) or timeout <= 0:
            raise ConfigError(f"{key}.timeout", f"must be a number > 0, got {timeout!r}")
        self.name = name
        self.environment = env
        self.base_url = base_url or ENVIRONMENTS[env]
        self.pace_seconds = float(pace_seconds)
        self.max_retries = max_retries
        self.timeout = float(timeout)
        self._api_key = api_key or os.environ.get(ENV_API_KEY) or None
        self._api_secret = api_secret or os.environ.get(ENV_API_SECRET) or None
        self._sleep = sleep
        self._clock = clock
        self._next_slot: float | None = None  # earliest clock() at which the next request may start

    def __repr__(self) -> str:
        return (
            f"GoDaddyTarget(name={self.name!r}, environment={self.environment!r}, base_url={self.base_url!r}, "
            f"credentials={'set' if self.has_credentials else 'missing'})"
        )

    @property
    def has_credentials(self) -> bool:
        return bool(self._api_key and self._api_secret)

    # -- protocol

    def check(self, zone: str, records: Sequence[TxtRecord]) -> list[str]:
        """Problems that would make `apply` fail.

        Limits (names, TTL, data length) and missing credentials are found
        locally, without any request. Only when those are fine does one GET
        confirm that the key works and the account holds the domain.
        """
        try:
            zone_text = _zone_text(zone)
        except ConfigError as exc:
            return [str(exc)]
        problems: list[str] = []
        if not self.has_credentials:
            problems.append(NO_CREDENTIALS)
        problems.extend(self._record_problems(zone_text, records))
        if problems:
            return problems
        probe = _relative(records[0].name, zone_text) if records else "@"
        record = _absolute(probe, zone_text)
        try:
            with self._session() as session:
                reply = self._request(session, "GET", zone_text, probe, record)
                if not reply.ok:
                    raise self._error(reply, zone_text, record)
                self._entries(reply, zone_text, record)
        except DnsTargetError as exc:
            problems.append(exc.detail)
        return problems

    def present(self, zone: str, records: Sequence[TxtRecord]) -> list[TxtRecord]:
        """The records whose value GoDaddy holds at their name now (TTL not compared)."""
        zone_text = self._zone_or_raise(zone)
        self._require_credentials(zone_text)
        names: dict[str, str] = {}
        for record in records:
            if _inside(record.name, zone_text):
                names.setdefault(_relative(record.name, zone_text), _absolute_name(record.name))
        held: set[tuple[str, str]] = set()
        with self._session() as session:
            for rel, record in names.items():
                for entry in self._get_txt(session, zone_text, rel, record):
                    held.add((rel, entry.data))
        return [
            r
            for r in records
            if _inside(r.name, zone_text) and (_relative(r.name, zone_text), r.value) in held
        ]

    def apply(self, zone: str, add: Sequence[TxtRecord], remove: Sequence[TxtRecord]) -> bool:
        """Add and remove exactly these values, name by name; True if anything was written."""
        zone_text = self._zone_or_raise(zone)
        self._require_credentials(zone_text)
        problems = self._record_problems(zone_text, add)
        problems.extend(
            f"record {r.name} is not within zone {zone_text}" for r in remove if not _inside(r.name, zone_text)
        )
        if problems:
            raise DnsTargetError(self.name, zone_text, "nothing written: " + "; ".join(problems))

        adds: dict[str, dict[str, int]] = {}
        removes: dict[str, set[str]] = {}
        for record in add:
            adds.setdefault(_relative(record.name, zone_text), {})[record.value] = record.ttl
        for record in remove:
            removes.setdefault(_relative(record.name, zone_text), set()).add(record.value)
        # names that gain values first: an interrupted run leaves more published, not less
        order = sorted(set(adds) | set(removes), key=lambda n: (n not in adds, n))

        wrote = False
        with self._session() as session:
            for rel in order:
                record = _absolute(rel, zone_text)
                current = self._get_txt(session, zone_text, rel, record)
                merged = _merge(current, adds.get(rel, {}), removes.get(rel, set()))
                if [e.body() for e in merged] == [e.body() for e in current]:
                    continue
                if merged:
                    body = [e.body() for e in merged]
                    reply = self._request(session, "PUT", zone_text, rel, record, body)
                    if not reply.ok:
                        raise self._error(reply, zone_text, record, body)
                else:
                    reply = self._request(session, "DELETE", zone_text, rel, record)
                    if not reply.ok and not (reply.status == 404 and reply.code != "UNKNOWN_DOMAIN"):
                        raise self._error(reply, zone_text, record)  # 404 NOT_FOUND: already gone
                wrote = True
                log.info("dns target %s: %s TXT %s (%d value(s))", self.name, reply.method, record, len(merged))
        return wrote

    # -- local validation

    def _record_problems(self, zone: str, records: Sequence[TxtRecord]) -> list[str]:
        advice = f": GoDaddy requires TTL ≥ {MIN_TTL}; set ttl: {MIN_TTL} or more"
        problems: list[str] = []
        for record in records:
            problems += record_problems(zone, [record], min_ttl=MIN_TTL, low_ttl_advice=advice)
            if len(record.value) > MAX_DATA_CHARS:
                problems.append(_too_long(record))
        return problems

    def _zone_or_raise(self, zone: str) -> str:
        try:
            return _zone_text(zone)
        except ConfigError as exc:
            raise DnsTargetError(self.name, str(zone), exc.problem) from None

    def _require_credentials(self, zone: str) -> None:
        if not self.has_credentials:
            raise DnsTargetError(self.name, zone, NO_CREDENTIALS)

    # -- HTTP

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update(
            {
                "Authorization": f"sso-key {self._api_key}:{self._api_secret}",
                "Accept": "application/json",
                "User-Agent": "dkimroll",
            }
        )
        return session

    def _path(self, zone: str, rel: str) -> str:
        return f"/v1/domains/{quote(zone, safe='')}/records/TXT/{quote(rel, safe='@')}"

    def _pace(self) -> None:
        """Start requests at least `pace_seconds` apart (GoDaddy allows ~60 per minute per key)."""
        if self.pace_seconds <= 0:
            return
        now = self._clock()
        if self._next_slot is not None and now < self._next_slot:
            self._sleep(self._next_slot - now)
            now = max(self._clock(), self._next_slot)
        self._next_slot = now + self.pace_seconds

    def _request(
        self,
        session: requests.Session,
        method: str,
        zone: str,
        rel: str,
        record: str,
        body: list[dict] | None = None,
    ) -> _Reply:
        """One API call with pacing and retries; returns the last reply (the caller maps errors)."""
        path = self._path(zone, rel)
        url = self.base_url + path
        attempt = 0
        while True:
            self._pace()
            try:
                response = session.request(method, url, json=body, timeout=self.timeout)
            except requests.RequestException as exc:
                if attempt < self.max_retries:
                    delay = _backoff(attempt)
                    log.warning(
                        "dns target %s: %s %s failed (%s), retry %d/%d in %gs",
                        self.name, method, path, self._scrub(exc.__class__.__name__), attempt + 1,
                        self.max_retries, delay,
                    )
                    self._sleep(delay)
                    attempt += 1
                    continue
                raise DnsTargetError(
                    self.name,
                    zone,
                    self._scrub(
                        f"cannot reach the GoDaddy API at {self.base_url} ({method} {path}) "
                        f"after {attempt} retries: {exc}"
                    ),
                    record=record,
                ) from None
            reply = _reply(method, path, response)
            if reply.ok:
                return reply
            delay = self._retry_delay(reply, attempt)
            if delay is None or attempt >= self.max_retries:
                return _RetriedReply.wrap(reply, attempt) if attempt else reply
            log.warning(
                "dns target %s: %s %s answered %s, retry %d/%d in %gs",
                self.name, method, path, self._scrub(reply.status_text()), attempt + 1, self.max_retries, delay,
            )
            self._sleep(delay)
            attempt += 1

    @staticmethod
    def _retry_delay(reply: _Reply, attempt: int) -> float | None:
        """Seconds to wait before retrying `reply`, or None when it must not be retried."""
        if reply.status == 429:
            wait = _retry_after(reply)
            return _backoff(attempt) if wait is None else wait
        if reply.status == 409:
            return _backoff(attempt)
        if reply.status == 422 and reply.code in TRANSIENT_422_CODES:
            return _backoff(attempt)
        if reply.status >= 500:
            wait = _retry_after(reply)
            return _backoff(attempt) if wait is None else wait
        return None

    def _get_txt(self, session: requests.Session, zone: str, rel: str, record: str) -> list[_Entry]:
        reply = self._request(session, "GET", zone, rel, record)
        if not reply.ok:
            raise self._error(reply, zone, record)
        return self._entries(reply, zone, record)

    def _entries(self, reply: _Reply, zone: str, record: str) -> list[_Entry]:
        if not isinstance(reply.body, list):
            raise DnsTargetError(
                self.name, zone, f"GoDaddy answered {reply.method} {reply.path} with something other than a "
                f"list of records: {self._scrub(reply.text[:200])!r}", record=record,
            )
        entries = []
        for item in reply.body:
            if not isinstance(item, dict) or not isinstance(item.get("data"), str):
                raise DnsTargetError(
                    self.name, zone, f"GoDaddy returned a malformed record: {self._scrub(repr(item)[:200])}",
                    record=record,
                )
            if item.get("type", "TXT") != "TXT":
                continue
            ttl = item.get("ttl")
            entries.append(_Entry(item["data"], ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None))
        return entries

    # -- errors

    def _error(self, reply: _Reply, zone: str, record: str, body: list[dict] | None = None) -> DnsTargetError:
        code = reply.code
        retried = f" (after {reply.retries} retries)" if isinstance(reply, _RetriedReply) else ""
        where = f"{self.environment}, {self.base_url}"
        if reply.status == 401:
            detail = f"{AUTH_REJECTED}; this target uses {where}"
        elif reply.status == 403 and code == "ACCESS_DENIED":
            detail = (
                f"GoDaddy denied access to its DNS API (403 ACCESS_DENIED: {reply.message}): since 2024 GoDaddy "
                "serves the DNS API only to accounts with 10 or more domains or a Discount Domain Club plan, "
                "and the key must belong to the account holding the domain. Publish this zone through another "
                f"target (e.g. delegate _domainkey.{zone} to Route53 or an RFC 2136 server) or use a manual target"
            )
        elif (reply.status == 404 and reply.method != "DELETE") or code == "UNKNOWN_DOMAIN":
            detail = (
                f"GoDaddy does not know domain {zone} in this account ({reply.status} {code or 'NOT_FOUND'}: "
                f"{reply.message}): check the zone name, that the domain belongs to the account of this API "
                f"key, and the environment ({where})"
            )
        elif reply.status == 429:
            detail = (
                f"GoDaddy rate limit: {reply.method} {reply.path} answered {reply.status_text()}{retried}; "
                "GoDaddy allows about 60 requests per minute per key: run again later or raise pace_seconds"
            )
        elif reply.status == 422:
            detail = f"GoDaddy rejected {reply.method} {reply.path}: {reply.status_text()}{retried}"
            blamed = _blamed_values(reply.fields, body)
            if blamed:
                detail += "; the rejected values: " + "; ".join(blamed)
        else:
            detail = f"GoDaddy API {reply.method} {reply.path} failed: {reply.status_text()}{retried}"
        return DnsTargetError(self.name, zone, self._scrub(detail), record=record)

    def _scrub(self, text: str) -> str:
        """`text` without the API key or secret, whatever echoed them."""
        for secret in (self._api_secret, self._api_key):
            if secret:
                text = text.replace(secret, "***")
        return text


@dataclass(frozen=True)
class _RetriedReply(_Reply):
    retries: int = 0

    @classmethod
    def wrap(cls, reply: _Reply, retries: int) -> "_RetriedReply":
        return cls(reply.method, reply.path, reply.status, reply.body, reply.text, reply.headers, retries)


# --- helpers ---------------------------------------------------------------------------


def _reply(method: str, path: str, response: requests.Response) -> _Reply:
    text = response.text or ""
    try:
        body = response.json() if text.strip() else None
    except ValueError:
        body = None
    return _Reply(method, path, response.status_code, body, text, dict(response.headers))


def _retry_after(reply: _Reply) -> float | None:
    """GoDaddy's `retryAfterSec` (body), else the Retry-After header in seconds; None if neither."""
    value: Any = reply.body.get("retryAfterSec") if isinstance(reply.body, dict) else None
    if not _number(value):
        header = {k.lower(): v for k, v in reply.headers.items()}.get("retry-after")
        try:
            value = float(header) if header is not None else None
        except ValueError:
            value = None  # an HTTP date: fall back to backoff
    if value is None or not math.isfinite(value):
        return None
    return min(max(float(value), 0.0), MAX_RETRY_AFTER)


def _backoff(attempt: int) -> float:
    return min(MAX_BACKOFF, 2.0**attempt)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _merge(current: list[_Entry], added: dict[str, int], removed: set[str]) -> list[_Entry]:
    """current - removed + added; values not named keep their place and TTL; ours take our TTL."""
    merged: list[_Entry] = []
    seen: set[str] = set()
    for entry in current:
        if entry.data in added:
            if entry.data not in seen:
                merged.append(_Entry(entry.data, added[entry.data]))
                seen.add(entry.data)
        elif entry.data not in removed:
            merged.append(entry)
    merged.extend(_Entry(value, ttl) for value, ttl in added.items() if value not in seen)
    return merged


def _blamed_values(fields: list[dict], body: list[dict] | None) -> list[str]:
    """For a 422 naming `records[i].x`, which value that was (shortened)."""
    out = []
    for f in fields:
        path = str(f.get("path", ""))
        if not body or not path.startswith("records["):
            continue
        try:
            index = int(path[len("records[") : path.index("]")])
        except ValueError:
            continue
        if 0 <= index < len(body):
            data = body[index].get("data", "")
            out.append(f"{path} is {data[:40]!r}{'...' if len(data) > 40 else ''} (ttl {body[index].get('ttl')})")
    return out


def _too_long(record: TxtRecord) -> str:
    text = (
        f"record {record.name}: the TXT value is {len(record.value)} characters, but GoDaddy accepts at most "
        f"{MAX_DATA_CHARS} characters per TXT value"
    )
    if "k=rsa" in record.value.replace(" ", "") or "k=" not in record.value:
        text += (
            ": a 4096-bit RSA key does not fit (nor does rsa-3072; rsa-2048 is the largest RSA key that does). "
            "Use algorithm rsa-2048 or ed25519 for this domain, or host the zone elsewhere, e.g. delegate "
            "the _domainkey zone to another DNS target (route53, rfc2136, bind-file)"
        )
    else:
        text += (
            ". Use algorithm rsa-2048 or ed25519, or host the zone elsewhere, e.g. delegate the _domainkey "
            "zone to another DNS target (route53, rfc2136, bind-file)"
        )
    return text


def _zone_text(zone: str) -> str:
    try:
        name = dns.name.from_text(str(zone))
    except dns.exception.DNSException as exc:
        raise ConfigError("zone", f"{zone!r} is not a valid DNS name: {exc}") from None
    text = name.to_text(omit_final_dot=True).lower()
    if len(name.labels) < 3:  # at least two labels plus the root
        raise ConfigError("zone", f"{zone!r} is not a GoDaddy domain (e.g. example.com)")
    return text


def _inside(name: str, zone: str) -> bool:
    try:
        return in_zone(name, zone)
    except dns.exception.DNSException:
        return False


def _relative(name: str, zone: str) -> str:
    return relative_name(name, zone).lower()


def _absolute_name(name: str) -> str:
    return dns.name.from_text(name).to_text(omit_final_dot=True).lower()


def _absolute(rel: str, zone: str) -> str:
    return zone if rel == "@" else f"{rel}.{zone}"
