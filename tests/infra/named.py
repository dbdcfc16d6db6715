"""Run a real BIND ``named`` on 127.0.0.1 for integration tests.

Usage::

    from tests.infra.named import NamedServer, TsigKey

    with NamedServer(tmp_path, {"example.test": zone_file}) as ns:
        ns.query_txt("sel._domainkey.example.test")   # [(b"v=DKIM1; ...", b"...")]
        zone_file.write_text(new_text)                  # bump the SOA serial!
        ns.reload()                                      # waits until served

    key = TsigKey.generate("dkimroll-update")
    with NamedServer(tmp_path, {"example.test": zone_file},
                     allow_update_key=key) as ns:        # RFC 2136 enabled
        upd = ns.make_update("example.test")
        upd.replace("x._domainkey", 300, "TXT", '"v=DKIM1; p="')
        ns.send_update(upd)

Synchronisation is always by polling a real condition (SOA answered,
"loaded serial N" logged) with a deadline -- never by sleeping.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig
import dns.tsigkeyring
import dns.update

from .ports import LOOPBACK, free_port
from .wait import ManagedProcess, wait_until

NAMED = shutil.which("named") or "/usr/sbin/named"
RNDC = shutil.which("rndc") or "/usr/sbin/rndc"
NAMED_CHECKZONE = shutil.which("named-checkzone") or "/usr/bin/named-checkzone"

# named log lines meaning "someone else grabbed our port": retry on new ports.
_BIND_ERRORS = (
    "address in use",
    "unable to listen on any configured interfaces",
    "failed; interface ignored",
    "couldn't add command channel",
)


@dataclass(frozen=True)
class TsigKey:
    """A TSIG key as BIND and dnspython both understand it."""

    name: str
    secret: str  # base64
    algorithm: str = "hmac-sha256"

    @classmethod
    def generate(cls, name: str = "dkimroll-update", algorithm: str = "hmac-sha256",
                 nbytes: int = 32) -> "TsigKey":
        return cls(name=name, secret=base64.b64encode(secrets.token_bytes(nbytes)).decode(),
                   algorithm=algorithm)

    def keyring(self) -> dict:
        """dnspython keyring ``{Name: Key}`` for ``Message.use_tsig``/``query``."""
        return dns.tsigkeyring.from_text({self.name: (self.algorithm, self.secret)})

    def dns_key(self) -> dns.tsig.Key:
        return dns.tsig.Key(self.name, self.secret, self.algorithm)

    def conf_stanza(self) -> str:
        return (f'key "{self.name}" {{\n    algorithm {self.algorithm};\n'
                f'    secret "{self.secret}";\n}};\n')


class NamedError(RuntimeError):
    pass


class NamedServer:
    """A ``named -g`` instance serving the given zones as primary on loopback.

    ``zones`` maps zone name -> zone file path.  Static zones are served
    straight from the given path (so the code under test can rewrite the file
    and call :meth:`reload`).  Zones that accept RFC 2136 updates (all zones
    when ``allow_update_key`` is given, or only those in ``dynamic_zones``)
    are served from a *copy* in the work dir, with their journal there too;
    see :attr:`zone_files` for the path named actually uses.
    """

    address: str = LOOPBACK

    def __init__(
        self,
        workdir: "os.PathLike[str] | str",
        zones: Mapping[str, "os.PathLike[str] | str"],
        *,
        allow_update_key: Optional[TsigKey] = None,
        dynamic_zones: Optional[Iterable[str]] = None,
        start_timeout: float = 20.0,
        extra_options: str = "",
    ) -> None:
        if not zones:
            raise ValueError("NamedServer needs at least one zone")
        base = Path(workdir)
        base.mkdir(parents=True, exist_ok=True)
        # A private subdirectory so several servers can share one tmp_path.
        self.workdir = Path(tempfile.mkdtemp(prefix="named-", dir=base))
        os.chmod(self.workdir, 0o700)
        self.zones: dict[str, Path] = {
            self._norm(z): Path(p).resolve() for z, p in zones.items()
        }
        self.tsig_key = allow_update_key
        if dynamic_zones is None:
            dyn = set(self.zones) if allow_update_key else set()
        else:
            dyn = {self._norm(z) for z in dynamic_zones}
            unknown = dyn - set(self.zones)
            if unknown:
                raise ValueError(f"dynamic_zones not in zones: {sorted(unknown)}")
            if dyn and allow_update_key is None:
                raise ValueError("dynamic_zones requires allow_update_key")
        self.dynamic_zones: frozenset[str] = frozenset(dyn)
        self.start_timeout = start_timeout
        self.extra_options = extra_options

        self.conf_path = self.workdir / "named.conf"
        self.rndc_conf_path = self.workdir / "rndc.conf"
        self.log_path = self.workdir / "named.log"
        self.zone_files: dict[str, Path] = {}
        for zone, src in self.zones.items():
            if zone in self.dynamic_zones:
                dst = self.workdir / f"{zone or 'root'}.db"
                shutil.copyfile(src, dst)
                self.zone_files[zone] = dst
            else:
                self.zone_files[zone] = src
        self._rndc_secret = base64.b64encode(secrets.token_bytes(32)).decode()
        self.port: int = 0
        self.control_port: int = 0
        self._proc: Optional[ManagedProcess] = None

    # ------------------------------------------------------------------ utils
    @staticmethod
    def _norm(zone: str) -> str:
        return zone.rstrip(".").lower()

    def journal_path(self, zone: str) -> Path:
        return self.workdir / f"{self._norm(zone) or 'root'}.db.jnl"

    def _render_conf(self) -> str:
        wd = self.workdir
        parts = [
            "options {",
            f'    directory "{wd}";',
            f'    pid-file "{wd}/named.pid";',
            f'    session-keyfile "{wd}/session.key";',
            f'    managed-keys-directory "{wd}";',
            f'    dump-file "{wd}/named_dump.db";',
            f'    statistics-file "{wd}/named.stats";',
            f'    memstatistics-file "{wd}/named.memstats";',
            f"    listen-on port {self.port} {{ {LOOPBACK}; }};",
            "    listen-on-v6 { none; };",
            "    recursion no;",
            "    allow-query { any; };",
            "    allow-transfer { any; };",
            "    dnssec-validation no;",
            "    notify no;",
            "    automatic-interface-scan no;",
            "    minimal-responses no;",
        ]
        if self.extra_options:
            parts.append(self.extra_options)
        parts.append("};")
        parts.append(
            f'key "rndc-key" {{\n    algorithm hmac-sha256;\n    secret "{self._rndc_secret}";\n}};'
        )
        parts.append(
            f"controls {{\n    inet {LOOPBACK} port {self.control_port} "
            f'allow {{ {LOOPBACK}; }} keys {{ "rndc-key"; }};\n}};'
        )
        if self.tsig_key is not None:
            parts.append(self.tsig_key.conf_stanza())
        for zone, path in self.zone_files.items():
            zname = zone or "."
            lines = [f'zone "{zname}" {{', "    type primary;", f'    file "{path}";']
            if zone in self.dynamic_zones:
                assert self.tsig_key is not None
                lines.append(f'    journal "{self.journal_path(zone)}";')
                lines.append(
                    f'    update-policy {{ grant "{self.tsig_key.name}" zonesub ANY; }};'
                )
            lines.append("};")
            parts.append("\n".join(lines))
        return "\n".join(parts) + "\n"

    def _render_rndc_conf(self) -> str:
        return (
            f'key "rndc-key" {{\n    algorithm hmac-sha256;\n    secret "{self._rndc_secret}";\n}};\n'
            f'options {{\n    default-key "rndc-key";\n    default-server {LOOPBACK};\n'
            f"    default-port {self.control_port};\n}};\n"
        )

    def log_text(self, since: int = 0, tail: Optional[int] = 20000) -> str:
        return self._proc.log_text(since, tail) if self._proc else ""

    # -------------------------------------------------------------- lifecycle
    def start(self) -> "NamedServer":
        if self._proc is not None:
            raise NamedError("named already started")
        last_err: Optional[BaseException] = None
        for _attempt in range(3):  # retry only on port races
            self.port = free_port()
            self.control_port = free_port()
            self.conf_path.write_text(self._render_conf())
            self.rndc_conf_path.write_text(self._render_rndc_conf())
            os.chmod(self.rndc_conf_path, 0o600)
            # truncate the log so diagnostics are about this attempt only
            self.log_path.write_bytes(b"")
            proc = ManagedProcess(
                [NAMED, "-g", "-4", "-n", "2", "-c", str(self.conf_path)],
                self.log_path, cwd=self.workdir, name="named",
            )
            self._proc = proc
            try:
                proc.start()
                self._wait_ready(self.start_timeout)
                return self
            except BaseException as exc:
                log = proc.log_text()
                proc.stop()
                self._proc = None
                last_err = exc
                if isinstance(exc, (NamedError, RuntimeError, TimeoutError)) and any(
                    m in log.lower() for m in _BIND_ERRORS
                ):
                    continue
                raise
        raise NamedError(f"named could not bind a port after retries: {last_err}")

    def _zone_load_error(self, zone: Optional[str], since: int) -> Optional[str]:
        text = self._proc.log_text(since) if self._proc else ""
        for line in text.splitlines():
            low = line.lower()
            if "not loaded due to errors" in low or (
                "loading from master file" in low and "failed" in low
            ):
                if zone is None or f"zone {zone or '.'}/in" in low:
                    return line.strip()
        return None

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        proc = self._proc

        def abort() -> Optional[str]:
            reason = proc.exit_reason()
            if reason:
                return reason
            err = self._zone_load_error(None, 0)
            if err:
                return f"zone failed to load: {err}"
            low = proc.log_text().lower()
            for marker in _BIND_ERRORS:
                if marker in low:
                    return f"named could not bind its ports ({marker})"
            return None

        pending = set(self.zone_files)
        control_line = f"command channel listening on {LOOPBACK}#{self.control_port}"

        def all_answer() -> bool:
            log = proc.log_text()
            # "running" is logged only after every listener (DNS port and
            # rndc control channel) was set up; a named that lost a port race
            # exits or logs a bind error instead -- so an answer we get below
            # cannot come from some foreign server holding "our" port.
            if control_line not in log or not re.search(r" running\r?$", log, re.M):
                return False
            for zone in sorted(pending):
                if self.soa_serial(zone, timeout=0.5) is None:
                    return False
                pending.discard(zone)
            return True

        wait_until(
            all_answer, timeout=timeout, interval=0.05,
            what=(f"named on {LOOPBACK}:{self.port} to open its control channel and "
                  f"serve SOA for {sorted(self.zone_files)}"),
            abort_if=abort, details=lambda: proc.log_text(tail=8000),
        )

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stop()

    def __enter__(self) -> "NamedServer":
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.is_running()

    # ------------------------------------------------------------------ rndc
    def rndc(self, *args: str, timeout: float = 20.0) -> str:
        """Run ``rndc`` against this server; return its stdout, raise on failure."""
        res = subprocess.run(
            [RNDC, "-c", str(self.rndc_conf_path), *args],
            capture_output=True, text=True, timeout=timeout,
        )
        if res.returncode != 0:
            raise NamedError(
                f"rndc {' '.join(args)} failed ({res.returncode}): "
                f"{res.stdout}{res.stderr}\n--- named log ---\n{self.log_text(tail=4000)}"
            )
        return res.stdout

    @staticmethod
    def file_serial(zone: str, path: "os.PathLike[str] | str") -> int:
        """The SOA serial BIND itself reads from ``path`` (via named-checkzone).

        Raises NamedError with the checker's output if the file does not load.
        """
        res = subprocess.run(
            [NAMED_CHECKZONE, zone.rstrip(".") or ".", str(path)],
            capture_output=True, text=True, timeout=30,
        )
        m = re.search(r"loaded serial (\d+)", res.stdout)
        if res.returncode != 0 or not m:
            raise NamedError(f"zone file {path} for {zone} does not load:\n{res.stdout}{res.stderr}")
        return int(m.group(1))

    def reload(self, zone: Optional[str] = None, timeout: float = 20.0) -> dict[str, int]:
        """Reload static zone(s) from their files and wait until served.

        For each zone: validate the file with named-checkzone (fail fast),
        ``rndc reload <zone>``, then poll until named has logged
        ``loaded serial N`` for it *and* answers SOA with serial N.
        Returns ``{zone: serial}``.  Dynamic zones are skipped (named refuses
        to reload them; use :meth:`send_update`).
        """
        if self._proc is None:
            raise NamedError("named is not running")
        targets = [self._norm(zone)] if zone is not None else sorted(self.zone_files)
        result: dict[str, int] = {}
        for z in targets:
            if z not in self.zone_files:
                raise KeyError(z)
            if z in self.dynamic_zones:
                if zone is not None:
                    raise NamedError(f"{z} is dynamic; it cannot be reloaded from file")
                continue
            path = self.zone_files[z]
            serial = self.file_serial(z, path)
            # named skips files whose mtime predates its last load (e.g. a file
            # replaced via copy2/rename of an old file): make it "newer".
            try:
                os.utime(path, None)
            except OSError:
                pass
            since = self._proc.log_size()
            self.rndc("reload", z or ".")
            needle = f"zone {z or '.'}/IN: loaded serial {serial}".lower()
            proc = self._proc

            def done() -> bool:
                if needle not in proc.log_text(since).lower():
                    return False
                return self.soa_serial(z, timeout=0.5) == serial

            def abort(z: str = z, since: int = since) -> Optional[str]:
                reason = proc.exit_reason()
                if reason:
                    return reason
                err = self._zone_load_error(z, since)
                return f"reload failed: {err}" if err else None

            wait_until(done, timeout=timeout, interval=0.05,
                       what=f"named to serve {z} serial {serial} after reload",
                       abort_if=abort, details=lambda: proc.log_text(since, tail=4000))
            result[z] = serial
        return result

    # ---------------------------------------------------------------- queries
    def query(self, name: str, rdtype: "str | int" = "TXT", *, timeout: float = 2.0,
              tcp: Optional[bool] = None) -> dns.message.Message:
        """Send one query to this server only.  ``tcp=None``: UDP with TCP
        fallback on truncation; ``True``/``False`` forces the transport."""
        q = dns.message.make_query(name, rdtype)
        q.flags &= ~dns.flags.RD
        if tcp is None:
            resp, _ = dns.query.udp_with_fallback(q, self.address, timeout=timeout, port=self.port)
        elif tcp:
            resp = dns.query.tcp(q, self.address, timeout=timeout, port=self.port)
        else:
            resp = dns.query.udp(q, self.address, timeout=timeout, port=self.port)
        return resp

    def query_txt(self, name: str, *, timeout: float = 2.0) -> list[tuple[bytes, ...]]:
        """TXT rdatas at ``name`` as tuples of their character-strings.

        Empty list for NXDOMAIN/NODATA; raises NamedError for other rcodes.
        """
        resp = self.query(name, "TXT", timeout=timeout)
        rc = resp.rcode()
        if rc == dns.rcode.NXDOMAIN:
            return []
        if rc != dns.rcode.NOERROR:
            raise NamedError(f"TXT {name}: {dns.rcode.to_text(rc)}")
        qname = dns.name.from_text(name)
        out: list[tuple[bytes, ...]] = []
        for rrset in resp.answer:
            if rrset.rdtype == dns.rdatatype.TXT and rrset.name == qname:
                out.extend(tuple(rd.strings) for rd in rrset)
        return out

    def soa_serial(self, zone: str, *, timeout: float = 2.0) -> Optional[int]:
        """Served SOA serial for ``zone``, or None if named does not answer
        authoritatively for it (not loaded yet / load failed / no reply)."""
        try:
            resp = self.query(zone or ".", "SOA", timeout=timeout, tcp=False)
        except (dns.exception.DNSException, OSError):
            return None
        if resp.rcode() != dns.rcode.NOERROR or not resp.flags & dns.flags.AA:
            return None
        for rrset in resp.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return int(rrset[0].serial)
        return None

    # ----------------------------------------------------------- RFC 2136
    def make_update(self, zone: str) -> dns.update.UpdateMessage:
        """An UPDATE message for ``zone`` signed with the server's TSIG key."""
        if self.tsig_key is None:
            raise NamedError("server was started without allow_update_key")
        return dns.update.UpdateMessage(
            zone, keyring=self.tsig_key.keyring(), keyname=self.tsig_key.name,
            keyalgorithm=self.tsig_key.algorithm,
        )

    def send_update(self, update: dns.message.Message, *, timeout: float = 5.0,
                    check: bool = True) -> dns.message.Message:
        """Send an UPDATE over TCP; raise NamedError unless NOERROR (if check)."""
        resp = dns.query.tcp(update, self.address, timeout=timeout, port=self.port)
        if check and resp.rcode() != dns.rcode.NOERROR:
            raise NamedError(
                f"UPDATE refused: {dns.rcode.to_text(resp.rcode())}\n"
                f"--- named log ---\n{self.log_text(tail=4000)}"
            )
        return resp

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<NamedServer {self.address}:{self.port} {sorted(self.zone_files)} {state}>"


__all__ = ["NamedServer", "NamedError", "TsigKey"]
