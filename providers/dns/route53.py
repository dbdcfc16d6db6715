"""A DNS target for Amazon Route53 hosted zones (boto3, the standard AWS credential chain).

Route53 keeps one TXT resource record set (RRset) per name: every TXT value at
that name (DKIM keys, SPF, verification tokens) is one `ResourceRecord` of the
same RRset. A value is one `Value` string in presentation form: the value's
<=255-octet character-strings, each quoted, separated by spaces. So a change
is always read, merge, write:

* read the current TXT RRset at each affected name;
* new values = current - removed + added; values dkimroll does not manage stay
  exactly as Route53 returned them (byte for byte, TTL included when possible);
* an empty result is a DELETE carrying the exact current RRset (Route53
  refuses a DELETE whose values or TTL differ), anything else an UPSERT of
  the whole merged RRset;
* all names of a zone go in ONE ChangeResourceRecordSets call (split into
  several only when Route53's batch limits force it), then GetChange is
  polled until INSYNC, with a deadline.

Route53's limits are enforced here, before anything is sent, because the
local emulator used in tests does not enforce them: each character-string
<=255 octets (`CharacterStringTooLong`), one `Value` <=4000 characters, a
batch <=1000 ResourceRecord elements and <=32000 characters of values, with
UPSERT counted twice for both. `validate_batch` and `split_batches` are pure.

Route53's escapes differ from RFC 1035's: in a TXT value `\\ooo` is a
three-digit OCTAL code (AWS: "exämple" is written "ex\\344mple"), while
dnspython's presentation format reads `\\DDD` as decimal. DKIM records are
printable ASCII, where the two agree; for everything else this module renders
and parses Route53's own form, so foreign values are compared correctly.

boto3 clients are built inside each call (nothing is captured by the Pulumi
layer). botocore's own retries are off; this module retries throttling,
`PriorRequestNotComplete` and 5xx answers with jittered exponential backoff,
up to `max_attempts` calls. Errors carry the server's code and message, never
credentials.
"""

from __future__ import annotations

import functools
import random
import re
import time
from typing import Any, Callable, Iterable, Sequence

import dns.exception
import dns.name

from keys import chunking, render
from providers.dns.base import TxtRecord, record_problems
from providers.errors import ConfigError, DnsTargetError

__all__ = [
    "MAX_BATCH_CHARS",
    "MAX_BATCH_RECORDS",
    "MAX_STRING_OCTETS",
    "MAX_VALUE_CHARS",
    "RETRYABLE_CODES",
    "Route53Target",
    "batch_size",
    "join_value",
    "parse_value",
    "render_value",
    "split_batches",
    "validate_batch",
]

MAX_STRING_OCTETS = 255  # one character-string (CharacterStringTooLong beyond)
MAX_VALUE_CHARS = 4000  # one ResourceRecord Value
MAX_BATCH_RECORDS = 1000  # ResourceRecord elements per ChangeResourceRecordSets (UPSERT counts twice)
MAX_BATCH_CHARS = 32000  # characters of all Value elements per request (UPSERT counts twice)

RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "PriorRequestNotComplete",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ServiceUnavailable",
        "InternalError",
    }
)
NO_CREDENTIALS = "no AWS credentials found (standard AWS chain: env, profile, instance role)"

_ACTIONS = ("CREATE", "UPSERT", "DELETE")


# --- Route53's TXT value text --------------------------------------------------------


def render_value(value: str) -> str:
    """The Route53 `Value` of one TXT record: <=255-octet chunks quoted (octal escapes), space separated."""
    return render.presentation(value, octal=True)


_OCTAL = re.compile(r"[0-7]{3}")


def parse_value(text: str) -> tuple[bytes, ...]:
    """The character-strings of a Route53 TXT `Value` (octal escapes); ValueError if malformed.

    Quoted strings may hold spaces; unquoted words (as some tools write them)
    are strings too.
    """
    data = text.encode("utf-8", "surrogateescape")
    strings: list[bytes] = []
    i, n = 0, len(data)
    while i < n:
        c = data[i]
        if c in b" \t":
            i += 1
            continue
        quoted = c == 0x22
        if quoted:
            i += 1
        buf = bytearray()
        closed = not quoted
        while i < n:
            c = data[i]
            if quoted and c == 0x22:
                i += 1
                closed = True
                break
            if not quoted and c in b" \t":
                break
            if not quoted and c == 0x22:
                raise ValueError(f"unexpected quote inside an unquoted string in {text!r}")
            if c == 0x5C:
                if i + 1 >= n:
                    raise ValueError(f"dangling backslash in {text!r}")
                digits = data[i + 1 : i + 4].decode("ascii", "replace")
                if _OCTAL.fullmatch(digits) and int(digits, 8) <= 0xFF:
                    buf.append(int(digits, 8))
                    i += 4
                else:
                    buf.append(data[i + 1])
                    i += 2
                continue
            buf.append(c)
            i += 1
        if not closed:
            raise ValueError(f"unterminated quoted string in {text!r}")
        strings.append(bytes(buf))
    if not strings:
        raise ValueError("empty TXT value")
    return tuple(strings)


def join_value(text: str) -> str:
    """The joined, unescaped text of a Route53 TXT `Value` (what a verifier sees)."""
    return chunking.join(parse_value(text))


# --- batch limits ------------------------------------------------------------------------


def _values(change: dict) -> list[str]:
    rrset = change.get("ResourceRecordSet") or {}
    return [str(rr.get("Value", "")) for rr in rrset.get("ResourceRecords") or []]


def batch_size(changes: Iterable[dict]) -> tuple[int, int]:
    """(ResourceRecord elements, characters of Value elements) as Route53 counts them: UPSERT twice."""
    records = chars = 0
    for change in changes:
        weight = 2 if change.get("Action") == "UPSERT" else 1
        values = _values(change)
        records += weight * len(values)
        chars += weight * sum(len(v) for v in values)
    return records, chars


def validate_batch(changes: Sequence[dict]) -> list[str]:
    """Everything Route53 would refuse in this ChangeBatch, as messages; [] when it is acceptable."""
    problems: list[str] = []
    for change in changes:
        action = change.get("Action")
        rrset = change.get("ResourceRecordSet") or {}
        name = str(rrset.get("Name", "?")).rstrip(".")
        if action not in _ACTIONS:
            problems.append(f"{name}: unknown change action {action!r}")
        if not rrset.get("ResourceRecords"):
            problems.append(f"{name}: a change needs at least one ResourceRecord")
        for value in _values(change):
            if len(value) > MAX_VALUE_CHARS:
                problems.append(
                    f"{name}: a TXT value of {len(value)} characters exceeds Route53's {MAX_VALUE_CHARS} per value"
                )
            if rrset.get("Type", "TXT") != "TXT":
                continue
            try:
                strings = parse_value(value)
            except ValueError as exc:
                problems.append(f"{name}: malformed TXT value: {exc}")
                continue
            for string in strings:
                if len(string) > MAX_STRING_OCTETS:
                    problems.append(
                        f"{name}: CharacterStringTooLong: a TXT character-string of {len(string)} octets exceeds "
                        f"{MAX_STRING_OCTETS} (split it into several quoted strings in one value)"
                    )
    records, chars = batch_size(changes)
    if records > MAX_BATCH_RECORDS:
        problems.append(
            f"the change batch holds {records} ResourceRecord elements (UPSERT counted twice); "
            f"Route53 allows {MAX_BATCH_RECORDS}"
        )
    if chars > MAX_BATCH_CHARS:
        problems.append(
            f"the change batch holds {chars} characters of values (UPSERT counted twice); "
            f"Route53 allows {MAX_BATCH_CHARS}"
        )
    return problems


def split_batches(changes: Sequence[dict]) -> list[list[dict]]:
    """`changes` in order, packed into as few batches as Route53's batch limits allow.

    One batch whenever everything fits (the usual case: one atomic change per
    zone). A single change that is too big on its own gets a batch of its own,
    which `validate_batch` then rejects.
    """
    batches: list[list[dict]] = []
    current: list[dict] = []
    records = chars = 0
    for change in changes:
        r, c = batch_size([change])
        if current and (records + r > MAX_BATCH_RECORDS or chars + c > MAX_BATCH_CHARS):
            batches.append(current)
            current, records, chars = [], 0, 0
        current.append(change)
        records += r
        chars += c
    if current:
        batches.append(current)
    return batches


# --- the target --------------------------------------------------------------------------


class Route53Target:
    """DKIM TXT records in a Route53 hosted zone, found by exact label match and public/private flag."""

    backoff_base = 0.5  # seconds before the first retry; doubles each time, full jitter
    backoff_cap = 20.0

    def __init__(
        self,
        name: str,
        profile: str | None = None,
        region: str | None = None,
        hosted_zone_id: str | None = None,
        private_zone: bool = False,
        endpoint_url: str | None = None,
        wait_timeout: float = 300.0,
        poll_interval: float = 2.0,
        max_attempts: int = 8,
    ) -> None:
        key = f"dkimroll:dns.{name}"
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError(f"{key}.max_attempts", f"must be a positive integer, got {max_attempts!r}")
        for field, number in (("wait_timeout", wait_timeout), ("poll_interval", poll_interval)):
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not number > 0:
                raise ConfigError(f"{key}.{field}", f"must be a positive number of seconds, got {number!r}")
        if not isinstance(private_zone, bool):
            raise ConfigError(f"{key}.private_zone", f"must be true or false, got {private_zone!r}")
        zone_id = None
        if hosted_zone_id:
            zone_id = str(hosted_zone_id).strip().rsplit("/", 1)[-1]
            if not re.fullmatch(r"[A-Za-z0-9]+", zone_id):
                raise ConfigError(f"{key}.hosted_zone_id", f"{hosted_zone_id!r} is not a hosted zone id such as Z0123456789ABC")
        self.name = name
        self.profile = profile or None
        self.region = region or None
        self.hosted_zone_id = zone_id
        self.private_zone = private_zone
        self.endpoint_url = endpoint_url or None
        self.wait_timeout = float(wait_timeout)
        self.poll_interval = float(poll_interval)
        self.max_attempts = max_attempts
        self._sleep: Callable[[float], None] = time.sleep
        self._random: Callable[[], float] = random.random

    def __repr__(self) -> str:
        return (
            f"Route53Target(name={self.name!r}, profile={self.profile!r}, region={self.region!r}, "
            f"hosted_zone_id={self.hosted_zone_id!r}, private_zone={self.private_zone!r}, "
            f"endpoint_url={self.endpoint_url!r})"
        )

    @property
    def _kind(self) -> str:
        return "private" if self.private_zone else "public"

    # -- protocol

    def check(self, zone: str, records: Sequence[TxtRecord]) -> list[str]:
        """Names, TTLs and Route53 limits per value; credentials; the hosted zone resolves."""
        try:
            zone_text = _zone_text(zone)
        except ValueError as exc:
            return [str(exc)]
        problems = _record_problems(zone_text, records)
        try:
            client = self._client(zone_text)
            self._zone_id(client, zone_text)
        except DnsTargetError as exc:
            problems.append(exc.detail)
        return problems

    def present(self, zone: str, records: Sequence[TxtRecord]) -> list[TxtRecord]:
        """The records whose joined value Route53 holds at their name (one read per name)."""
        zone_text = self._zone_text(zone)
        if not records:
            return []
        client = self._client(zone_text)
        zone_id = self._zone_id(client, zone_text)
        held: dict[str, set[str]] = {}
        for owner in sorted({_normal(r.name) for r in records}):
            rrset = self._read_rrset(client, zone_text, zone_id, owner)
            held[owner] = {self._joined(zone_text, owner, v) for v in _rrset_values(rrset)}
        return [r for r in records if r.value in held[_normal(r.name)]]

    def apply(self, zone: str, add: Sequence[TxtRecord], remove: Sequence[TxtRecord]) -> bool:
        """Read, merge and write the TXT RRsets of the affected names in one change batch; wait for INSYNC."""
        zone_text = self._zone_text(zone)
        problems = _record_problems(zone_text, [*add, *remove])
        if problems:
            raise DnsTargetError(self.name, zone_text, "; ".join(problems))
        if not add and not remove:
            return False
        client = self._client(zone_text)
        zone_id = self._zone_id(client, zone_text)

        changes: list[dict] = []
        for owner in sorted({_normal(r.name) for r in (*add, *remove)}):
            adds = [r for r in add if _normal(r.name) == owner]
            removes = {r.value for r in remove if _normal(r.name) == owner} - {r.value for r in adds}
            current = self._read_rrset(client, zone_text, zone_id, owner)
            change = self._merge(zone_text, owner, current, adds, removes)
            if change is not None:
                changes.append(change)
        if not changes:
            return False

        problems = [p for change in changes for p in validate_batch([change])]
        if problems:
            raise DnsTargetError(self.name, zone_text, "Route53 would refuse the change: " + "; ".join(problems))
        for batch in split_batches(changes):
            response = self._call(
                zone_text,
                "ChangeResourceRecordSets",
                client.change_resource_record_sets,
                HostedZoneId=zone_id,
                ChangeBatch={"Comment": "dkimroll", "Changes": batch},
            )
            self._wait_insync(client, zone_text, response["ChangeInfo"])
        return True

    # -- merge

    def _merge(
        self, zone: str, owner: str, current: dict | None, adds: list[TxtRecord], removes: set[str]
    ) -> dict | None:
        """The one change for `owner`, or None when the RRset already holds the wanted values."""
        old_values = _rrset_values(current)
        kept = [v for v in old_values if self._joined(zone, owner, v) not in removes]
        have = {self._joined(zone, owner, v) for v in kept}
        new_values = list(kept)
        added_ttls = []
        for record in adds:
            if record.value in have:
                continue
            new_values.append(render_value(record.value))
            have.add(record.value)
            added_ttls.append(record.ttl)
        if new_values == old_values:
            return None
        if not new_values:
            assert current is not None
            # Route53 deletes an RRset only when the request repeats it exactly: values and TTL.
            exact = {k: current[k] for k in ("Name", "Type", "TTL", "ResourceRecords") if k in current}
            return {"Action": "DELETE", "ResourceRecordSet": exact}
        if current is not None and kept:
            ttl = int(current["TTL"])  # values we do not manage stay: keep their TTL
        else:
            ttl = min(added_ttls)
        # UPSERT even for a new RRset. (CREATE would count once in the limits and fail on a
        # concurrent create, but moto refuses to re-CREATE an RRset that was created,
        # deleted and created again, so tests could not cover it.)
        name = current["Name"] if current is not None else owner + "."
        return {
            "Action": "UPSERT",
            "ResourceRecordSet": {
                "Name": name,
                "Type": "TXT",
                "TTL": ttl,
                "ResourceRecords": [{"Value": v} for v in new_values],
            },
        }

    def _joined(self, zone: str, owner: str, value: str) -> str:
        try:
            return join_value(value)
        except ValueError as exc:
            raise DnsTargetError(self.name, zone, f"cannot read a TXT value Route53 holds: {exc}", record=owner) from None

    # -- traffic

    def _client(self, zone: str) -> Any:
        """A fresh Route53 client with botocore's retries off (this module retries itself).

        This is what `boto3.session.Session(profile_name=..., region_name=...).client("route53", ...)`
        builds, made from botocore directly so the parsed service model (a read-only
        data loader, no credentials) is shared between calls: a client then costs
        milliseconds instead of a tenth of a second.
        """
        import botocore.config
        import botocore.exceptions
        import botocore.session

        try:
            session = botocore.session.Session(profile=self.profile)
            session.register_component("data_loader", _shared_loader())
            if session.get_credentials() is None:
                raise DnsTargetError(self.name, zone, NO_CREDENTIALS)
            return session.create_client(
                "route53",
                region_name=self.region or "us-east-1",
                endpoint_url=self.endpoint_url,
                # total_max_attempts, not max_attempts: botocore's max_attempts counts RETRIES,
                # so max_attempts=1 would still retry once behind our own loop.
                config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}),
            )
        except botocore.exceptions.ProfileNotFound:
            raise DnsTargetError(self.name, zone, f"AWS profile {self.profile!r} not found") from None
        except botocore.exceptions.NoCredentialsError:
            raise DnsTargetError(self.name, zone, NO_CREDENTIALS) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise DnsTargetError(self.name, zone, f"cannot set up the AWS client: {exc}") from None

    def _call(self, zone: str, operation: str, method: Callable[..., dict], **kwargs: Any) -> dict:
        """One API call with our retry policy; DnsTargetError with the server's code and message."""
        import botocore.exceptions

        attempt = 0
        while True:
            attempt += 1
            try:
                return method(**kwargs)
            except botocore.exceptions.ClientError as exc:
                error = exc.response.get("Error", {})
                code = str(error.get("Code", "Unknown"))
                message = str(error.get("Message", "")).strip()
                status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                retryable = code in RETRYABLE_CODES or status >= 500
                if retryable and attempt < self.max_attempts:
                    self._backoff(attempt)
                    continue
                detail = f"{operation} failed: {code}" + (f": {message}" if message else "")
                if status:
                    detail += f" (HTTP {status})"
                if retryable:
                    detail += f", still after {attempt} attempts"
                raise DnsTargetError(self.name, zone, detail) from None
            except botocore.exceptions.NoCredentialsError:
                raise DnsTargetError(self.name, zone, NO_CREDENTIALS) from None
            except (
                botocore.exceptions.EndpointConnectionError,
                botocore.exceptions.ConnectionClosedError,
                botocore.exceptions.ReadTimeoutError,
                botocore.exceptions.ConnectTimeoutError,
            ) as exc:
                if attempt < self.max_attempts:
                    self._backoff(attempt)
                    continue
                raise DnsTargetError(
                    self.name, zone, f"{operation} failed: cannot reach Route53 after {attempt} attempts: {exc}"
                ) from None
            except botocore.exceptions.BotoCoreError as exc:
                raise DnsTargetError(self.name, zone, f"{operation} failed: {exc}") from None

    def _backoff(self, attempt: int) -> None:
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1))
        self._sleep(ceiling * (0.5 + 0.5 * self._random()))  # jittered, never zero

    def _wait_insync(self, client: Any, zone: str, info: dict) -> None:
        change_id = str(info["Id"])
        status = info.get("Status")
        deadline = time.monotonic() + self.wait_timeout
        while status != "INSYNC":
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DnsTargetError(
                    self.name,
                    zone,
                    f"change {change_id} was accepted but is still {status} after {self.wait_timeout:g}s "
                    "(Route53 will finish it; run again to confirm)",
                )
            self._sleep(min(self.poll_interval, remaining))
            status = self._call(zone, "GetChange", client.get_change, Id=change_id)["ChangeInfo"]["Status"]

    def _zone_id(self, client: Any, zone: str) -> str:
        """The hosted zone holding `zone`: the configured id, or the longest exact label-suffix match."""
        origin = dns.name.from_text(zone)
        if self.hosted_zone_id:
            found = self._call(zone, "GetHostedZone", client.get_hosted_zone, Id=self.hosted_zone_id)["HostedZone"]
            hosted = _route53_name(found["Name"])
            if not origin.is_subdomain(hosted):
                raise DnsTargetError(
                    self.name,
                    zone,
                    f"hosted zone {self.hosted_zone_id} is {_name_text(hosted)}, which does not contain {zone}",
                )
            return self.hosted_zone_id
        candidates: list[tuple[dns.name.Name, str]] = []
        marker = None
        while True:
            kwargs = {"Marker": marker} if marker else {}
            page = self._call(zone, "ListHostedZones", client.list_hosted_zones, **kwargs)
            for hz in page.get("HostedZones", []):
                if bool(hz.get("Config", {}).get("PrivateZone", False)) != self.private_zone:
                    continue
                try:
                    hosted = _route53_name(hz["Name"])
                except ValueError:
                    continue
                if origin.is_subdomain(hosted):
                    candidates.append((hosted, _short_id(hz["Id"])))
            if not page.get("IsTruncated") or not page.get("NextMarker"):
                break
            marker = page["NextMarker"]
        if not candidates:
            raise DnsTargetError(self.name, zone, f"hosted zone for {zone} not found ({self._kind})")
        best = max(len(name) for name, _ in candidates)
        winners = sorted({(name, zid) for name, zid in candidates if len(name) == best}, key=lambda c: c[1])
        if len(winners) > 1:
            ids = ", ".join(zid for _, zid in winners)
            raise DnsTargetError(
                self.name,
                zone,
                f"ambiguous: several {self._kind} hosted zones named {_name_text(winners[0][0])}: {ids} "
                "(set hosted_zone_id to pick one)",
            )
        return winners[0][1]

    def _read_rrset(self, client: Any, zone: str, zone_id: str, owner: str) -> dict | None:
        """The simple-routing TXT RRset at `owner`, or None."""
        response = self._call(
            zone,
            "ListResourceRecordSets",
            client.list_resource_record_sets,
            HostedZoneId=zone_id,
            StartRecordName=owner + ".",
            StartRecordType="TXT",
            MaxItems="2",
        )
        wanted = dns.name.from_text(owner)
        found = []
        for rrset in response.get("ResourceRecordSets", []):
            try:
                same = _route53_name(rrset["Name"]) == wanted and rrset.get("Type") == "TXT"
            except ValueError:
                same = False
            if same:
                found.append(rrset)
        for rrset in found:
            if "SetIdentifier" in rrset or "AliasTarget" in rrset or "TrafficPolicyInstanceId" in rrset:
                raise DnsTargetError(
                    self.name,
                    zone,
                    "the TXT records at this name use a routing policy or alias; dkimroll manages simple RRsets only",
                    record=owner,
                )
        return found[0] if found else None

    def _zone_text(self, zone: str) -> str:
        try:
            return _zone_text(zone)
        except ValueError as exc:
            raise DnsTargetError(self.name, str(zone), str(exc)) from None


# --- helpers ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _shared_loader() -> Any:
    """botocore's JSON data loader (service models only), parsed once per process."""
    import botocore.loaders

    return botocore.loaders.create_loader()


def _rrset_values(rrset: dict | None) -> list[str]:
    if rrset is None:
        return []
    return [str(rr["Value"]) for rr in rrset.get("ResourceRecords") or []]


def _short_id(zone_id: str) -> str:
    return str(zone_id).rsplit("/", 1)[-1]


def _route53_name(text: str) -> dns.name.Name:
    """A name as Route53 returns it (octal `\\ooo` escapes, trailing dot) as a dnspython Name."""

    def decimal(match: re.Match) -> str:
        return "\\%03d" % int(match.group(1), 8)

    try:
        return dns.name.from_text(re.sub(r"\\([0-7]{3})", decimal, text))
    except dns.exception.DNSException as exc:
        raise ValueError(f"unreadable name {text!r}: {exc}") from None


def _name_text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _normal(name: str) -> str:
    return _name_text(dns.name.from_text(name))


def _zone_text(zone: str) -> str:
    try:
        origin = dns.name.from_text(zone)
    except dns.exception.DNSException as exc:
        raise ValueError(f"zone {zone!r} is not a valid DNS name: {exc}") from None
    if origin == dns.name.root:
        raise ValueError("the root zone cannot hold DKIM records")
    return _name_text(origin)


def _record_problems(zone: str, records: Sequence[TxtRecord]) -> list[str]:
    problems = record_problems(zone, records)
    for record in records:
        value = render_value(record.value)
        change = {
            "Action": "CREATE",
            "ResourceRecordSet": {"Name": record.name, "Type": "TXT", "ResourceRecords": [{"Value": value}]},
        }
        problems.extend(validate_batch([change]))
    return problems
