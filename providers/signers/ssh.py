"""The SSH transport: push a signer's files to a remote host with OpenSSH's protocols.

Why paramiko: it is synchronous, so one `SshTransport` fits the per-host
resource methods of the Pulumi provider (create/update/read/diff run in the
provider's worker threads, where asyncssh would need an event loop of its own),
and it speaks both SFTP and exec channels over one authenticated connection.
It is pure Python on top of `cryptography`, which dkimroll already needs, and it
lets us decide host-key trust ourselves: strict, with a policy that rejects.

Host keys
---------
The server's key must be known before anything is sent: either listed in a
`known_hosts` file (OpenSSH format, hashed names and `[host]:port` entries
included; default `~/.ssh/known_hosts` when no fingerprint is pinned) or equal
to the pinned `host_key_fingerprint` (`SHA256:<base64>`, as `ssh-keygen -lf`
prints it). An unknown or changed key fails the push with a `SignerError` that
shows the key type and SHA256 fingerprint the server offered and how to pin it;
the connection is closed before authentication, so nothing is written. Keys are
never added to any file.

Authentication: an SSH agent (`use_agent`) and/or an identity file, optionally
encrypted with `passphrase` (kept out of `repr`, logs and error messages).

Writes
------
Every file is replaced atomically, as `LocalTransport` does: the content goes
to `.<name>.<random>.tmp` in the target's directory (same filesystem), created
with mode 0600 from the start, is fsynced, gets its owner, group and mode, and
is renamed over the target. On failure the temporary file is removed, after
connecting again once if the connection was lost. A cut connection therefore
leaves the old file, or the new one, never a mix. The directory is fsynced
after the rename too, batched: the next command sent to the host (the
digests that `sync` reads back, the reload, `close()`) starts with `sync DIR`.

* As root (`sudo=False`): SFTP. The temporary file is opened with O_EXCL and
  mode 0600, written, chowned to the numeric ids of the wanted owner/group
  (resolved on the host with `getent`, so an unknown name fails before anything
  is written), chmodded, fsynced with the `fsync@openssh.com` extension
  (falling back to running `sync <file>`), and renamed with
  `posix-rename@openssh.com` (falling back to `mv -f -T`).
* With `sudo=True` (an unprivileged login user): every privileged step is one
  `sudo -n` command: `install -m MODE [-o OWNER] [-g GROUP] /dev/stdin TMP`
  (content on stdin) and `sync TMP`, then `mv -f -T TMP PATH`. The user needs
  password-less sudo for exactly these programs (plus `find`, `realpath`,
  `mkdir`, `rm` and the reload command), for example::

      dkimroll ALL=(root) NOPASSWD: /usr/bin/find, /usr/bin/realpath, \\
          /usr/bin/mkdir, /usr/bin/install, /usr/bin/sync, /usr/bin/mv, \\
          /usr/bin/rm, /usr/bin/systemctl reload opendkim

  (`install` and `mv` with arbitrary paths make this root-equivalent anyway;
  the list documents what dkimroll runs, it is not a sandbox.)

Reading
-------
`digests` runs one command for all paths (split only to stay below Linux's
128 KiB limit on one argument): `find P... -maxdepth 0 -printf ... -type f
-exec sha256sum -z -- {} +`, which reports each file's type, mode, owner and
group names and hashes regular files only (a symlink is reported as such,
never followed), in exactly `sync.file_digest`'s format. A missing file is
`None`.

Directories
-----------
`ensure_safe_dir` applies LocalTransport's rule (and OpenDKIM's: see
`providers.signers.local`; the wording is shared through
`unsafe_dir_problem`): the directory, symlinks resolved (`realpath -m`), and
every directory above it must not be group or world writable. The existing
part is checked before anything is created, missing directories are created
with the requested mode (`mkdir -m`, so no umask applies), and the whole chain
is checked again. That is one round trip for an existing directory, two when
directories are created.

Commands
--------
The host needs a POSIX shell as the login shell and GNU coreutils/findutils
(any Debian, Ubuntu, RHEL or SUSE host). Every command runs with
`LC_ALL=C` (kept by sudo), so tool messages can be recognized and errors read
the same everywhere. `reload` runs as an argument vector: it is split like a
shell would (`shlex`) and each word quoted, so no shell expansion happens on
the host, as with `LocalTransport`; with `sudo=True` it runs as
`sudo -n -- <words>`. Exit status non-zero is a SignerError with the tail of
its stderr. Output of a login script on stderr is ignored.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import posixpath
import re
import secrets
import shlex
import socket
import stat
from typing import NoReturn, Sequence

import paramiko
from paramiko.sftp import (
    CMD_EXTENDED,
    CMD_HANDLE,
    CMD_OPEN,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_EXCL,
    SFTP_FLAG_WRITE,
)
from paramiko.sftp_attr import SFTPAttributes
from paramiko.sftp_file import SFTPFile

from providers.errors import ConfigError, SignerError
from providers.signers.base import ManagedFile

__all__ = ["SshTransport", "host_key_fingerprint", "unsafe_dir_problem"]

_STDERR_LIMIT = 2000
# Bytes of paths per `find` command (see `_batches`).
_COMMAND_LIMIT = 64 * 1024
_UNSAFE_DIR_BITS = stat.S_IWGRP | stat.S_IWOTH
_FINGERPRINT_RE = re.compile(r"^SHA256:([A-Za-z0-9+/]{43})=?$")
# User and group names dkimroll passes to `getent` and `install`.
_ACCOUNT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?$")
_HASH_RE = re.compile(rb"^([0-9a-f]{64})  (.*)$", re.S)
# Programs whose complaints on stderr mean a command did not do its job.
_TOOL_PREFIXES = ("sudo:", "find:", "realpath:", "mkdir:", "sha256sum:")
# One `find -printf` record: type, octal mode, owner, group, path.
_FIND_FORMAT = "%y %m %u %g %p\\0"


def host_key_fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a host key: `SHA256:` + unpadded base64."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _normalize_fingerprint(setting: str, value: str) -> str:
    text = value.strip()
    if text[:7].upper() == "SHA256:":
        text = "SHA256:" + text[7:]
    match = _FINGERPRINT_RE.match(text)
    if not match:
        raise ConfigError(
            setting,
            f"{value!r} is not an OpenSSH SHA256 fingerprint; expected 'SHA256:' and 43 "
            "base64 characters, as printed by 'ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub'",
        )
    try:
        if len(base64.b64decode(match.group(1) + "=", validate=True)) != 32:
            raise ValueError
    except (binascii.Error, ValueError):
        raise ConfigError(setting, f"{value!r} does not decode to a SHA-256 digest") from None
    return f"SHA256:{match.group(1)}"


def unsafe_dir_problem(node: str, mode: int, group: str, resolved: str = "") -> str | None:
    """Why a directory with permission bits `mode` cannot hold keys, or None.

    The same rule and wording as LocalTransport (after OpenDKIM's
    `dkimf_securefile()`): writable by others, sticky bit or not, or by its
    group. `resolved` is a note appended when the path went through symlinks.
    """
    mode = stat.S_IMODE(mode)
    if mode & stat.S_IWOTH:
        if mode & stat.S_ISVTX:
            fix = (
                "the sticky bit does not make it safe; keep keys and tables "
                "in a directory tree only root and the signer can write"
            )
        else:
            fix = f"fix with 'chmod o-w {node}'"
        return (
            f"directory has mode {mode:04o}: any user can write to it, so "
            f"OpenDKIM (RequireSafeKeys) would refuse keys below it{resolved}; {fix}"
        )
    if mode & stat.S_IWGRP:
        return (
            f"directory has mode {mode:04o}: its group '{group}' can write to it, so "
            f"OpenDKIM (RequireSafeKeys) may refuse keys below it{resolved}; "
            f"fix with 'chmod g-w {node}'"
        )
    return None


def _prefixes(path: str) -> list[str]:
    """'/a/b/c' -> ['/', '/a', '/a/b', '/a/b/c']."""
    out = ["/"]
    current = ""
    for part in path.strip("/").split("/"):
        if part:
            current = f"{current}/{part}"
            out.append(current)
    return out


def _batches(paths: Sequence[str], limit: int = _COMMAND_LIMIT) -> list[list[str]]:
    """Split `paths` so that each command line stays below `limit` bytes: the
    login shell gets the command as one argument, and Linux caps a single
    argument at 128 KiB (MAX_ARG_STRLEN)."""
    out: list[list[str]] = [[]]
    size = 0
    for p in paths:
        cost = len(shlex.quote(p).encode("utf-8")) + 1
        if out[-1] and size + cost > limit:
            out.append([])
            size = 0
        out[-1].append(p)
        size += cost
    return out


def _tail(data: bytes | str) -> str:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    if len(text) > _STDERR_LIMIT:
        text = "…" + text[-_STDERR_LIMIT:]
    return text


class _Stat:
    __slots__ = ("kind", "mode", "owner", "group")

    def __init__(self, kind: str, mode: int, owner: str, group: str) -> None:
        self.kind, self.mode, self.owner, self.group = kind, mode, owner, group


class _RejectPolicy(paramiko.MissingHostKeyPolicy):
    """Called by paramiko only for a host key that is not in the loaded known_hosts:
    accept it if and only if it matches the pinned fingerprint, never remember it."""

    def __init__(self, transport: "SshTransport") -> None:
        self.transport = transport

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        pinned = self.transport.host_key_fingerprint
        if pinned is not None and host_key_fingerprint(key) == pinned:
            return
        raise self.transport._host_key_error(hostname, key, None)


class SshTransport:
    """Transport to a host reached over SSH. See the module docstring.

    Connects lazily on the first call; `close()` closes the connection.
    """

    def __init__(
        self,
        name: str,
        host: str,
        port: int = 22,
        user: str = "root",
        known_hosts: str | None = None,
        host_key_fingerprint: str | None = None,
        identity_file: str | None = None,
        passphrase: str | None = None,
        use_agent: bool = True,
        sudo: bool = False,
        reload: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.name = name
        prefix = f"dkimroll:signers.{name}"
        if not host or any(c.isspace() for c in host):
            raise ConfigError(f"{prefix}.host", f"{host!r} is not a host name or address")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"{prefix}.port", f"{port!r} is not a TCP port (1-65535)")
        if not user or not _ACCOUNT_RE.match(user):
            raise ConfigError(f"{prefix}.user", f"{user!r} is not a user name")
        if not timeout or timeout <= 0:
            raise ConfigError(f"{prefix}.timeout", f"{timeout!r} must be a positive number of seconds")
        if identity_file is None and not use_agent:
            raise ConfigError(
                f"{prefix}.identity_file",
                "no way to authenticate: set identity_file, or leave use_agent on",
            )
        self.host = host
        self.port = port
        self.user = user
        self.host_key_fingerprint = (
            _normalize_fingerprint(f"{prefix}.host_key_fingerprint", host_key_fingerprint)
            if host_key_fingerprint
            else None
        )
        if known_hosts is None and self.host_key_fingerprint is None:
            known_hosts = "~/.ssh/known_hosts"
        self.known_hosts = os.path.expanduser(known_hosts) if known_hosts else None
        self.identity_file = os.path.expanduser(identity_file) if identity_file else None
        self._passphrase = passphrase or None
        self.use_agent = use_agent
        self.sudo = sudo
        self.reload = reload
        self.timeout = float(timeout)
        self._priv = "sudo -n " if sudo else ""
        self._client: paramiko.SSHClient | None = None
        self._sftp_client: paramiko.SFTPClient | None = None
        self._fsync_extension = True
        self._posix_rename = True
        self._ids: dict[tuple[str, str], int] = {}
        self._safe_dirs: set[str] = set()
        # Directories whose rename/unlink is not fsynced yet: synced by the next command.
        self._unsynced_dirs: list[str] = []

    def __repr__(self) -> str:  # no passphrase, ever
        return (
            f"SshTransport(name={self.name!r}, host={self.host!r}, port={self.port}, "
            f"user={self.user!r}, sudo={self.sudo})"
        )

    def __enter__(self) -> "SshTransport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def _where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    @property
    def _host_key_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    # connection ------------------------------------------------------------

    def _host_key_error(
        self, hostname: str, offered: paramiko.PKey, expected: paramiko.PKey | None
    ) -> SignerError:
        fp = host_key_fingerprint(offered)
        kind = offered.get_name()
        name = self._host_key_name
        pin = f"host_key_fingerprint: \"{fp}\""
        if expected is not None:
            source = f"known_hosts file {self.known_hosts}"
            detail = (
                f"host key of {name} has CHANGED: the server offered {kind} {fp}, but the "
                f"{source} has {expected.get_name()} {host_key_fingerprint(expected)}. "
                "Someone may be intercepting the connection (man-in-the-middle), or the host "
                "was reinstalled. Nothing was written. Check the key on the host "
                "('ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub'); if it is the new key, remove "
                f"the old entry ('ssh-keygen -R \"{name}\" -f {self.known_hosts}') and add the "
                f"new one, or pin it with {pin}"
            )
        elif self.host_key_fingerprint is not None:
            detail = (
                f"host key of {name} does not match the pinned host_key_fingerprint "
                f"{self.host_key_fingerprint}: the server offered {kind} {fp}. Nothing was "
                "written. Check the key on the host ('ssh-keygen -lf "
                "/etc/ssh/ssh_host_*_key.pub'); if it is the right one, pin it with "
                f"{pin}"
            )
        else:
            where = (
                f"not in {self.known_hosts}"
                if self.known_hosts and os.path.exists(self.known_hosts)
                else f"known_hosts file {self.known_hosts} does not exist"
            )
            detail = (
                f"host key of {name} is unknown ({where}): the server offered {kind} {fp}. "
                "Nothing was written. Check the key on the host ('ssh-keygen -lf "
                "/etc/ssh/ssh_host_*_key.pub'); if it matches, pin it with "
                f"{pin} or add the host's key to the known_hosts file "
                f"(as '{name} {kind} <base64 key>')"
            )
        return SignerError(self.name, detail)

    def _load_identity(self) -> paramiko.PKey | None:
        if self.identity_file is None:
            return None
        path = self.identity_file
        if not os.path.isfile(path):
            self._fail_connect(f"identity_file {path} does not exist")
        password = self._passphrase.encode("utf-8") if self._passphrase else None
        try:
            return paramiko.PKey.from_path(path, password=password)
        except TypeError:  # cryptography: encrypted key, no password given
            self._fail_connect(f"identity_file {path} is encrypted: set its passphrase")
        except OSError as exc:
            self._fail_connect(f"cannot read identity_file {path}: {exc.strerror or exc}")
        except (paramiko.SSHException, ValueError, paramiko.UnknownKeyType):
            hint = "wrong passphrase, or " if self._passphrase else ""
            self._fail_connect(
                f"cannot load identity_file {path} ({hint}not an OpenSSH or PEM private key)"
            )

    def _fail_connect(self, detail: str) -> NoReturn:
        raise SignerError(self.name, f"cannot connect to {self._where}: {detail}")

    def _connect(self) -> paramiko.SSHClient:
        client = self._client
        if client is not None:
            transport = client.get_transport()
            if transport is not None and transport.is_active():
                return client
            self._drop()
        pkey = self._load_identity()
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_RejectPolicy(self))
        host_keys = client.get_host_keys()
        if self.known_hosts and os.path.exists(self.known_hosts):
            try:
                host_keys.load(self.known_hosts)
            except OSError as exc:
                raise SignerError(
                    self.name, f"cannot read known_hosts {self.known_hosts}: {exc.strerror or exc}"
                ) from None
            if self.port == 22 and host_keys.lookup(self.host) is None:
                # OpenSSH writes port-22 hosts bare, but an explicit "[host]:22" is valid too.
                for kind, key in (host_keys.lookup(f"[{self.host}]:22") or {}).items():
                    host_keys.add(self.host, kind, key)
        try:
            client.connect(
                hostname=self.host,
                port=self.port,
                username=self.user,
                pkey=pkey,
                allow_agent=self.use_agent,
                look_for_keys=False,
                timeout=self.timeout,
                banner_timeout=self.timeout,
                auth_timeout=self.timeout,
                channel_timeout=self.timeout,
            )
            if self.host_key_fingerprint is not None:
                offered = client.get_transport().get_remote_server_key()
                if host_key_fingerprint(offered) != self.host_key_fingerprint:
                    raise self._host_key_error(self._host_key_name, offered, None)
        except SignerError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise self._host_key_error(exc.hostname, exc.key, exc.expected_key) from None
        except paramiko.AuthenticationException:
            client.close()
            tried = [f"identity_file {self.identity_file}"] if self.identity_file else []
            if self.use_agent:
                tried.append("the SSH agent's keys")
            raise SignerError(
                self.name,
                f"cannot log in to {self._where}: public key authentication failed "
                f"(tried {' and '.join(tried)})",
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            raise SignerError(self.name, f"cannot connect to {self._where}: {exc}") from None
        except (OSError, EOFError) as exc:
            client.close()
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SignerError(
                self.name, f"cannot connect to {self._where}: {reason or type(exc).__name__}"
            ) from None
        self._client = client
        return client

    def _drop(self) -> None:
        """Forget a connection that failed; the next call connects again."""
        sftp, self._sftp_client = self._sftp_client, None
        client, self._client = self._client, None
        for closable in (sftp, client):
            if closable is not None:
                try:
                    closable.close()
                except Exception:  # noqa: BLE001 - already broken
                    pass

    def _lost(self, exc: BaseException, doing: str, path: str | None = None) -> SignerError:
        self._drop()
        if isinstance(exc, socket.timeout):
            reason = f"no answer within {self.timeout:g}s"
        else:
            reason = str(exc).strip().rstrip(":") or type(exc).__name__
        return SignerError(self.name, f"connection to {self._where} lost while {doing}: {reason}", path)

    def _sftp(self) -> paramiko.SFTPClient:
        if self._sftp_client is None:
            client = self._connect()
            try:
                self._sftp_client = client.open_sftp()
                self._sftp_client.get_channel().settimeout(self.timeout)
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise self._lost(exc, "opening SFTP") from None
        return self._sftp_client

    def _exec(self, command: str, stdin: bytes | None = None, doing: str = "running a command",
              path: str | None = None) -> tuple[int, bytes, bytes]:
        """Run `command` through the login shell; return (exit status, stdout, stderr).
        The status is -1 when the command ended without one (killed by a signal).

        Directories still to be synced after a rename or unlink are synced first,
        in the same round trip (their errors ignored, as LocalTransport ignores a
        filesystem that cannot fsync a directory)."""
        client = self._connect()
        pending = list(dict.fromkeys(self._unsynced_dirs))
        if pending:
            dirs = " ".join(shlex.quote(d) for d in pending)
            command = f"{self._priv}sync -- {dirs} 2>/dev/null; {command}"
        # Messages in English, whatever the host's locale (sudo keeps LC_ALL).
        command = f"LC_ALL=C; export LC_ALL; {command}"
        try:
            transport = client.get_transport()
            if transport is None:
                raise paramiko.SSHException("not connected")
            chan = transport.open_session(timeout=self.timeout)
            try:
                chan.settimeout(self.timeout)
                chan.exec_command(command)
                if stdin:
                    chan.sendall(stdin)
                chan.shutdown_write()
                out = bytearray()
                while True:
                    data = chan.recv(65536)
                    if not data:
                        break
                    out += data
                err = bytearray()
                while True:
                    data = chan.recv_stderr(65536)
                    if not data:
                        break
                    err += data
                if not chan.status_event.wait(self.timeout):
                    raise socket.timeout()
                status = chan.exit_status
            finally:
                chan.close()
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._lost(exc, doing, path) from None
        if pending:
            self._unsynced_dirs.clear()
        return status, bytes(out), bytes(err)

    def _check(self, command: str, what: str, path: str | None = None,
               stdin: bytes | None = None) -> bytes:
        status, out, err = self._exec(command, stdin, what, path)
        if status != 0:
            detail = _tail(err) or _tail(out)
            code = f"status {status}" if status >= 0 else "no exit status (killed?)"
            raise SignerError(
                self.name, f"{what} failed with {code}" + (f": {detail}" if detail else ""), path
            )
        return out

    # reading ---------------------------------------------------------------

    def _find_command(self, paths: Sequence[str], hashes: bool) -> str:
        quoted = " ".join(shlex.quote(p) for p in paths)
        command = f"{self._priv}find {quoted} -maxdepth 0 -printf {shlex.quote(_FIND_FORMAT)}"
        if hashes:
            command += " -type f -exec sha256sum -z -- {} +"
        return command

    def _parse_find(self, status: int, out: bytes, err: bytes, paths: Sequence[str],
                    tolerate: tuple[str, ...] = ()) -> tuple[dict[str, _Stat], dict[str, str], list[bytes]]:
        """Records of `_find_command`: stats by path, sha256 by path, and the records
        starting with '/' (a realpath printed before find, see ensure_safe_dir).
        stderr lines starting with one of `tolerate` are left to the caller."""
        stats: dict[str, _Stat] = {}
        sums: dict[str, str] = {}
        other: list[bytes] = []
        for record in out.split(b"\0"):
            if not record:
                continue
            if record.startswith(b"/"):
                other.append(record)
                continue
            match = _HASH_RE.match(record)
            if match:
                sums[match.group(2).decode("utf-8", "surrogateescape")] = match.group(1).decode()
                continue
            fields = record.split(b" ", 4)
            try:
                if len(fields) != 5 or len(fields[0]) != 1:
                    raise ValueError
                kind, mode, owner, group, raw_path = fields
                stats[raw_path.decode("utf-8", "surrogateescape")] = _Stat(
                    kind.decode(), int(mode, 8), owner.decode(), group.decode()
                )
            except ValueError:
                raise SignerError(
                    self.name, f"unexpected output on {self._where}: {_tail(record)!r}"
                ) from None
        # find reports each missing path on stderr, naming it (commands run with
        # LC_ALL=C). Any other complaint of sudo or of our tools -- a permission
        # denied, sudo refusing, a find without -printf -- is an error; other
        # noise (a login script's) is ignored.
        problems = []
        for line in err.decode("utf-8", "replace").splitlines():
            if not line.startswith(_TOOL_PREFIXES) or line.startswith(tolerate):
                continue
            names_path = any(f"'{p}'" in line or f"\u2018{p}\u2019" in line for p in paths)
            if names_path and ("No such file or directory" in line or "Not a directory" in line):
                continue
            problems.append(line)
        if problems or status not in (0, 1):
            detail = _tail("\n".join(problems) or err) or f"exit status {status}"
            raise SignerError(self.name, f"cannot read file status on {self._where}: {detail}")
        return stats, sums, other

    def digests(self, paths: Sequence[str]) -> dict[str, str | None]:
        paths = list(dict.fromkeys(paths))
        if not paths:
            return {}
        for p in paths:
            if not posixpath.isabs(p):
                raise SignerError(self.name, "refusing a relative path", p)
        stats: dict[str, _Stat] = {}
        sums: dict[str, str] = {}
        for batch in _batches(paths):
            status, out, err = self._exec(self._find_command(batch, hashes=True),
                                          doing="reading file status")
            batch_stats, batch_sums, _ = self._parse_find(status, out, err, batch)
            stats.update(batch_stats)
            sums.update(batch_sums)
        result: dict[str, str | None] = {}
        for p in paths:
            st = stats.get(p)
            if st is None:
                result[p] = None
            elif st.kind == "l":
                # Never equal to a wanted digest: the next write replaces the link by a file.
                result[p] = f"symlink:{st.mode:04o}:{st.owner}:{st.group}"
            elif st.kind != "f":
                raise SignerError(self.name, "exists and is not a regular file", p)
            elif p not in sums:
                raise SignerError(self.name, "cannot read the file to hash it", p)
            else:
                result[p] = file_digest_from_hash(sums[p], st.mode, st.owner, st.group)
        return result

    # directories -----------------------------------------------------------

    def ensure_safe_dir(self, path: str, mode: int = 0o750) -> None:
        """Create `path` (and missing parents) with `mode`, then check it and every
        directory above it, symlinks resolved, is writable by its owner only.

        One round trip when the directory exists and no symlink is on the way
        (`realpath` and `find` in one command), one more to create directories."""
        if not posixpath.isabs(path):
            raise SignerError(self.name, "refusing a relative directory", path)
        if mode & _UNSAFE_DIR_BITS or mode & ~0o7777:
            raise SignerError(
                self.name, f"refusing to create a group/world writable directory ({mode:04o})", path
            )
        target = posixpath.normpath(path)
        if target.startswith("//"):
            target = "/" + target.lstrip("/")
        chain = _prefixes(target)
        command = (
            f"{self._priv}realpath -m -z -- {shlex.quote(target)}; "
            + self._find_command(chain, hashes=False)
        )
        status, out, err = self._exec(command, doing="checking directories", path=target)
        stats, _, reals = self._parse_find(status, out, err, chain)
        if len(reals) != 1:
            raise SignerError(self.name, f"cannot resolve the directory: {_tail(err)}", target)
        real = reals[0].decode("utf-8", "surrogateescape")
        if real != target:  # a symlink on the way: check where it leads instead
            chain = _prefixes(real)
            status, out, err = self._exec(self._find_command(chain, hashes=False),
                                          doing="checking directories", path=target)
            stats, _, _ = self._parse_find(status, out, err, chain)
        resolved = f" ({target} resolves to {real})" if real != target else ""
        missing = self._check_chain(chain, stats, resolved, allow_missing=True)
        if missing:
            # Checked before creating anything, so nothing lands below an unsafe directory.
            quoted = " ".join(shlex.quote(d) for d in missing)
            command = (
                f"{self._priv}mkdir -m {mode:o} -- {quoted}; "
                + self._find_command(chain, hashes=False)
            )
            status, out, err = self._exec(command, doing="creating directories", path=target)
            # What counts is the state find reports afterwards: mkdir may have
            # complained about a directory created meanwhile.
            stats, _, _ = self._parse_find(status, out, err, chain, tolerate=("mkdir:",))
            if any(d not in stats for d in missing):
                detail = "\n".join(l for l in err.decode("utf-8", "replace").splitlines()
                                   if l.startswith("mkdir:"))
                raise SignerError(self.name, f"cannot create directory: {_tail(detail or err)}", target)
            self._check_chain(chain, stats, resolved, allow_missing=False)
        self._safe_dirs.add(target)

    def _check_chain(self, chain: list[str], stats: dict[str, _Stat], resolved: str,
                     allow_missing: bool) -> list[str]:
        """Check every existing directory of `chain`; return the missing tail."""
        for index, node in enumerate(chain):
            st = stats.get(node)
            if st is None:
                if not allow_missing:
                    raise SignerError(self.name, f"cannot stat the directory{resolved}", node)
                return chain[index:]
            if st.kind != "d":
                raise SignerError(self.name, f"exists and is not a directory{resolved}", node)
            problem = unsafe_dir_problem(node, st.mode, st.group, resolved)
            if problem:
                raise SignerError(self.name, problem, node)
        return []

    # writing ---------------------------------------------------------------

    def _account_ids(self, owner: str | None, group: str | None, path: str) -> tuple[int | None, int | None]:
        """uid of `owner` and gid of `group` on the host (None when unset), cached.
        Unknown names fail here, before anything is written."""
        wanted = [(k, n) for k, n in (("user", owner), ("group", group)) if n is not None]
        for kind, account in wanted:
            if not _ACCOUNT_RE.match(account):
                raise SignerError(self.name, f"{account!r} is not a valid {kind} name", path)
        lookups = [(k, n) for k, n in wanted if (k, n) not in self._ids]
        if lookups:
            command = "; ".join(
                f"getent {'passwd' if k == 'user' else 'group'} {shlex.quote(n)}" for k, n in lookups
            )
            _, out, _ = self._exec(command, doing="looking up owner and group", path=path)
            for line in out.decode("utf-8", "replace").splitlines():
                fields = line.split(":")
                if len(fields) >= 7 and ("user", fields[0]) in lookups:
                    self._ids[("user", fields[0])] = int(fields[2])
                elif len(fields) == 4 and ("group", fields[0]) in lookups:
                    self._ids[("group", fields[0])] = int(fields[2])
            for kind, account in lookups:
                if (kind, account) not in self._ids:
                    raise SignerError(self.name, f"no such {kind} {account!r} on {self.host}", path)
        return (
            self._ids[("user", owner)] if owner is not None else None,
            self._ids[("group", group)] if group is not None else None,
        )

    def write(self, file: ManagedFile) -> None:
        path = file.path
        if not posixpath.isabs(path) or posixpath.normpath(path) != path:
            raise SignerError(self.name, "refusing a relative or non-normalized path", path)
        directory, base = posixpath.split(path)
        if not base:
            raise SignerError(self.name, "refusing a path without a file name", path)
        if directory not in self._safe_dirs:
            self.ensure_safe_dir(directory)
        uid, gid = self._account_ids(file.owner, file.group, path)
        tmp = f"{directory}/.{base}.{secrets.token_hex(6)}.tmp"
        try:
            if self.sudo:
                self._upload_sudo(file, tmp)
            else:
                self._upload_sftp(file, tmp, uid, gid)
            self._commit(tmp, path)
        except BaseException:
            self._discard(tmp)
            raise
        # The rename is done; the directory is fsynced with the next command.
        self._unsynced_dirs.append(directory)

    def _upload_sftp(self, file: ManagedFile, tmp: str, uid: int | None, gid: int | None) -> None:
        sftp = self._sftp()
        try:
            handle = _sftp_create(sftp, tmp, 0o600)
        except Exception as exc:  # noqa: BLE001 - classified below
            raise self._sftp_failure(exc, "create the temporary file", file.path) from None
        try:
            handle.write(file.content)
            handle.flush()
            if uid is not None or gid is not None:
                if uid is None or gid is None:
                    current = handle.stat()
                    uid = current.st_uid if uid is None else uid
                    gid = current.st_gid if gid is None else gid
                handle.chown(uid, gid)  # before chmod: a chown may clear set-id bits
            handle.chmod(file.mode)
            self._fsync(sftp, handle, tmp)
            handle.close()
        except Exception as exc:  # noqa: BLE001 - classified below
            try:
                handle.close()
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
            if isinstance(exc, SignerError):
                raise
            raise self._sftp_failure(exc, "write", file.path) from None

    def _sftp_failure(self, exc: BaseException, doing: str, path: str) -> SignerError:
        """A SignerError for an SFTP failure: a lost connection, or a refusal."""
        transport = self._client.get_transport() if self._client is not None else None
        alive = transport is not None and transport.is_active()
        if not alive or isinstance(exc, (paramiko.SSHException, EOFError, socket.timeout,
                                         ConnectionError)):
            return self._lost(exc, f"trying to {doing}", path)
        if isinstance(exc, OSError):
            return SignerError(self.name, f"cannot {doing}: {_sftp_reason(exc)}", path)
        raise exc

    def _fsync(self, sftp: paramiko.SFTPClient, handle: SFTPFile, tmp: str) -> None:
        if self._fsync_extension:
            try:
                sftp._request(CMD_EXTENDED, "fsync@openssh.com", handle.handle)
                return
            except OSError:  # the server lacks the extension: IOError "Operation unsupported"
                self._fsync_extension = False
        self._check(f"sync -- {shlex.quote(tmp)}", "syncing the file", tmp)

    def _upload_sudo(self, file: ManagedFile, tmp: str) -> None:
        owner = f" -o {shlex.quote(file.owner)}" if file.owner is not None else ""
        group = f" -g {shlex.quote(file.group)}" if file.group is not None else ""
        qtmp = shlex.quote(tmp)
        # install creates TMP owner-only, copies stdin into it, then sets owner,
        # group and mode; sync then flushes it to disk.
        self._check(
            f"sudo -n install -m {file.mode & 0o7777:04o}{owner}{group} /dev/stdin {qtmp}"
            f" && sudo -n sync -- {qtmp}",
            "writing the temporary file",
            file.path,
            stdin=file.content,
        )

    def _commit(self, tmp: str, path: str) -> None:
        """Rename the complete temporary file over `path`: the atomic step."""
        if not self.sudo and self._posix_rename:
            sftp = self._sftp()
            try:
                sftp.posix_rename(tmp, path)
                return
            except Exception as exc:  # noqa: BLE001 - classified below
                unsupported = isinstance(exc, OSError) and "unsupported" in str(exc).lower()
                if not unsupported:
                    raise self._sftp_failure(exc, "rename into place", path) from None
                self._posix_rename = False
        self._check(
            f"{self._priv}mv -f -T -- {shlex.quote(tmp)} {shlex.quote(path)}", "renaming into place", path
        )

    def _discard(self, tmp: str) -> None:
        """Remove a temporary file after a failure, connecting again (once) if the
        connection was lost; a host that stays unreachable keeps the file."""
        try:
            self._exec(f"{self._priv}rm -f -- {shlex.quote(tmp)}", doing="removing the temporary file")
        except SignerError:
            pass

    def remove(self, path: str) -> None:
        if not posixpath.isabs(path):
            raise SignerError(self.name, "refusing to remove a relative path", path)
        self._check(f"{self._priv}rm -f -- {shlex.quote(path)}", "removing", path)
        self._unsynced_dirs.append(posixpath.dirname(path) or "/")

    # commands --------------------------------------------------------------

    def run(self, command: str, privileged: bool = True) -> None:
        """Run a command on the host; with `sudo: true`, through `sudo -n` unless `privileged` is False."""
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise SignerError(self.name, f"cannot parse command {command!r}: {exc}") from None
        if not argv:
            raise SignerError(self.name, "empty command")
        remote = " ".join(shlex.quote(a) for a in argv)
        if self.sudo and privileged:
            remote = f"sudo -n -- {remote}"
        status, out, err = self._exec(remote, doing=f"running {command!r}")
        if status != 0:
            detail = _tail(err) or _tail(out)
            code = f"exited with status {status}" if status >= 0 else "ended without an exit status"
            raise SignerError(
                self.name, f"command {command!r} on {self.host} {code}" + (f": {detail}" if detail else "")
            )

    def close(self) -> None:
        """Sync directories still pending (best effort), then close the connection."""
        if self._unsynced_dirs and self._client is not None:
            try:
                self._exec("true", doing="syncing directories")
            except SignerError:
                pass
        self._drop()
        self._safe_dirs.clear()
        self._unsynced_dirs.clear()


def file_digest_from_hash(sha256_hex: str, mode: int, owner: str, group: str) -> str:
    """`sync.file_digest`'s format from a sha256 computed on the host."""
    return f"{sha256_hex}:{mode & 0o7777:04o}:{owner}:{group}"


def _sftp_create(sftp: paramiko.SFTPClient, path: str, mode: int) -> SFTPFile:
    """Open `path` for writing with O_CREAT|O_EXCL and initial permissions `mode`.

    paramiko's `SFTPClient.open` sends no attributes, so the server would create
    the file with its default 0666 & ~umask and a private key would be readable
    until the chmod. The OPEN request can carry the permissions; this sends them.
    """
    attrs = SFTPAttributes()
    attrs.st_mode = mode
    kind, msg = sftp._request(CMD_OPEN, path, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_EXCL, attrs)
    if kind != CMD_HANDLE:
        raise paramiko.SFTPError("Expected handle")
    return SFTPFile(sftp, msg.get_binary(), "wb")


def _sftp_reason(exc: OSError) -> str:
    """An SFTP error without the file name paramiko adds (callers name the path)."""
    if exc.strerror:
        return exc.strerror
    return str(exc.args[0]) if exc.args else type(exc).__name__
