"""The local transport: the signer runs on the machine running dkimroll.

Files are replaced with `providers.atomic.atomic_write` (temporary file in the
same directory, fsync, chown/chmod, rename, directory fsync), so OpenDKIM never
reads a half-written key or table.

Directory safety follows OpenDKIM's own check (`dkimf_securefile()` in
opendkim.c, applied to key files when `RequireSafeKeys` is on, the default): it
resolves the key's path and walks every directory from `/` down, and refuses
the key if one of them is writable by other users -- the sticky bit does not
help, so a key anywhere under /tmp is refused -- or writable by a group that
holds anyone but the OpenDKIM user and root. dkimroll is at least as strict, so
a key it accepts is one OpenDKIM accepts: any directory on the way that is
group- or world-writable is refused. (OpenDKIM stops walking below a directory
that nobody else can traverse; dkimroll does not, and it does not know which
user OpenDKIM runs as, so it does not check directory owners.)
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import shlex
import stat
import subprocess
from pathlib import Path
from typing import Sequence

from providers.atomic import atomic_write
from providers.errors import ConfigError, SignerError
from providers.signers.base import ManagedFile
from providers.signers.sync import file_digest

_UNSAFE_DIR_BITS = stat.S_IWGRP | stat.S_IWOTH
_STDERR_LIMIT = 2000


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _oserror(exc: OSError) -> str:
    """An OSError without its file names (callers name the path themselves)."""
    name = errno.errorcode.get(exc.errno or 0, "")
    text = exc.strerror or exc.__class__.__name__
    return f"{text} ({name})" if name else text


class LocalTransport:
    """Transport to the local filesystem. `reload` is the signer's reload command."""

    def __init__(self, name: str, reload: str | None = None, timeout: float = 120.0) -> None:
        self.name = name
        self.reload = reload
        self.timeout = timeout

    def __enter__(self) -> "LocalTransport":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # reading ---------------------------------------------------------------

    def digests(self, paths: Sequence[str]) -> dict[str, str | None]:
        return {p: self._digest(p) for p in paths}

    def _digest(self, path: str) -> str | None:
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise SignerError(self.name, f"cannot stat: {_oserror(exc)}", path) from None
        owner, group = _user_name(st.st_uid), _group_name(st.st_gid)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            # Never equal to a wanted digest: the next write replaces the link by a file.
            return f"symlink:{mode:04o}:{owner}:{group}"
        if not stat.S_ISREG(st.st_mode):
            raise SignerError(self.name, "exists and is not a regular file", path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SignerError(self.name, f"cannot read: {_oserror(exc)}", path) from None
        with open(fd, "rb") as handle:
            st = os.fstat(handle.fileno())
            content = handle.read()
        return file_digest(
            content,
            stat.S_IMODE(st.st_mode),
            _user_name(st.st_uid),
            _group_name(st.st_gid),
        )

    # writing ---------------------------------------------------------------

    def write(self, file: ManagedFile) -> None:
        path = Path(file.path)
        if not path.is_absolute():
            raise SignerError(self.name, "refusing a relative path", file.path)
        self.ensure_safe_dir(str(path.parent))
        try:
            atomic_write(path, file.content, file.mode, file.owner, file.group)
        except ConfigError as exc:  # unknown owner or group on this host
            raise SignerError(self.name, f"{exc.key}: {exc.problem}", file.path) from None
        except OSError as exc:
            raise SignerError(self.name, f"cannot write: {_oserror(exc)}", file.path) from None

    def remove(self, path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise SignerError(self.name, f"cannot remove: {_oserror(exc)}", path) from None
        try:
            fd = os.open(os.path.dirname(path) or "/", os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass  # the unlink happened; a directory fsync is best effort

    # directories -----------------------------------------------------------

    def ensure_safe_dir(self, path: str, mode: int = 0o750) -> None:
        """Create `path` (and missing parents) with `mode`, then check it and every
        directory above it, symlinks resolved, is writable by its owner only."""
        if not os.path.isabs(path):
            raise SignerError(self.name, "refusing a relative directory", path)
        if mode & _UNSAFE_DIR_BITS:
            raise SignerError(
                self.name, f"refusing to create a group/world writable directory ({mode:04o})", path
            )
        target = Path(os.path.normpath(path))
        missing: list[Path] = []
        existing = target
        while not os.path.lexists(existing):
            missing.append(existing)
            existing = existing.parent
        if not existing.is_dir():
            raise SignerError(self.name, "exists and is not a directory", str(existing))
        # Check before creating anything, so nothing lands below an unsafe directory.
        self._check_tree(existing)
        for directory in reversed(missing):
            try:
                os.mkdir(directory, mode)
            except FileExistsError:
                continue  # created meanwhile; checked below like any existing one
            except OSError as exc:
                raise SignerError(
                    self.name, f"cannot create directory: {_oserror(exc)}", str(directory)
                ) from None
            os.chmod(directory, mode)  # mkdir's mode is filtered by the umask
        self._check_tree(target)

    def _check_tree(self, directory: Path) -> None:
        real = Path(os.path.realpath(directory))
        resolved = f" ({directory} resolves to {real})" if real != directory else ""
        for node in [*reversed(real.parents), real]:
            try:
                st = os.stat(node)
            except OSError as exc:
                raise SignerError(self.name, f"cannot stat: {_oserror(exc)}", str(node)) from None
            if not stat.S_ISDIR(st.st_mode):
                raise SignerError(self.name, f"is not a directory{resolved}", str(node))
            mode = stat.S_IMODE(st.st_mode)
            if mode & stat.S_IWOTH:
                if mode & stat.S_ISVTX:  # /tmp and the like: cannot be fixed in place
                    fix = (
                        "the sticky bit does not make it safe; keep keys and tables "
                        "in a directory tree only root and the signer can write"
                    )
                else:
                    fix = f"fix with 'chmod o-w {node}'"
                raise SignerError(
                    self.name,
                    f"directory has mode {mode:04o}: any user can write to it, so "
                    f"OpenDKIM (RequireSafeKeys) would refuse keys below it{resolved}; {fix}",
                    str(node),
                )
            if mode & stat.S_IWGRP:
                raise SignerError(
                    self.name,
                    f"directory has mode {mode:04o}: its group "
                    f"'{_group_name(st.st_gid)}' can write to it, so OpenDKIM "
                    f"(RequireSafeKeys) may refuse keys below it{resolved}; "
                    f"fix with 'chmod g-w {node}'",
                    str(node),
                )

    # commands --------------------------------------------------------------

    def run(self, command: str, privileged: bool = True) -> None:
        """Run a command here (`privileged` only matters to transports that use sudo)."""
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise SignerError(self.name, f"cannot parse command {command!r}: {exc}") from None
        if not argv:
            raise SignerError(self.name, "empty command")
        try:
            proc = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=self.timeout,
                check=False,
            )
        except FileNotFoundError:
            raise SignerError(self.name, f"command {command!r}: {argv[0]} not found") from None
        except PermissionError:
            raise SignerError(self.name, f"command {command!r}: {argv[0]} not executable") from None
        except subprocess.TimeoutExpired:
            raise SignerError(
                self.name, f"command {command!r} did not finish in {self.timeout:g}s"
            ) from None
        if proc.returncode != 0:
            detail = (proc.stderr or "").strip() or (proc.stdout or "").strip()
            if len(detail) > _STDERR_LIMIT:
                detail = "…" + detail[-_STDERR_LIMIT:]
            raise SignerError(
                self.name,
                f"command {command!r} exited with status {proc.returncode}"
                + (f": {detail}" if detail else ""),
            )

    def close(self) -> None:
        pass
