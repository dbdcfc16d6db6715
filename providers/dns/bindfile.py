"""A DNS target that edits BIND-style zone files in a directory.

The operator's file is theirs: comments, formatting, `$TTL`/`$ORIGIN` and every
record outside dkimroll's marked block are kept byte for byte. dkimroll's TXT
records live in one block, appended at the end of the file when first needed:

    ; BEGIN dkimroll managed records (do not edit: rewritten by dkimroll)
    sel._domainkey.example.com. 3600 IN TXT ( "v=DKIM1; k=rsa; p=..."
    	"..." )
    ; END dkimroll managed records

A change rewrites only that block and the SOA serial (edited in place, as
text), under a per-file lock. Both the old and the new text are parsed by
dnspython, and the new text is checked by `named-checkzone` (when installed)
on the very temporary file that is then renamed into place. The reload
command runs only when the file changed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import dns.exception
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.zone

from keys import clock, chunking, render
from providers.atomic import atomic_write, file_lock
from providers.dns.base import MAX_TTL, TxtRecord, in_zone, record_problems
from providers.errors import ConfigError, DnsTargetError

__all__ = [
    "BEGIN_MARKER",
    "END_MARKER",
    "BindFileTarget",
    "ManagedBlock",
    "bump_serial",
    "find_block",
    "find_soa_serial",
    "render_block",
    "replace_block",
]

BEGIN_MARKER = "; BEGIN dkimroll managed records (do not edit: rewritten by dkimroll)"
END_MARKER = "; END dkimroll managed records"
_BEGIN_RE = re.compile(r"^[ \t]*; BEGIN dkimroll managed records\b[^\n]*(?:\n|\Z)", re.M)
_END_RE = re.compile(r"^[ \t]*; END dkimroll managed records\b[^\n]*(?:\n|\Z)", re.M)

MAX_SERIAL = 2**32 - 1
DEFAULT_CHECK_COMMAND = "named-checkzone"
COMMAND_TIMEOUT = 120  # seconds, for the check and reload commands

_TTL_TOKEN = re.compile(r"^(?:\d+|(?:\d+[wdhms])+)$", re.I)
_CLASS_TOKEN = re.compile(r"^(?:IN|CH|CHAOS|HS|HESIOD|NONE|ANY|CLASS\d+)$", re.I)
_SAFE_ZONE = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?)*$")

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"  # any octets in the operator's file survive a read/write unchanged


# --- zone-file text: a small lexer, enough to find entries and the SOA -------


@dataclass(frozen=True)
class _Token:
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class _Entry:
    """One logical line (parentheses joined), with its data tokens (no parens, no comments)."""

    start: int  # offset of the physical line the entry begins on
    end: int  # offset just past the entry's last token or closing parenthesis
    indented: bool  # begins with blank space: no owner field, the previous owner applies
    tokens: tuple[_Token, ...]


def _entries(text: str) -> list[_Entry]:
    """Split zone-file text into entries, honouring `;` comments, quotes, escapes and `( )`."""
    entries: list[_Entry] = []
    tokens: list[_Token] = []
    depth = 0
    line_start = 0
    last_end = 0
    i, n = 0, len(text)

    def close(at: int) -> None:
        nonlocal tokens
        if tokens:
            entries.append(_Entry(line_start, last_end, text[line_start] in " \t", tuple(tokens)))
        tokens = []

    while i < n:
        c = text[i]
        if c == "\n":
            if depth == 0:
                close(i)
                line_start = i + 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == ";":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c == "(":
            depth += 1
            i += 1
            last_end = i
        elif c == ")":
            depth = max(0, depth - 1)
            i += 1
            last_end = i
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            tokens.append(_Token(text[i:j], i, j))
            last_end = i = j
        else:
            j = i
            while j < n and text[j] not in ' \t\r\n;()"':
                j += 2 if text[j] == "\\" else 1
            j = min(j, n)
            tokens.append(_Token(text[i:j], i, j))
            last_end = i = j
    close(n)
    return entries


def find_soa_serial(text: str) -> tuple[int, int] | None:
    """(start, end) offsets of the first SOA record's serial number in `text`, or None.

    The owner may be `@` or explicit, or absent on an indented line; TTL and
    class may come in either order; the SOA fields may span lines inside
    parentheses with comments between them. The serial is the third data token
    after the type (mname, rname, serial).
    """
    for entry in _entries(text):
        toks = entry.tokens
        if not entry.indented and toks[0].text.startswith("$"):
            continue  # $TTL, $ORIGIN, $INCLUDE, $GENERATE
        i = 0 if entry.indented else 1
        for _ in range(2):
            if i < len(toks) and (_TTL_TOKEN.match(toks[i].text) or _CLASS_TOKEN.match(toks[i].text)):
                i += 1
        if i < len(toks) and toks[i].text.upper() == "SOA":
            if i + 3 >= len(toks):
                return None
            serial = toks[i + 3]
            return serial.start, serial.end
    return None


def _serial_span(text: str, expected: int) -> tuple[int, int] | None:
    """The SOA serial's offsets, only when the text there is the serial dnspython read."""
    span = find_soa_serial(text)
    if span is None:
        return None
    token = text[span[0] : span[1]]
    if not re.fullmatch(r"[0-9]+", token) or int(token) != expected:
        return None
    return span


def bump_serial(old: int, now: datetime) -> int:
    """max(old + 1, YYYYMMDD00) for `now` in UTC; wraps (RFC 1982) only past 2**32 - 1."""
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc)
    base = int(now.strftime("%Y%m%d")) * 100
    new = max(old + 1, base)
    if new > MAX_SERIAL:
        new = (old + 1) % (MAX_SERIAL + 1)
    return new


# --- the managed block ----------------------------------------------------------


@dataclass(frozen=True)
class ManagedBlock:
    start: int  # offset of the BEGIN line
    end: int  # offset just past the END line (and its newline)
    inner: str  # the text between the markers
    records: dict[tuple[str, str], int]  # (name, value) -> ttl


def find_block(text: str, zone: str) -> ManagedBlock | None:
    """The managed block of `text`, parsed; None when there is none. ValueError when damaged."""
    begins = list(_BEGIN_RE.finditer(text))
    ends = list(_END_RE.finditer(text))
    if not begins and not ends:
        return None
    if len(begins) != 1 or len(ends) != 1 or ends[0].start() < begins[0].end():
        raise ValueError(
            "the dkimroll managed block markers are damaged (need exactly one BEGIN line followed by one END line)"
        )
    inner = text[begins[0].end() : ends[0].start()]
    return ManagedBlock(begins[0].start(), ends[0].end(), inner, parse_records(inner, zone))


def parse_records(text: str, zone: str) -> dict[tuple[str, str], int]:
    """TXT records of dkimroll-rendered text (one RR per entry, explicit owner) as (name, value) -> ttl."""
    origin = dns.name.from_text(zone)
    records: dict[tuple[str, str], int] = {}
    for entry in _entries(text):
        if entry.indented or entry.tokens[0].text.startswith("$"):
            raise ValueError(f"unexpected line in the dkimroll managed block: {text[entry.start:entry.end]!r}")
        piece = text[entry.start : entry.end]
        try:
            parsed = dns.zone.from_text(piece, origin=origin, relativize=False, check_origin=False)
        except (dns.exception.DNSException, UnicodeError) as exc:
            raise ValueError(f"cannot parse the dkimroll managed block entry {piece!r}: {exc}") from None
        for name, node in parsed.items():
            for rdataset in node.rdatasets:
                if rdataset.rdtype != dns.rdatatype.TXT:
                    raise ValueError(
                        f"the dkimroll managed block holds a {dns.rdatatype.to_text(rdataset.rdtype)} record"
                    )
                for rdata in rdataset:
                    records[(_name_text(name), chunking.join(rdata.strings))] = rdataset.ttl
    return records


def render_block(records: dict[tuple[str, str], int]) -> str:
    """The whole block, markers included, records sorted by (name, value); '' when empty."""
    if not records:
        return ""
    lines = [BEGIN_MARKER]
    lines.extend(render.zone_file(name, records[(name, value)], value) for name, value in sorted(records))
    lines.append(END_MARKER)
    return "\n".join(lines) + "\n"


def replace_block(text: str, block: ManagedBlock | None, new_block: str) -> str:
    """`text` with its block replaced by `new_block` (appended when absent, dropped when empty).

    An appended block is preceded by one blank line; dropping a block at the
    end of the file removes that blank line again, so add-then-remove gives
    back the original bytes.
    """
    if block is None:
        if not new_block:
            return text
        if text and not text.endswith("\n"):
            text += "\n"
        return text + ("\n" if text else "") + new_block
    head, tail = text[: block.start], text[block.end :]
    if not new_block and not tail and head.endswith("\n\n"):
        head = head[:-1]
    return head + new_block + tail


def _name_text(name: dns.name.Name) -> str:
    return name.to_text(omit_final_dot=True).lower()


def _normal_name(name: str) -> str:
    return _name_text(dns.name.from_text(name))


# --- the target -------------------------------------------------------------------


class BindFileTarget:
    """DKIM TXT records in BIND zone files `<zone_dir>/<file_pattern>`.

    `check_command` is run as `<check_command> <zone> <new-file>` before the
    new file replaces the old one; the default `named-checkzone` is skipped
    when it is not installed, a command configured otherwise must exist.
    `reload` is split with shlex (no shell), `{zone}` and `{file}` replaced in
    each argument, and run after a change.
    """

    def __init__(
        self,
        name: str,
        zone_dir: str | Path,
        file_pattern: str = "{zone}.zone",
        create: bool = False,
        reload: str | None = None,
        check_command: str | None = DEFAULT_CHECK_COMMAND,
        default_ttl: int = 3600,
        create_nameserver: str | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        if "{zone}" not in file_pattern:
            raise ConfigError(f"dkimroll:dns.{name}.file_pattern", "must contain {zone}")
        if isinstance(default_ttl, bool) or not isinstance(default_ttl, int) or not 0 <= default_ttl <= MAX_TTL:
            raise ConfigError(f"dkimroll:dns.{name}.default_ttl", f"must be an integer from 0 to {MAX_TTL}")
        if reload is not None and not shlex.split(reload):
            raise ConfigError(f"dkimroll:dns.{name}.reload", "is empty")
        if create_nameserver is not None:
            try:
                create_nameserver = _normal_name(create_nameserver)
            except dns.exception.DNSException as exc:
                raise ConfigError(f"dkimroll:dns.{name}.create_nameserver", f"not a DNS name: {exc}") from None
        if check_command is not None and not shlex.split(check_command):
            check_command = None
        self.name = name
        self.zone_dir = Path(zone_dir)
        self.file_pattern = file_pattern
        self.create = create
        self.reload = reload
        self.check_command = check_command
        self.default_ttl = default_ttl
        self.create_nameserver = create_nameserver
        self._now = now or clock.now

    def __repr__(self) -> str:
        return f"BindFileTarget(name={self.name!r}, zone_dir={str(self.zone_dir)!r})"

    # -- paths and names

    def zone_path(self, zone: str) -> Path:
        """The zone's file: `zone_dir / file_pattern` with `{zone}` the lower-case name, no final dot."""
        return self.zone_dir / self.file_pattern.replace("{zone}", self._zone_text(zone))

    def _zone_text(self, zone: str) -> str:
        try:
            text = _normal_name(zone)
        except dns.exception.DNSException as exc:
            raise ConfigError("zone", f"{zone!r} is not a valid DNS name: {exc}") from None
        if not _SAFE_ZONE.match(text):
            raise ConfigError("zone", f"{zone!r} cannot name a zone file (letters, digits, '-', '_' labels only)")
        return text

    def _real_path(self, zone: str) -> Path:
        """The file to lock and replace: a symlinked zone file is edited where it really lives."""
        path = self.zone_path(zone)
        return Path(os.path.realpath(path)) if path.is_symlink() else path

    # -- protocol

    def check(self, zone: str, records: Sequence[TxtRecord]) -> list[str]:
        """Problems that would make `apply` fail; reads only, never writes (not even a lock file)."""
        try:
            zone_text = self._zone_text(zone)
        except ConfigError as exc:
            return [str(exc)]
        problems = self._record_problems(zone_text, records)
        command_problem = self._check_command_problem()
        if command_problem:
            problems.append(command_problem)
        path = self._real_path(zone_text)
        if not path.exists():
            if not self.create:
                problems.append(f"zone file {path} not found (set create: true to let dkimroll create it)")
            else:
                existing = next(p for p in (path.parent, *path.parent.parents) if p.exists())
                if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
                    problems.append(f"zone directory {path.parent} cannot be created or written ({existing})")
            return problems
        try:
            text = self._read(path)
            serial = self._parse(text, zone_text, path).get_soa().serial
            find_block(text, zone_text)
            if _serial_span(text, serial) is None:
                raise ValueError(f"cannot locate the SOA serial {serial} in the file text to update it")
        except DnsTargetError as exc:
            problems.append(exc.detail)
        except (ValueError, OSError) as exc:
            problems.append(f"{path}: {exc}")
        else:
            if not os.access(path.parent, os.W_OK | os.X_OK):
                problems.append(f"zone directory {path.parent} is not writable (a new file is renamed into it)")
        return problems

    def present(self, zone: str, records: Sequence[TxtRecord]) -> list[TxtRecord]:
        """The records whose (name, joined value) is anywhere in the zone file, in or out of the block."""
        zone_text = self._zone_text(zone)
        path = self._real_path(zone_text)
        if not path.exists():
            return []
        text = self._read_or_raise(path, zone_text)
        parsed = self._parse(text, zone_text, path)
        held: set[tuple[str, str]] = set()
        for name, node in parsed.items():
            rdataset = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.TXT)
            if rdataset is None:
                continue
            for rdata in rdataset:
                held.add((_name_text(name), chunking.join(rdata.strings)))
        return [record for record in records if (_normal_name(record.name), record.value) in held]

    def apply(self, zone: str, add: Sequence[TxtRecord], remove: Sequence[TxtRecord]) -> bool:
        """Rewrite the managed block to (block - remove) + add; True if the file changed.

        Values listed in `remove` that are not in the block (hand-made records)
        are left alone. Nothing is written, and no reload runs, when the
        resulting text equals the current one. A missing file is created only
        with `create: true` and something to add.
        """
        zone_text = self._zone_text(zone)
        problems = self._record_problems(zone_text, add)
        command_problem = self._check_command_problem()
        if command_problem:
            problems.append(command_problem)
        if problems:
            raise DnsTargetError(self.name, zone_text, "; ".join(problems))
        path = self._real_path(zone_text)
        if not path.parent.is_dir():
            if not (self.create and add):
                raise DnsTargetError(self.name, zone_text, f"zone directory {path.parent} does not exist")
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)

        try:
            with file_lock(path):
                changed = self._apply_locked(zone_text, path, add, remove)
        except OSError as exc:
            raise DnsTargetError(self.name, zone_text, f"{path}: {exc}") from None
        if changed and self.reload:
            self._run_reload(zone_text, path)
        return changed

    # -- the locked read-modify-write

    def _apply_locked(
        self, zone: str, path: Path, add: Sequence[TxtRecord], remove: Sequence[TxtRecord]
    ) -> bool:
        mode, uid, gid = 0o644, None, None
        if path.exists():
            old_text = self._read_or_raise(path, zone)
            old_serial = self._parse(old_text, zone, path).get_soa().serial
            info = path.stat()
            mode = stat.S_IMODE(info.st_mode)
            if os.geteuid() == 0:
                uid, gid = info.st_uid, info.st_gid
            creating = False
        elif not self.create:
            raise DnsTargetError(
                self.name, zone, f"zone file {path} not found (set create: true to let dkimroll create it)"
            )
        elif not add:
            return False  # nothing to publish: do not create an empty zone
        else:
            old_text = self._initial_text(zone)
            old_serial = 0
            creating = True

        try:
            block = find_block(old_text, zone)
        except ValueError as exc:
            raise DnsTargetError(self.name, zone, f"{path}: {exc}") from None
        records = dict(block.records) if block else {}
        for record in remove:
            records.pop((_normal_name(record.name), record.value), None)
        for record in add:
            records[(_normal_name(record.name), record.value)] = record.ttl
        new_text = replace_block(old_text, block, render_block(records))
        if new_text == old_text and not creating:
            return False

        span = _serial_span(new_text, old_serial)
        if span is None:
            raise DnsTargetError(
                self.name, zone, f"{path}: cannot locate the SOA serial {old_serial} in the file text to update it"
            )
        serial = bump_serial(old_serial, self._now())
        new_text = new_text[: span[0]] + str(serial) + new_text[span[1] :]

        try:
            new_serial = self._parse(new_text, zone, path).get_soa().serial
        except DnsTargetError as exc:
            raise DnsTargetError(self.name, zone, f"the edited zone would not parse, nothing written: {exc.detail}")
        if new_serial != serial:
            raise DnsTargetError(self.name, zone, f"{path}: editing the SOA serial failed, nothing written")

        atomic_write(
            path,
            new_text.encode(_ENCODING, _ERRORS),
            mode=mode,
            owner=uid,
            group=gid,
            validate=lambda tmp: self._run_check(zone, path, tmp),
        )
        return True

    # -- helpers

    def _record_problems(self, zone: str, records: Sequence[TxtRecord]) -> list[str]:
        return record_problems(zone, records)

    def _check_argv(self) -> list[str] | None:
        """The check command's argv prefix, or None when no check runs."""
        if not self.check_command:
            return None
        argv = shlex.split(self.check_command)
        if shutil.which(argv[0]) is None:
            return None
        return argv

    def _check_command_problem(self) -> str | None:
        if not self.check_command or self.check_command == DEFAULT_CHECK_COMMAND:
            return None
        argv = shlex.split(self.check_command)
        if shutil.which(argv[0]) is None:
            return f"check command {argv[0]!r} not found"
        return None

    def _run_check(self, zone: str, path: Path, candidate: Path) -> None:
        argv = self._check_argv()
        if argv is None:
            return
        try:
            done = subprocess.run(
                [*argv, zone, str(candidate)],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=COMMAND_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DnsTargetError(self.name, zone, f"check command {argv[0]} failed to run: {exc}") from None
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()
            raise DnsTargetError(
                self.name,
                zone,
                f"{argv[0]} rejected the new text of {path} (exit {done.returncode}), nothing written: {output}",
            )

    def _run_reload(self, zone: str, path: Path) -> None:
        argv = [
            arg.replace("{zone}", zone).replace("{file}", str(path)) for arg in shlex.split(self.reload or "")
        ]
        try:
            done = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=COMMAND_TIMEOUT,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise DnsTargetError(
                self.name, zone, f"{path} was written, but the reload command failed to run: {exc}"
            ) from None
        if done.returncode != 0:
            raise DnsTargetError(
                self.name,
                zone,
                f"{path} was written, but the reload command {argv[0]} exited {done.returncode}: "
                f"{done.stderr.strip() or done.stdout.strip()}",
            )

    @staticmethod
    def _read(path: Path) -> str:
        return path.read_bytes().decode(_ENCODING, _ERRORS)

    def _read_or_raise(self, path: Path, zone: str) -> str:
        try:
            return self._read(path)
        except OSError as exc:
            raise DnsTargetError(self.name, zone, f"cannot read {path}: {exc}") from None

    def _parse(self, text: str, zone: str, path: Path) -> dns.zone.Zone:
        try:
            return dns.zone.from_text(text, origin=zone, relativize=False, check_origin=True)
        except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
            raise DnsTargetError(self.name, zone, f"zone file {path} does not parse: {exc}") from None

    def _initial_text(self, zone: str) -> str:
        """A minimal zone that loads: $TTL, SOA (serial 0, bumped on write), NS, and glue if in-zone."""
        ns = _normal_name(self.create_nameserver) if self.create_nameserver else f"ns1.{zone}"
        lines = [
            f"; zone {zone}, created by dkimroll; edit freely outside the dkimroll block",
            f"$ORIGIN {zone}.",
            f"$TTL {self.default_ttl}",
            f"@\tIN\tSOA\t{ns}. hostmaster.{zone}. ( 0 3600 900 1209600 300 )",
            f"@\tIN\tNS\t{ns}.",
        ]
        if in_zone(ns, zone):
            lines.append(f"{ns}.\tIN\tA\t127.0.0.1")
        return "\n".join(lines) + "\n"
