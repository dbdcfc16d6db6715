"""Run a real OpenSSH ``sshd`` on 127.0.0.1 as a signer host for integration tests.

Usage::

    from tests.infra.sshd import SshServer

    with SshServer(workdir) as host:
        host.port                 # free loopback port sshd listens on
        host.fingerprint          # "SHA256:..." of its own ed25519 host key
        host.known_hosts          # file with "[127.0.0.1]:<port> ssh-ed25519 AAAA..."
        host.identity_file        # client private key allowed to log in
        host.kill_children()      # cut every open session (the listener stays)

Each server gets its own host key (``ssh-keygen -t ed25519``), so two servers
are two hosts as far as host-key checking goes; they share this machine's
filesystem, so tests give each "host" its own directory tree.

Logins: public-key only (``UsePAM no``, ``PermitRootLogin prohibit-password``).
Authorized keys come from an ``AuthorizedKeysCommand`` run as root that prints
the generated client key(s): sshd reads an ``AuthorizedKeysFile`` with the
privileges of the user logging in, and the work directory (under the
suite's basetemp, below root's private home) is not readable by the unprivileged
test user, while the command path only has to be root-owned and not group/world
writable (sshd checks that), which it is. ``StrictModes`` stays on.

Readiness is a TCP connect that receives sshd's ``SSH-2.0-OpenSSH`` banner;
a port race (another process took the port between ``free_port()`` and
sshd's bind) is retried on a new port. The daemon runs in the foreground
(``-D -e``) under :class:`~tests.infra.wait.ManagedProcess`, so it cannot
outlive the test run. sshd needs its privilege-separation directory
``/run/sshd``; it is created (0755 root) when missing.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable, Optional

from .ports import LOOPBACK, free_port
from .wait import ManagedProcess, wait_until

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
PRIVSEP_DIR = Path("/run/sshd")

_BIND_ERRORS = ("address already in use", "cannot bind any address")


class SshServerError(RuntimeError):
    pass


def keygen(path: Path, key_type: str = "ed25519", passphrase: str = "", comment: str = "") -> Path:
    """Generate an OpenSSH key pair at ``path`` / ``path.pub``; return ``path``."""
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    args = [SSH_KEYGEN, "-q", "-t", key_type, "-N", passphrase, "-C", comment or path.name, "-f", str(path)]
    if key_type == "rsa":
        args[4:4] = ["-b", "2048"]
    res = subprocess.run(args, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise SshServerError(f"ssh-keygen failed: {res.stdout}{res.stderr}")
    os.chmod(path, 0o600)
    return path


def public_key_line(pub_path: Path) -> tuple[str, str]:
    """(key type, base64 blob) of an OpenSSH ``.pub`` file."""
    fields = pub_path.read_text().split()
    return fields[0], fields[1]


def fingerprint_of(pub_path: Path) -> str:
    """OpenSSH SHA256 fingerprint (``SHA256:`` + unpadded base64) of a ``.pub`` file."""
    _, blob = public_key_line(pub_path)
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from /proc), deepest first."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                stat = fh.read().decode("ascii", "replace")
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out: list[int] = []

    def walk(p: int) -> None:
        for child in parents.get(p, []):
            walk(child)
            out.append(child)

    walk(pid)
    return out


class SshServer:
    """An ``sshd -D -e`` on 127.0.0.1:<free port> with its own host key.

    ``users`` are the accounts allowed to log in with the generated client key
    (default: root). ``client_passphrase`` protects that client key.
    """

    address: str = LOOPBACK

    def __init__(
        self,
        workdir: "os.PathLike[str] | str",
        *,
        users: Iterable[str] = ("root",),
        client_passphrase: str = "",
        host_key_type: str = "ed25519",
        start_timeout: float = 20.0,
        extra_config: str = "",
    ) -> None:
        base = Path(workdir)
        base.mkdir(parents=True, exist_ok=True)
        self.workdir = Path(tempfile.mkdtemp(prefix="sshd-", dir=base))
        os.chmod(self.workdir, 0o700)
        self.users = tuple(users)
        self.start_timeout = start_timeout
        self.extra_config = extra_config
        self.host_key = keygen(self.workdir / f"ssh_host_{host_key_type}_key", host_key_type,
                               comment="dkimroll-test-host")
        self.identity_file = keygen(self.workdir / "client_key", "ed25519", client_passphrase,
                                    comment="dkimroll-test-client")
        self.client_passphrase = client_passphrase or None
        self.fingerprint = fingerprint_of(Path(f"{self.host_key}.pub"))
        self.host_key_type, self.host_key_blob = public_key_line(Path(f"{self.host_key}.pub"))
        self.authorized_keys = self.workdir / "authorized_keys"
        self.authorized_keys.write_text(Path(f"{self.identity_file}.pub").read_text())
        os.chmod(self.authorized_keys, 0o600)
        self.keys_command = self.workdir / "authorized-keys-command"
        self.keys_command.write_text(f"#!/bin/sh\nexec cat {self.authorized_keys}\n")
        os.chmod(self.keys_command, 0o700)
        self.known_hosts = self.workdir / "known_hosts"
        self.conf_path = self.workdir / "sshd_config"
        self.log_path = self.workdir / "sshd.log"
        self.pid_file = self.workdir / "sshd.pid"
        self.port = 0
        self._proc: Optional[ManagedProcess] = None

    # ------------------------------------------------------------- config
    @property
    def host_key_name(self) -> str:
        """The name clients look the host key up under: ``[127.0.0.1]:<port>``."""
        return f"[{self.address}]:{self.port}"

    def known_hosts_line(self) -> str:
        return f"{self.host_key_name} {self.host_key_type} {self.host_key_blob}\n"

    def _render_conf(self) -> str:
        lines = [
            f"ListenAddress {self.address}:{self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.pid_file}",
            "UsePAM no",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "AuthorizedKeysFile none",
            f"AuthorizedKeysCommand {self.keys_command}",
            "AuthorizedKeysCommandUser root",
            f"AllowUsers {' '.join(self.users)}",
            "StrictModes yes",
            "AllowAgentForwarding no",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PermitTTY no",
            "PrintMotd no",
            "UseDNS no",
            "LogLevel VERBOSE",
            "MaxStartups 50",
            "Subsystem sftp internal-sftp",
        ]
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def add_authorized_key(self, pub_line: str) -> None:
        with open(self.authorized_keys, "a") as fh:
            fh.write(pub_line.rstrip("\n") + "\n")

    # ---------------------------------------------------------- lifecycle
    def log_text(self, tail: Optional[int] = 8000) -> str:
        return self._proc.log_text(tail=tail) if self._proc else ""

    def start(self) -> "SshServer":
        if self._proc is not None:
            raise SshServerError("sshd already started")
        if not PRIVSEP_DIR.is_dir():
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        last_err: Optional[BaseException] = None
        for _attempt in range(3):  # retry only on port races
            self.port = free_port()
            self.conf_path.write_text(self._render_conf())
            os.chmod(self.conf_path, 0o600)
            check = subprocess.run([SSHD, "-t", "-f", str(self.conf_path)],
                                   capture_output=True, text=True, timeout=30)
            if check.returncode != 0:
                raise SshServerError(f"sshd rejected its configuration:\n{check.stdout}{check.stderr}")
            self.known_hosts.write_text(self.known_hosts_line())
            self.log_path.write_bytes(b"")
            proc = ManagedProcess([SSHD, "-D", "-e", "-f", str(self.conf_path)],
                                  self.log_path, cwd=self.workdir, name="sshd")
            self._proc = proc
            try:
                proc.start()
                wait_until(self._banner, timeout=self.start_timeout, interval=0.05,
                           what=f"sshd on {self.address}:{self.port} to send its banner",
                           abort_if=proc.exit_reason, details=lambda: proc.log_text(tail=4000))
                return self
            except BaseException as exc:
                log = proc.log_text().lower()
                proc.stop()
                self._proc = None
                last_err = exc
                if isinstance(exc, (RuntimeError, TimeoutError)) and any(m in log for m in _BIND_ERRORS):
                    continue
                raise
        raise SshServerError(f"sshd could not bind a port after retries: {last_err}")

    def _banner(self) -> bool:
        with socket.create_connection((self.address, self.port), timeout=1.0) as s:
            s.settimeout(1.0)
            data = s.recv(64)
        # a foreign listener could hold the port: the banner must be OpenSSH's
        # and our daemon must still be alive
        return data.startswith(b"SSH-2.0-OpenSSH") and self._proc is not None and self._proc.is_running()

    def kill_children(self) -> int:
        """SIGKILL every process sshd forked (one set per open session), so every
        client connection drops at once; the listener keeps running. Returns how
        many processes were killed."""
        if self._proc is None or self._proc.pid is None:
            return 0
        killed = 0
        for pid in _children(self._proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        return killed

    def session_count(self) -> int:
        """How many processes sshd has forked for sessions right now."""
        if self._proc is None or self._proc.pid is None:
            return 0
        return len(_children(self._proc.pid))

    def stop(self) -> None:
        if self._proc is None:
            return
        # Session processes call setsid(), so they are not in the listener's
        # process group: kill them explicitly while they are still its children.
        self.kill_children()
        proc, self._proc = self._proc, None
        proc.stop()

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.is_running()

    def __enter__(self) -> "SshServer":
        if self._proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<SshServer {self.address}:{self.port} {self.fingerprint} {state}>"


__all__ = ["SshServer", "SshServerError", "keygen", "fingerprint_of", "public_key_line"]
