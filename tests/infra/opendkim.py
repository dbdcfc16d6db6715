"""Sign messages with the real OpenDKIM milter, driven by ``miltertest``.

Usage::

    from tests.infra.opendkim import OpenDkimSigner

    with OpenDkimSigner(tmp_path, key_table, signing_table) as signer:
        msg = signer.sign("User <user@example.test>", "rcpt@example.net",
                          "hello", "body text\\n")
    # ``msg`` is the full RFC 5322 message (CRLF) with OpenDKIM's
    # DKIM-Signature header(s) prepended -- feed it to dkimverify.verify().

The KeyTable is an ordinary ``file:`` table (``label domain:selector:/key.pem``)
and the SigningTable a ``refile:`` table (``*@example.test label``); both are
produced by the code under test or the test itself.

RequireSafeKeys: OpenDKIM walks every directory from ``/`` down to each key
file and, by default, refuses keys below a world-writable directory -- which
``/tmp`` (home of pytest's ``tmp_path``) always is.  With
``require_safe_keys=None`` (default) the harness keeps ``RequireSafeKeys yes``
unless the *only* objection is a world-writable sticky ancestor; key files
that are themselves group/other accessible keep the check on, so OpenDKIM
refuses them exactly as in production.  ``signer.safe_keys_note`` says why.
Put the keys in a 0700 directory with 0600 files.

Signing failures raise :class:`OpenDkimError` with miltertest's output, the
filter's reply, and a key-file report.  OpenDKIM logs per-message reasons
(e.g. "key data is not secure") only via syslog, which is absent in this
container, so ``log_text()`` holds just the daemon's stdout/stderr (startup
and configuration errors).
"""

from __future__ import annotations

import email.utils
import os
import shutil
import socket
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Optional, Sequence

from .ports import LOOPBACK, free_port
from .wait import ManagedProcess, wait_until

OPENDKIM = shutil.which("opendkim") or "/usr/sbin/opendkim"
MILTERTEST = shutil.which("miltertest") or "/usr/bin/miltertest"

SIGNATURE_ALGORITHMS = ("rsa-sha256", "ed25519-sha256", "rsa-sha1")
DEFAULT_DATE = "Thu, 01 Jan 2026 00:00:00 +0000"

_SIG_PREFIX = "DKIMROLL-SIG "
_REPLY_PREFIX = "DKIMROLL-REPLY "
_INSERTED_PREFIX = "DKIMROLL-INSERTED "
_ERROR_PREFIX = "DKIMROLL-ERROR "


class OpenDkimError(RuntimeError):
    pass


def lua_string(value: "str | bytes") -> str:
    """Quote arbitrary bytes as a Lua string literal (decimal escapes)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    out = ['"']
    for b in data:
        if 0x20 <= b < 0x7F and b not in (0x22, 0x5C):  # printable, not " or \
            out.append(chr(b))
        else:
            out.append(f"\\{b:03d}")
    out.append('"')
    return "".join(out)


def _crlf(text: "str | bytes") -> bytes:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


class OpenDkimSigner:
    """An ``opendkim -f`` instance in sign mode on a loopback TCP socket."""

    def __init__(
        self,
        workdir: "os.PathLike[str] | str",
        key_table: "os.PathLike[str] | str",
        signing_table: "os.PathLike[str] | str",
        signature_algorithm: str = "rsa-sha256",
        *,
        canonicalization: str = "relaxed/relaxed",
        require_safe_keys: Optional[bool] = None,
        extra_config: Optional[dict[str, str]] = None,
        start_timeout: float = 20.0,
        sign_timeout: float = 20.0,
        transport: str = "unix",
    ) -> None:
        if signature_algorithm not in SIGNATURE_ALGORITHMS:
            raise ValueError(f"unsupported signature_algorithm {signature_algorithm!r}")
        base = Path(workdir)
        base.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix="opendkim-", dir=base))
        os.chmod(self.workdir, 0o700)
        self.key_table = Path(key_table).resolve()
        self.signing_table = Path(signing_table).resolve()
        for p in (self.key_table, self.signing_table):
            if not p.is_file():
                raise FileNotFoundError(p)
        self.signature_algorithm = signature_algorithm
        self.canonicalization = canonicalization
        self.extra_config = dict(extra_config or {})
        # RequireSafeKeys: keep OpenDKIM's default ("yes") unless the *only*
        # objection OpenDKIM would raise is a world-writable sticky ancestor
        # directory such as /tmp (pytest's tmp_path lives there).  The key
        # files themselves must still be owner-only -- that part of the check
        # is never relaxed in auto mode.
        self.key_files = key_files_from_table(self.key_table, base=self.key_table.parent)
        self.require_safe_keys, self.safe_keys_note = self._decide_safe_keys(require_safe_keys)
        self.start_timeout = start_timeout
        self.sign_timeout = sign_timeout
        self.conf_path = self.workdir / "opendkim.conf"
        self.log_path = self.workdir / "opendkim.log"
        if transport not in ("unix", "inet"):
            raise ValueError("transport must be 'unix' or 'inet'")
        # "unix" (default): a socket in a private 0700 directory -- no port
        # races, and nothing but *our* opendkim can be listening there.
        self.transport = transport
        self.address = LOOPBACK
        self.port = 0
        self._short_dir: Optional[Path] = None
        self.socket_path: Optional[Path] = None
        if transport == "unix":
            candidate = self.workdir / "milter.sock"
            if len(str(candidate)) > 100:  # sun_path is 108 bytes
                self._short_dir = Path(tempfile.mkdtemp(prefix="odk-"))
                os.chmod(self._short_dir, 0o700)
                candidate = self._short_dir / "milter.sock"
            self.socket_path = candidate
        self._proc: Optional[ManagedProcess] = None
        self._counter = 0

    # ------------------------------------------------------------ config
    @property
    def socket_spec(self) -> str:
        if self.socket_path is not None:
            return f"local:{self.socket_path}"
        return f"inet:{self.port}@{self.address}"

    def _render_conf(self) -> str:
        opts: dict[str, str] = {
            "Mode": "s",
            "Socket": self.socket_spec,
            "KeyTable": f"file:{self.key_table}",
            "SigningTable": f"refile:{self.signing_table}",
            "Canonicalization": self.canonicalization,
            "SignatureAlgorithm": self.signature_algorithm,
            "InternalHosts": LOOPBACK,
            "RequireSafeKeys": "yes" if self.require_safe_keys else "no",
            "Background": "no",
            "PidFile": str(self.workdir / "opendkim.pid"),
            "TemporaryDirectory": str(self.workdir),
            "UMask": "077",
            "SoftwareHeader": "no",
            "Syslog": "yes",
            "SyslogSuccess": "yes",
            "LogWhy": "yes",
        }
        opts.update(self.extra_config)
        return "".join(f"{k} {v}\n" for k, v in opts.items())

    def _decide_safe_keys(self, requested: Optional[bool]) -> tuple[bool, str]:
        if requested is not None:
            return requested, "explicitly requested"
        ancestor_issues: list[str] = []
        for key in self.key_files:
            file_issues, anc = key_path_issues(key)
            if file_issues:
                # leave OpenDKIM's check on: it must refuse this key, as in prod
                return True, "key file itself is not owner-only: " + "; ".join(file_issues)
            ancestor_issues += anc
        if not ancestor_issues:
            return True, "all key paths are safe"
        if all(issue.endswith("(sticky)") for issue in ancestor_issues):
            return False, ("relaxed only because of world-writable sticky ancestor dirs: "
                           + "; ".join(sorted(set(ancestor_issues))))
        return True, "unsafe ancestor dirs: " + "; ".join(sorted(set(ancestor_issues)))

    # ---------------------------------------------------------- lifecycle
    def log_text(self, tail: Optional[int] = 8000) -> str:
        return self._proc.log_text(tail=tail) if self._proc else ""

    def start(self) -> "OpenDkimSigner":
        if self._proc is not None:
            raise OpenDkimError("opendkim already started")
        last_err: Optional[BaseException] = None
        for _attempt in range(3):  # retry only when the port was stolen
            if self.socket_path is None:
                self.port = free_port()
            else:
                self.socket_path.unlink(missing_ok=True)
            self.conf_path.write_text(self._render_conf())
            os.chmod(self.conf_path, 0o600)
            check = subprocess.run([OPENDKIM, "-n", "-x", str(self.conf_path)],
                                   capture_output=True, text=True, timeout=30)
            if check.returncode != 0:
                raise OpenDkimError(
                    f"opendkim rejected its configuration:\n{check.stdout}{check.stderr}\n"
                    f"--- {self.conf_path} ---\n{self.conf_path.read_text()}"
                )
            self.log_path.write_bytes(b"")
            # cwd = KeyTable's dir so relative ("./x.pem") key paths resolve there
            proc = ManagedProcess([OPENDKIM, "-f", "-x", str(self.conf_path)],
                                  self.log_path, cwd=self.key_table.parent, name="opendkim")
            self._proc = proc
            try:
                proc.start()
                wait_until(self._accepts, timeout=self.start_timeout, interval=0.05,
                           what=f"opendkim to accept on {self.socket_spec}",
                           abort_if=proc.exit_reason,
                           details=lambda: proc.log_text(tail=4000))
                return self
            except BaseException as exc:
                log = proc.log_text().lower()
                proc.stop()
                self._proc = None
                last_err = exc
                # opendkim only says "smfi_opensocket() failed" when the port
                # was taken between free_port() and its bind(): retry
                if self.socket_path is None and isinstance(exc, RuntimeError) and (
                    "smfi_opensocket() failed" in log or "address already in use" in log
                ):
                    continue
                raise
        raise OpenDkimError(f"opendkim could not bind a port after retries: {last_err}")

    def _accepts(self) -> bool:
        try:
            if self.socket_path is not None:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(0.5)
                    s.connect(str(self.socket_path))
                return True
            with socket.create_connection((self.address, self.port), timeout=0.5):
                pass
        except OSError:
            return False
        # inet: a foreign listener could hold the port; make sure ours is alive
        return self._proc is not None and self._proc.is_running()

    def stop(self) -> None:
        proc = self._proc
        try:
            if proc is not None:
                proc.stop(wake=self._poke)
        finally:
            self._proc = None
            if self._short_dir is not None:
                shutil.rmtree(self._short_dir, ignore_errors=True)

    def _poke(self) -> None:
        """Connect once: wakes libmilter's accept loop so it sees SIGTERM."""
        try:
            if self.socket_path is not None:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(0.5)
                    s.connect(str(self.socket_path))
            else:
                socket.create_connection((self.address, self.port), timeout=0.5).close()
        except OSError:
            pass

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.is_running()

    def __enter__(self) -> "OpenDkimSigner":
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------- signing
    def sign(self, mail_from_header: str, rcpt: str, subject: str, body: str, *,
             date: str = DEFAULT_DATE,
             extra_headers: Sequence[tuple[str, str]] = ()) -> bytes:
        """Submit a message with ``From: <mail_from_header>`` through OpenDKIM.

        Returns the signed message (DKIM-Signature header(s) first, then the
        exact headers and body that were submitted, CRLF line endings).
        """
        self._counter += 1
        envelope_from = email.utils.parseaddr(mail_from_header)[1] or mail_from_header
        rcpt_addr = email.utils.parseaddr(rcpt)[1] or rcpt
        from_domain = envelope_from.rpartition("@")[2] or "localhost"
        headers: list[tuple[str, str]] = [
            ("From", mail_from_header),
            ("To", rcpt),
            ("Subject", subject),
            ("Date", date),
            ("Message-ID", f"<dkimroll-test-{self._counter}@{from_domain}>"),
            *extra_headers,
        ]
        return self.sign_raw(envelope_from, [rcpt_addr], headers, body)

    def sign_raw(self, envelope_from: str, recipients: Iterable[str],
                 headers: Sequence[tuple[str, str]], body: "str | bytes") -> bytes:
        """Lower-level :meth:`sign`: arbitrary header list and envelope."""
        if not self.is_running():
            raise OpenDkimError("opendkim is not running" +
                                (f"\n--- log ---\n{self.log_text()}" if self._proc else ""))
        body_bytes = _crlf(body)
        if body_bytes and not body_bytes.endswith(b"\r\n"):
            body_bytes += b"\r\n"
        rcpts = list(recipients) or ["postmaster@localhost"]
        qid = f"DKR{self._counter:06d}"
        script = self._lua(envelope_from, rcpts, headers, body_bytes, qid)
        script_path = self.workdir / f"sign-{self._counter}.lua"
        script_path.write_text(script)
        try:
            res = subprocess.run([MILTERTEST, "-s", str(script_path)], capture_output=True,
                                 timeout=self.sign_timeout + 10, cwd=self.workdir)
        except subprocess.TimeoutExpired as exc:
            raise OpenDkimError(f"miltertest timed out\n--- opendkim log ---\n"
                                f"{self.log_text()}") from exc
        stdout = res.stdout.decode("utf-8", "replace")
        stderr = res.stderr.decode("utf-8", "replace")
        sigs: list[bytes] = []
        reply = inserted = lua_error = None
        for line in stdout.splitlines():
            if line.startswith(_SIG_PREFIX):
                sigs.append(bytes.fromhex(line[len(_SIG_PREFIX):].strip()))
            elif line.startswith(_REPLY_PREFIX):
                reply = line[len(_REPLY_PREFIX):].strip()
            elif line.startswith(_INSERTED_PREFIX):
                inserted = line[len(_INSERTED_PREFIX):].strip()
            elif line.startswith(_ERROR_PREFIX):
                lua_error = line[len(_ERROR_PREFIX):].strip()
        if res.returncode != 0 or not sigs:
            reply_txt = f"{reply!r} ({chr(int(reply))!r})" if reply and reply.isdigit() else repr(reply)
            raise OpenDkimError(
                "OpenDKIM did not sign the message (no DKIM-Signature inserted)"
                f" (miltertest rc={res.returncode}, eom reply={reply_txt}, inserted={inserted})\n"
                f"lua error: {lua_error}\n"
                f"--- miltertest stdout ---\n{stdout}\n--- miltertest stderr ---\n{stderr}\n"
                f"--- opendkim log ---\n{self.log_text()}\n"
                f"RequireSafeKeys={'yes' if self.require_safe_keys else 'no'} ({self.safe_keys_note})\n"
                f"key files: {self._key_report()}\n"
                f"(a tempfail 't' at eoh usually means the key could not be loaded: missing,"
                f" unsafe permissions, or not a PEM private key; OpenDKIM only logs the"
                f" reason to syslog)\n"
                f"--- KeyTable {self.key_table} ---\n{_safe_read(self.key_table)}\n"
                f"--- SigningTable {self.signing_table} ---\n{_safe_read(self.signing_table)}"
            )
        out = bytearray()
        for value in sigs:
            out += b"DKIM-Signature: " + _crlf(value.lstrip(b" ")) + b"\r\n"
        for name, value in headers:
            out += _crlf(f"{name}: {value}") + b"\r\n"
        out += b"\r\n" + body_bytes
        return bytes(out)

    def _lua(self, envelope_from: str, rcpts: Sequence[str],
             headers: Sequence[tuple[str, str]], body: bytes, qid: str) -> str:
        L = lua_string
        lines = [
            "local function hex(s)",
            "  return (string.gsub(s, '.', function(c) return string.format('%02x', string.byte(c)) end))",
            "end",
            "local function ok(what, err)",
            "  if err ~= nil then error(what .. ': ' .. tostring(err)) end",
            "end",
            "local function cont(what, conn)",
            "  local r = mt.getreply(conn)",
            "  if r ~= SMFIR_CONTINUE then",
            "    error(what .. ': filter replied ' .. string.format('%q (%d)', string.char(r), r)"
            " .. ' instead of continue')",
            "  end",
            "end",
            "local function main()",
            f"mt.set_timeout({int(self.sign_timeout)})",
            f"local conn = mt.connect({L(self.socket_spec)}, 20, 0.1)",
            "if conn == nil then error('mt.connect failed') end",
            f"ok('conninfo', mt.conninfo(conn, 'localhost', {L(LOOPBACK)}))",
            "cont('conninfo', conn)",
            f"ok('macro', mt.macro(conn, SMFIC_MAIL, 'i', {L(qid)}))",
            f"ok('mailfrom', mt.mailfrom(conn, {L('<' + envelope_from + '>')}))",
            "cont('mailfrom', conn)",
        ]
        for r in rcpts:
            lines.append(f"ok('rcptto', mt.rcptto(conn, {L('<' + r + '>')}))")
            lines.append("cont('rcptto', conn)")
        for name, value in headers:
            v = value.replace("\r\n", "\n")  # milter protocol carries LF-folded values
            lines.append(f"ok('header', mt.header(conn, {L(name)}, {L(v)}))")
            lines.append(f"cont({L('header ' + name)}, conn)")
        lines.append("ok('eoh', mt.eoh(conn))")
        lines.append("cont('eoh', conn)")
        chunk = 32768
        for i in range(0, len(body), chunk):
            lines.append(f"ok('body', mt.bodystring(conn, {L(body[i:i + chunk])}))")
            lines.append("cont('body', conn)")
        lines += [
            "ok('eom', mt.eom(conn))",
            f"mt.echo({L(_REPLY_PREFIX)} .. string.format('%d', mt.getreply(conn)))",
            f"mt.echo({L(_INSERTED_PREFIX)} .. tostring(mt.eom_check(conn, MT_HDRINSERT, 'DKIM-Signature')"
            " or mt.eom_check(conn, MT_HDRADD, 'DKIM-Signature')))",
            "local n = 0",
            "while true do",
            "  local v = mt.getheader(conn, 'DKIM-Signature', n)",
            "  if v == nil or type(v) ~= 'string' then break end",
            f"  mt.echo({L(_SIG_PREFIX)} .. hex(v))",
            "  n = n + 1",
            "end",
            "mt.disconnect(conn)",
            "end",
            # miltertest swallows Lua errors silently: report them ourselves.
            "local okay, err = pcall(main)",
            "if not okay then",
            f"  mt.echo({L(_ERROR_PREFIX)} .. string.gsub(tostring(err), '\\n', ' | '))",
            "  os.exit(3)",
            "end",
        ]
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<OpenDkimSigner {self.socket_spec} {self.signature_algorithm} {state}>"


    def _key_report(self) -> str:
        parts = []
        for key in self.key_files:
            try:
                st = key.stat()
                desc = f"mode {stat.S_IMODE(st.st_mode):04o} uid {st.st_uid}"
            except OSError as exc:
                desc = f"unreadable: {exc}"
            parts.append(f"{key} ({desc})")
        return ", ".join(parts) or "<none found in KeyTable>"


def key_files_from_table(key_table: Path, base: Optional[Path] = None) -> list[Path]:
    """Key file paths referenced by a ``file:`` KeyTable (inline keys skipped)."""
    base = base or key_table.parent
    out: list[Path] = []
    for raw in key_table.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split(None, 1)
        if len(fields) != 2:
            continue
        parts = fields[1].split(":", 2)
        if len(parts) != 3:
            continue
        keydata = parts[2].strip()
        if keydata.startswith("/"):
            out.append(Path(keydata))
        elif keydata.startswith(("./", "../")):
            out.append((base / keydata).resolve())
    return out


def key_path_issues(path: Path) -> tuple[list[str], list[str]]:
    """Mirror OpenDKIM's ``dkimf_securefile`` walk (simplified).

    Returns ``(file_issues, ancestor_issues)``; ancestor issues caused only
    by a world-writable *sticky* directory end in ``"(sticky)"``.
    """
    me = os.geteuid()
    file_issues: list[str] = []
    ancestors: list[str] = []
    try:
        real = Path(os.path.realpath(path))
        st = real.stat()
    except OSError as exc:
        return [f"{path}: {exc}"], []
    if st.st_uid not in (me, 0):
        file_issues.append(f"{real} owned by uid {st.st_uid}")
    if st.st_mode & (stat.S_IRGRP | stat.S_IWGRP | stat.S_IROTH | stat.S_IWOTH):
        file_issues.append(f"{real} mode {stat.S_IMODE(st.st_mode):04o} is group/other accessible")
    for d in [Path("/"), *reversed(real.parents[:-1])]:
        try:
            dst = d.stat()
        except OSError as exc:
            ancestors.append(f"{d}: {exc}")
            break
        mode = dst.st_mode
        if mode & (stat.S_IWOTH | stat.S_IWGRP):
            sticky = " (sticky)" if mode & stat.S_ISVTX and mode & stat.S_IWOTH else ""
            ancestors.append(f"{d} mode {stat.S_IMODE(mode):04o} is group/other writable{sticky}")
        elif mode & stat.S_IWUSR and dst.st_uid not in (me, 0):
            ancestors.append(f"{d} writable by uid {dst.st_uid}")
        if not mode & (stat.S_IXGRP | stat.S_IXOTH):
            break  # nobody else can traverse below here: OpenDKIM stops too
    return file_issues, ancestors


def _safe_read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        return f"<unreadable: {exc}>"


__all__ = ["OpenDkimSigner", "OpenDkimError", "lua_string", "key_files_from_table", "key_path_issues"]
