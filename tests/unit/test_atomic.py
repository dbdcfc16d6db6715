"""providers.atomic: crash-safe replacement and per-file writer locks."""

from __future__ import annotations

import fcntl
import os
import stat
import threading
from pathlib import Path

import pytest

from providers import atomic
from providers.atomic import atomic_write, file_lock, lock_path
from providers.errors import ConfigError


def _leftovers(directory: Path, name: str) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(f".{name}."))


def test_creates_file_with_content_and_default_mode(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    atomic_write(target, b"hello\n")
    assert target.read_bytes() == b"hello\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert _leftovers(tmp_path, "out.txt") == []


def test_mode_is_applied_regardless_of_umask(tmp_path: Path) -> None:
    target = tmp_path / "key.pem"
    old = os.umask(0o077)
    try:
        atomic_write(target, b"secret", mode=0o640)
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_replaces_existing_file_by_rename(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with open(target, "rb") as reader:
        inode = os.fstat(reader.fileno()).st_ino
        atomic_write(target, b"new", mode=0o600)
        # a reader that opened the old file still sees the old, complete content
        assert reader.read() == b"old"
    assert target.read_bytes() == b"new"
    assert target.stat().st_ino != inode
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_temp_file_is_dot_prefixed_in_same_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Path] = []
    atomic_write(tmp_path / "z", b"x", validate=seen.append)
    assert len(seen) == 1
    assert seen[0].parent == tmp_path
    assert seen[0].name.startswith(".z.")
    assert not seen[0].exists()  # renamed into place


def test_validate_sees_final_bytes_and_can_veto(tmp_path: Path) -> None:
    target = tmp_path / "zone"
    target.write_bytes(b"original")

    def veto(tmp: Path) -> None:
        assert tmp.read_bytes() == b"candidate"
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o640
        raise RuntimeError("checker said no")

    with pytest.raises(RuntimeError, match="checker said no"):
        atomic_write(target, b"candidate", mode=0o640, validate=veto)
    assert target.read_bytes() == b"original"
    assert _leftovers(tmp_path, "zone") == []


def test_failed_rename_removes_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"keep")

    def boom(src, dst):  # noqa: ANN001
        raise OSError("disk on fire")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk on fire"):
        atomic_write(target, b"lost")
    monkeypatch.undo()
    assert target.read_bytes() == b"keep"
    assert _leftovers(tmp_path, "f") == []


def test_failed_write_removes_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f"

    def no_fsync(fd):  # noqa: ANN001
        raise OSError("fsync failed")

    monkeypatch.setattr(atomic.os, "fsync", no_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        atomic_write(target, b"data")
    monkeypatch.undo()
    assert not target.exists()
    assert _leftovers(tmp_path, "f") == []


def test_unknown_owner_or_group_is_a_config_error_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "f"
    with pytest.raises(ConfigError, match="no such user"):
        atomic_write(target, b"x", owner="no-such-user-dkimroll")
    with pytest.raises(ConfigError, match="no such group"):
        atomic_write(target, b"x", group="no-such-group-dkimroll")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_chown_by_name_and_by_id(tmp_path: Path) -> None:
    import grp
    import pwd

    user = pwd.getpwnam("nobody")
    group = grp.getgrgid(user.pw_gid).gr_name
    target = tmp_path / "owned"
    atomic_write(target, b"x", mode=0o640, owner="nobody", group=group)
    info = target.stat()
    assert (info.st_uid, info.st_gid) == (user.pw_uid, user.pw_gid)
    assert stat.S_IMODE(info.st_mode) == 0o640

    atomic_write(target, b"y", owner=0, group=0)
    info = target.stat()
    assert (info.st_uid, info.st_gid) == (0, 0)


def test_lock_file_is_a_0600_sibling(tmp_path: Path) -> None:
    target = tmp_path / "example.com.zone"
    with file_lock(target):
        assert lock_path(target) == tmp_path / "example.com.zone.lock"
        assert stat.S_IMODE(lock_path(target).stat().st_mode) == 0o600
    assert lock_path(target).exists()  # kept: deleting it would break mutual exclusion
    assert not target.exists()


def test_lock_serializes_threads(tmp_path: Path) -> None:
    target = tmp_path / "f"
    inside = threading.Event()
    release = threading.Event()
    order: list[str] = []

    def first() -> None:
        with file_lock(target):
            order.append("first-in")
            inside.set()
            release.wait(5)
            order.append("first-out")

    def second() -> None:
        inside.wait(5)
        with file_lock(target):
            order.append("second-in")

    t1 = threading.Thread(target=first)
    t2 = threading.Thread(target=second)
    t1.start()
    t2.start()
    inside.wait(5)
    # While the first holder is inside, nobody else can take the lock ...
    with open(lock_path(target), "a") as probe, pytest.raises(BlockingIOError):
        fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
    assert order == ["first-in"]  # ... so the second thread is still waiting
    release.set()
    t1.join(5)
    t2.join(5)
    assert order == ["first-in", "first-out", "second-in"]


def test_lock_is_released_on_exception(tmp_path: Path) -> None:
    target = tmp_path / "f"
    with pytest.raises(ValueError):
        with file_lock(target):
            raise ValueError("inside")
    done = threading.Event()

    def grab() -> None:
        with file_lock(target):
            done.set()

    thread = threading.Thread(target=grab)
    thread.start()
    thread.join(5)
    assert done.is_set()


def test_concurrent_read_modify_write_under_lock_loses_nothing(tmp_path: Path) -> None:
    target = tmp_path / "counter"
    atomic_write(target, b"0")

    def bump(times: int) -> None:
        for _ in range(times):
            with file_lock(target):
                value = int(target.read_bytes())
                atomic_write(target, str(value + 1).encode())

    threads = [threading.Thread(target=bump, args=(25,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert target.read_bytes() == b"100"
