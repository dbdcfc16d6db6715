"""Crash-safe file replacement and per-file writer locks.

`atomic_write` never leaves a half-written file behind: readers see either the
old content or the new one. The data goes to a dot-prefixed temporary file in
the same directory (same filesystem, so the rename is atomic), is fsynced with
its final mode and ownership, renamed over the target, and the directory is
fsynced so the rename itself survives a crash.

`file_lock` serializes writers of one file (processes and threads alike: each
call opens its own file description, and flock locks conflict between those).
"""

from __future__ import annotations

import errno
import fcntl
import grp
import os
import pwd
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from providers.errors import ConfigError

__all__ = ["atomic_write", "file_lock", "lock_path"]


def atomic_write(
    path: Path | str,
    data: bytes,
    mode: int = 0o644,
    owner: str | int | None = None,
    group: str | int | None = None,
    *,
    validate: Callable[[Path], None] | None = None,
) -> None:
    """Replace `path` with `data` atomically.

    `owner` / `group` are user and group names (or numeric ids); unknown names
    raise ConfigError before anything is written. `validate`, when given, is
    called with the path of the complete, fsynced temporary file just before the
    rename, so an external checker can inspect exactly the bytes that will be
    installed; if it raises, the temporary file is removed and the target is
    left untouched. On any error the temporary file is removed.
    """
    path = Path(path)
    uid = _uid(owner)
    gid = _gid(group)
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        with open(fd, "wb", closefd=True) as handle:
            handle.write(data)
            handle.flush()
            if uid != -1 or gid != -1:
                # chown before chmod: a chown may clear set-id bits of the mode.
                os.fchown(handle.fileno(), uid, gid)
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        if validate is not None:
            validate(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


def lock_path(path: Path | str) -> Path:
    """The sibling lock file of `path`: `<path>.lock`."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


@contextmanager
def file_lock(path: Path | str) -> Iterator[None]:
    """Hold an exclusive flock on `<path>.lock` (created 0600) for the duration of the block.

    The lock file is never deleted: unlinking it would let a waiter and a new
    locker hold locks on two different inodes at the same time.
    """
    fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the flock


def _uid(owner: str | int | None) -> int:
    if owner is None:
        return -1
    if isinstance(owner, int):
        return owner
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise ConfigError("owner", f"no such user {owner!r}") from None


def _gid(group: str | int | None) -> int:
    if group is None:
        return -1
    if isinstance(group, int):
        return group
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ConfigError("group", f"no such group {group!r}") from None


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems cannot fsync a directory
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)
