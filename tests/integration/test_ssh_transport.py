"""SshTransport against real OpenSSH servers, checked with the real OpenDKIM.

Two `sshd` instances on loopback play two signer hosts (`mta1`, `mta2`), each
with its own host key. They share this machine's filesystem, so each test
gives each host its own root directory under the suite's basetemp (OpenDKIM
and dkimroll refuse keys below world-writable /tmp, see tests/conftest.py).

The sudo tests create a throw-away unprivileged user (`dkimroll-test-<pid>`,
unique so that concurrent test runs do not collide) with a sudoers rule
limited to the programs the transport runs, and remove both afterwards.
"""

from __future__ import annotations

import base64
import grp
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from providers.errors import ConfigError, SignerError
from providers.signers.base import ManagedFile, SigningKey
from providers.signers.local import LocalTransport
from providers.signers.opendkim import OpenDkimLayout
from providers.signers.ssh import SshTransport
from providers.signers.sync import digest_matches, inspect, sync, wanted_digest
from tests.infra.ports import free_port
from tests.infra.sshd import SSHD, SshServer, keygen
from tests.infra.wait import ManagedProcess, wait_until

UNSAFE = stat.S_IWGRP | stat.S_IWOTH

pytestmark = [
    pytest.mark.skipif(not os.path.exists(SSHD), reason="OpenSSH sshd is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="the signer hosts log in as root"),
]


def _tree_is_safe(path: Path) -> bool:
    real = Path(os.path.realpath(path))
    return not any(os.stat(p).st_mode & UNSAFE for p in [real, *real.parents])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Under the suite's safe basetemp (tests/conftest.py), never below world-writable /tmp."""
    path = tmp_path_factory.mktemp("ssh-transport")
    path.chmod(0o700)
    assert _tree_is_safe(path), f"{path} or a directory above it is group/world writable"
    return path


@pytest.fixture(scope="module")
def mta1(work):
    with SshServer(work / "servers") as server:
        yield server


@pytest.fixture(scope="module")
def mta2(work):
    with SshServer(work / "servers") as server:
        yield server


@pytest.fixture
def root(work):
    path = Path(tempfile.mkdtemp(prefix="host-", dir=work))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _pem(private_key) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def pems() -> dict[str, str]:
    return {
        "rsa1": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "rsa1b": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "rsa2": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ed1": _pem(ed25519.Ed25519PrivateKey.generate()),
    }


@pytest.fixture
def keys(pems) -> list[SigningKey]:
    return [
        SigningKey("example.test", "s1", "rsa", pems["rsa1"], ("*@example.test", "*@customer.test")),
        SigningKey("example.org", "s2", "rsa", pems["rsa2"]),
        SigningKey("example.test", "e1", "ed25519", pems["ed1"]),
    ]


def connect(server: SshServer, name: str = "mta", **kw) -> SshTransport:
    settings = dict(known_hosts=str(server.known_hosts), identity_file=str(server.identity_file),
                    use_agent=False, timeout=20.0)
    settings.update(kw)
    return SshTransport(name, "127.0.0.1", server.port, **settings)


class Host:
    """One signer host: an sshd, a root directory standing for its '/', a layout."""

    def __init__(self, server: SshServer, root: Path, *, owner="root", group="daemon",
                 key_mode=0o640, **transport_kw) -> None:
        self.server = server
        self.root = root
        self.key_dir = root / "etc" / "opendkim" / "keys"
        self.table_dir = root / "etc" / "opendkim"
        self.marker = root / "reloaded"
        self.reload = f"/usr/bin/touch {self.marker}"
        self.layout = OpenDkimLayout(str(self.key_dir), str(self.table_dir), owner=owner,
                                     group=group, key_mode=key_mode)
        self.transport_kw = transport_kw

    def transport(self) -> SshTransport:
        return connect(self.server, **self.transport_kw)

    def sync(self, keys, previous=(), transport=None, **kw):
        t = transport or self.transport()
        try:
            return sync(t, self.layout, keys, previous, self.reload, **kw)
        finally:
            if transport is None:
                t.close()

    def key_path(self, selector: str, domain: str) -> Path:
        return self.key_dir / f"{selector}._domainkey.{domain}.private"

    def table(self, name: str) -> list[str]:
        return [l for l in (self.table_dir / name).read_text().splitlines() if not l.startswith("#")]

    def mtimes(self) -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in self.root.rglob("*") if p.is_file()}

    def temp_files(self) -> list[Path]:
        return [p for p in self.root.rglob(".*") if p.name.endswith(".tmp")]


# --- pushing ----------------------------------------------------------------------


def test_push_to_two_hosts(mta1, mta2, work, keys, pems):
    hosts = []
    for server in (mta1, mta2):
        host = Host(server, Path(tempfile.mkdtemp(prefix="host-", dir=work)))
        hosts.append(host)
        result = host.sync(keys)

        key_files = {
            host.key_path("s1", "example.test"): pems["rsa1"],
            host.key_path("s2", "example.org"): pems["rsa2"],
            host.key_path("e1", "example.test"): pems["ed1"],
        }
        tables = [host.table_dir / n for n in
                  ("KeyTable", "SigningTable", "KeyTable.ed25519", "SigningTable.ed25519")]
        assert set(result.written) == {str(p) for p in [*key_files, *tables]}
        assert result.reloaded and host.marker.exists()
        for path, pem in key_files.items():
            st = path.stat()
            assert stat.S_IMODE(st.st_mode) == 0o640
            assert (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name) == ("root", "daemon")
            assert path.read_text() == pem
        for path in tables:
            assert stat.S_IMODE(path.stat().st_mode) == 0o644
        # directories the sync created: keys 0711, tables 0755 (mkdir -m, no umask)
        assert stat.S_IMODE(host.key_dir.stat().st_mode) == 0o711
        assert stat.S_IMODE(host.table_dir.stat().st_mode) == 0o755
        assert host.table("SigningTable") == [
            "*@customer.test s1._domainkey.example.test",
            "*@example.test s1._domainkey.example.test",
            "*@example.org s2._domainkey.example.org",
        ]
        # The remote digests are byte for byte what LocalTransport computes for the
        # same files: the format sync.file_digest defines.
        assert LocalTransport("local").digests(list(result.digests)) == result.digests
        assert not any("PRIVATE" in d for d in result.digests.values())
        assert host.temp_files() == []
    # two hosts, two host keys
    assert mta1.fingerprint != mta2.fingerprint
    assert hosts[0].key_path("s1", "example.test").read_bytes() == \
        hosts[1].key_path("s1", "example.test").read_bytes()


def test_second_sync_writes_nothing_and_does_not_reload(mta1, root, keys):
    host = Host(mta1, root)
    first = host.sync(keys)
    host.marker.unlink()
    before = host.mtimes()

    second = host.sync(keys, previous=first.digests, previous_digests=first.digests)
    assert second.written == () and second.removed == ()
    assert not second.reloaded and not host.marker.exists()
    assert second.digests == first.digests
    assert host.mtimes() == before


def test_drift_is_repaired_and_stale_files_removed(mta1, root, keys, pems):
    host = Host(mta1, root)
    first = host.sync(keys)
    key = host.key_path("s1", "example.test")
    key.chmod(0o600)
    os.chown(key, 0, 0)
    (host.table_dir / "SigningTable").write_text("# edited by hand\n")
    host.marker.unlink()

    t = host.transport()
    try:
        assert inspect(t, [str(key)])[str(key)] != first.digests[str(key)]
        result = host.sync(keys, previous=first.digests, transport=t)
        assert set(result.written) == {str(key), str(host.table_dir / "SigningTable")}
        assert result.digests == first.digests and result.reloaded
        assert stat.S_IMODE(key.stat().st_mode) == 0o640
        assert grp.getgrgid(key.stat().st_gid).gr_name == "daemon"

        # dropping the Ed25519 key removes its file and table set
        rsa_only = [k for k in keys if k.key_type == "rsa"]
        result = host.sync(rsa_only, previous=result.digests, transport=t)
        assert set(result.removed) == {
            str(host.key_path("e1", "example.test")),
            str(host.table_dir / "KeyTable.ed25519"),
            str(host.table_dir / "SigningTable.ed25519"),
        }
        assert not host.key_path("e1", "example.test").exists()
        assert not (host.table_dir / "KeyTable.ed25519").exists()
    finally:
        t.close()


def test_owner_not_managed_is_ignored(mta1, root, keys):
    host = Host(mta1, root, owner=None, group=None, key_mode=0o600)
    first = host.sync(keys)
    assert first.written
    assert not host.sync(keys, previous=first.digests).written


# --- host keys -----------------------------------------------------------------


def _assert_nothing_written(host: Host) -> None:
    assert not (host.root / "etc").exists()
    assert not host.marker.exists()


def test_unknown_host_key_refused(mta1, root, keys):
    empty = root / "known_hosts"
    empty.write_text("")
    host = Host(mta1, root, known_hosts=str(empty))
    with pytest.raises(SignerError) as err:
        host.sync(keys)
    message = str(err.value)
    assert mta1.fingerprint in message and "ssh-ed25519" in message
    assert f'host_key_fingerprint: "{mta1.fingerprint}"' in message
    assert "unknown" in message and f"[127.0.0.1]:{mta1.port}" in message
    _assert_nothing_written(host)

    # a known_hosts file that does not exist is no different
    host = Host(mta1, root, known_hosts=str(root / "missing"))
    with pytest.raises(SignerError, match="does not exist"):
        host.sync(keys)
    _assert_nothing_written(host)


def test_changed_host_key_refused(mta1, mta2, root, keys):
    # mta2's key recorded under mta1's name: as if mta1 had been replaced
    other = root / "known_hosts"
    other.write_text(f"{mta1.host_key_name} {mta2.host_key_type} {mta2.host_key_blob}\n")
    host = Host(mta1, root, known_hosts=str(other))
    with pytest.raises(SignerError) as err:
        host.sync(keys)
    message = str(err.value)
    assert "CHANGED" in message and "man-in-the-middle" in message
    assert mta1.fingerprint in message  # offered
    assert mta2.fingerprint in message  # expected
    assert "ssh-keygen -R" in message and "host_key_fingerprint" in message
    _assert_nothing_written(host)


def test_pinned_fingerprint(mta1, mta2, root, keys):
    # the pin alone, without any known_hosts file
    host = Host(mta1, root, known_hosts=None, host_key_fingerprint=mta1.fingerprint)
    assert host.sync(keys).written
    # padded form, lower-case prefix: the same pin
    padded = "sha256:" + mta1.fingerprint.split(":", 1)[1] + "="
    host = Host(mta1, root, host_key_fingerprint=padded)
    assert host.sync(keys).written == ()

    # a pin that does not match is refused, even when known_hosts knows the host
    host = Host(mta1, root, known_hosts=str(mta1.known_hosts), host_key_fingerprint=mta2.fingerprint)
    with pytest.raises(SignerError) as err:
        host.transport().digests(["/etc/hostname"])
    assert "does not match the pinned" in str(err.value)
    assert mta1.fingerprint in str(err.value) and mta2.fingerprint in str(err.value)

    with pytest.raises(ConfigError) as bad:
        connect(mta1, host_key_fingerprint="MD5:aa:bb")
    assert bad.value.key == "dkimroll:signers.mta.host_key_fingerprint"


def test_hashed_known_hosts(mta1, root):
    hashed = root / "known_hosts"
    shutil.copy(mta1.known_hosts, hashed)
    proc = subprocess.run(["ssh-keygen", "-H", "-f", str(hashed)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "127.0.0.1" not in hashed.read_text()
    t = connect(mta1, known_hosts=str(hashed))
    try:
        assert t.digests([str(root / "nothing")]) == {str(root / "nothing"): None}
    finally:
        t.close()


# --- authentication ----------------------------------------------------------------


def test_passphrase_protected_identity(work, root):
    secret = "correct horse battery"
    with SshServer(work / "servers", client_passphrase=secret) as server:
        t = connect(server, passphrase=secret)
        try:
            assert t.digests([str(root / "x")]) == {str(root / "x"): None}
            assert secret not in repr(t)
        finally:
            t.close()
        with pytest.raises(SignerError, match="is encrypted: set its passphrase"):
            connect(server).digests(["/x"])
        with pytest.raises(SignerError) as err:
            connect(server, passphrase="wrong horse").digests(["/x"])
        assert "wrong passphrase" in str(err.value) and "wrong horse" not in str(err.value)


def test_agent_authentication(mta1, root, monkeypatch):
    agent_dir = Path(tempfile.mkdtemp(prefix="agent-", dir=root))
    sock = agent_dir / "agent.sock"
    agent = ManagedProcess(["ssh-agent", "-D", "-a", str(sock)], agent_dir / "agent.log", name="ssh-agent")
    with agent:
        wait_until(sock.exists, timeout=10, what="ssh-agent socket", abort_if=agent.exit_reason)
        env = dict(os.environ, SSH_AUTH_SOCK=str(sock))
        added = subprocess.run(["ssh-add", str(mta1.identity_file)], env=env, capture_output=True, text=True)
        assert added.returncode == 0, added.stderr
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        t = connect(mta1, identity_file=None, use_agent=True)
        try:
            assert t.digests([str(root / "x")]) == {str(root / "x"): None}
        finally:
            t.close()


def test_wrong_key_and_no_server(mta1, root):
    stranger = keygen(root / "stranger")
    with pytest.raises(SignerError) as err:
        connect(mta1, identity_file=str(stranger)).digests(["/x"])
    assert "public key authentication failed" in str(err.value)

    port = free_port()
    with pytest.raises(SignerError, match="cannot connect"):
        SshTransport("mta", "127.0.0.1", port, host_key_fingerprint=mta1.fingerprint,
                     identity_file=str(mta1.identity_file), use_agent=False, timeout=5).digests(["/x"])
    with pytest.raises(ConfigError):
        SshTransport("mta", "127.0.0.1", use_agent=False)  # no way to authenticate


# --- directory safety ------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_unsafe_key_dir_refused(mta1, root, keys, mode):
    host = Host(mta1, root)
    host.key_dir.mkdir(parents=True)
    host.key_dir.chmod(mode)
    with pytest.raises(SignerError) as err:
        host.sync(keys)
    assert err.value.path == str(host.key_dir)
    assert f"{mode:04o}" in str(err.value)
    assert list(host.key_dir.iterdir()) == []
    assert not (host.table_dir / "KeyTable").exists()
    assert not host.marker.exists()


def test_unsafe_parent_refused_before_creating(mta1, root, keys):
    host = Host(mta1, root)
    (root / "etc").mkdir()
    (root / "etc").chmod(0o757)
    with pytest.raises(SignerError) as err:
        host.sync(keys)
    assert err.value.path == str(root / "etc")
    assert "chmod o-w" in str(err.value)
    assert not (root / "etc" / "opendkim").exists()


def test_symlinked_dir_checked_at_its_target(mta1, root, keys):
    unsafe = root / "shared"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    (root / "etc").mkdir()
    (root / "etc" / "opendkim").symlink_to(unsafe)
    with pytest.raises(SignerError) as err:
        Host(mta1, root).sync(keys)
    assert err.value.path == str(unsafe)
    assert "resolves to" in str(err.value)


def test_keys_under_tmp_refused(mta1):
    t = connect(mta1)
    try:
        with pytest.raises(SignerError) as err:
            t.ensure_safe_dir("/tmp/dkimroll-never-created/keys")
        assert err.value.path == os.path.realpath("/tmp") and "sticky" in str(err.value)
        assert not os.path.exists("/tmp/dkimroll-never-created")
    finally:
        t.close()


# --- atomicity --------------------------------------------------------------------


def test_cut_connection_before_rename_keeps_old_files(mta1, root, keys, pems):
    """The connection dies after a new file is uploaded and fsynced but before
    its rename: the host keeps the old files, content and mode, no reload runs,
    the temporary file is cleaned up, and the next sync converges."""
    host = Host(mta1, root)
    first = host.sync(keys)
    host.marker.unlink()

    # rotate s1's key material and tighten every key's mode at once
    rotated = [SigningKey(k.domain, k.selector, k.key_type, pems["rsa1b"], k.sign_for)
               if k.selector == "s1" else k for k in keys]
    host.layout = OpenDkimLayout(str(host.key_dir), str(host.table_dir), owner="root",
                                 group="daemon", key_mode=0o600)
    t = host.transport()
    original = t._commit
    cut: list[tuple[str, int]] = []

    def commit_after_cut(tmp: str, path: str) -> None:
        assert os.path.exists(tmp)  # uploaded, not yet renamed
        cut.append((path, mta1.kill_children()))
        original(tmp, path)

    t._commit = commit_after_cut
    try:
        with pytest.raises(SignerError) as err:
            host.sync(rotated, previous=first.digests, transport=t)
    finally:
        t.close()
    assert len(cut) == 1 and cut[0][1] > 0
    assert err.value.path == cut[0][0]
    assert "lost" in str(err.value) and "PRIVATE" not in str(err.value)
    # every file is exactly as before: content, mode, owner
    assert LocalTransport("local").digests(list(first.digests)) == first.digests
    assert not host.marker.exists()
    assert host.temp_files() == []  # removed after connecting again

    again = host.sync(rotated, previous=first.digests)
    key = host.key_path("s1", "example.test")
    assert str(key) in again.written and again.reloaded
    assert key.read_text() == pems["rsa1b"]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert host.temp_files() == []


def test_failure_after_upload_removes_temp_file(mta1, root):
    t = connect(mta1)
    target = root / "k.private"
    target.write_bytes(b"old")
    target.chmod(0o600)

    def refuse(*args):
        raise SignerError("mta", "simulated failure", str(target))

    t._fsync = refuse
    try:
        with pytest.raises(SignerError, match="simulated failure"):
            t.write(ManagedFile(str(target), b"new", 0o600, "root", "root", True))
        assert [p.name for p in root.iterdir()] == ["k.private"]
        assert target.read_bytes() == b"old"
    finally:
        t.close()


def test_unknown_owner_fails_before_writing(mta1, root):
    t = connect(mta1)
    try:
        target = root / "keys" / "k.private"
        with pytest.raises(SignerError) as err:
            t.write(ManagedFile(str(target), b"key material\n", 0o600,
                                "no-such-user-dkimroll", None, True))
        assert "no such user 'no-such-user-dkimroll'" in str(err.value)
        assert err.value.path == str(target)
        assert list((root / "keys").iterdir()) == []
    finally:
        t.close()


# --- the rest of the protocol -----------------------------------------------------


def test_digests_symlinks_and_run(mta1, root):
    t = connect(mta1)
    try:
        path = root / "f"
        assert t.digests([str(path)]) == {str(path): None}
        f = ManagedFile(str(path), b"hello", mode=0o640, owner="root", group="daemon")
        t.write(f)
        assert t.digests([str(path)])[str(path)] == wanted_digest(f)

        # a symlink is reported as such (never followed, even to a device) and replaced
        path.unlink()
        (root / "target").write_bytes(b"hello")
        path.symlink_to(root / "target")
        (root / "zero").symlink_to("/dev/zero")
        got = t.digests([str(path), str(root / "zero")])
        assert all(d.startswith("symlink:") for d in got.values())
        assert not digest_matches(got[str(path)], wanted_digest(f))
        t.write(f)
        assert not path.is_symlink() and (root / "target").read_bytes() == b"hello"
        with pytest.raises(SignerError, match="not a regular file"):
            t.digests([str(root)])
        # thousands of paths: split into several commands, each below the kernel's
        # 128 KiB limit on one argument
        many = [f"{root}/missing-{i:05d}-{'x' * 80}" for i in range(3000)] + [str(root / "target")]
        got = t.digests(many)
        assert list(got) == many and sum(v is not None for v in got.values()) == 1
        with pytest.raises(SignerError, match="relative"):
            t.write(ManagedFile("relative/path", b"x"))

        t.remove(str(path))
        t.remove(str(path))  # absent: no error
        assert not path.exists()

        t.run(f"/usr/bin/touch '{root}/with space'")
        assert (root / "with space").exists()
        t.run(f"/bin/echo $HOME; touch {root}/shell-ran")  # words, not a shell line
        assert not (root / "shell-ran").exists()
        with pytest.raises(SignerError) as err:
            t.run("/bin/sh -c 'echo opendkim: reload refused >&2; exit 3'")
        assert "status 3" in str(err.value) and "reload refused" in str(err.value)
        with pytest.raises(SignerError, match="empty"):
            t.run("  ")
    finally:
        t.close()


# --- sudo -----------------------------------------------------------------------

SUDO = shutil.which("sudo")
SUDO_PROGRAMS = ("find", "realpath", "mkdir", "install", "sync", "mv", "rm", "touch")


def _sudo_path(program: str) -> str:
    """Where sudo finds `program` (Debian's secure_path order)."""
    for directory in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        if os.access(f"{directory}/{program}", os.X_OK):
            return f"{directory}/{program}"
    raise AssertionError(f"{program} not found")


@pytest.fixture(scope="module")
def sudo_user(work):
    """An unprivileged user whose sudo rights are exactly the transport's programs."""
    if SUDO is None or shutil.which("useradd") is None:
        pytest.skip("sudo or useradd is not installed")
    name = f"dkimroll-test-{os.getpid()}"
    programs = ", ".join(_sudo_path(p) for p in SUDO_PROGRAMS)
    rule = work / "sudoers"
    rule.write_text(f"{name} ALL=(root) NOPASSWD: {programs}\n")
    check = subprocess.run(["visudo", "-c", "-f", str(rule)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    created = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/", "--shell", "/bin/sh",
         "--password", "*", name], capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    sudoers = Path("/etc/sudoers.d") / name
    try:
        shutil.copy(rule, sudoers)
        sudoers.chmod(0o440)
        yield name
    finally:
        sudoers.unlink(missing_ok=True)
        # userdel refuses while a process of the user lives on (an sshd session
        # being torn down): retry until it is gone, within a bound.
        wait_until(lambda: subprocess.run(["userdel", name], capture_output=True).returncode in (0, 6),
                   timeout=20, what=f"userdel {name}")


@pytest.fixture(scope="module")
def sudo_host(work, sudo_user):
    with SshServer(work / "servers", users=("root", sudo_user)) as server:
        yield server


def test_sudo_mode_as_unprivileged_user(sudo_host, sudo_user, root, keys, pems):
    host = Host(sudo_host, root, user=sudo_user, sudo=True)
    result = host.sync(keys)
    assert result.reloaded and host.marker.exists()
    key = host.key_path("s1", "example.test")
    st = key.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name) == (0, "daemon")
    assert key.read_text() == pems["rsa1"]
    assert stat.S_IMODE(host.key_dir.stat().st_mode) == 0o711 and host.key_dir.stat().st_uid == 0
    assert LocalTransport("local").digests(list(result.digests)) == result.digests
    assert host.temp_files() == []

    host.marker.unlink()
    before = host.mtimes()
    again = host.sync(keys, previous=result.digests, previous_digests=result.digests)
    assert again.written == () and not again.reloaded and host.mtimes() == before

    # drift repaired and a file removed, through sudo
    key.chmod(0o644)
    rsa_only = [k for k in keys if k.key_type == "rsa"]
    third = host.sync(rsa_only, previous=result.digests)
    assert str(key) in third.written and stat.S_IMODE(key.stat().st_mode) == 0o640
    assert not host.key_path("e1", "example.test").exists()


def test_without_sudo_the_user_cannot_write(sudo_host, sudo_user, root, keys):
    root.chmod(0o755)  # so the user can look, not write
    host = Host(sudo_host, root, user=sudo_user, sudo=False)
    with pytest.raises(SignerError) as err:
        host.sync(keys)
    assert "Permission denied" in str(err.value)
    _assert_nothing_written(host)


def test_sudo_refusal_is_reported(sudo_host, sudo_user, root, keys):
    host = Host(sudo_host, root, user=sudo_user, sudo=True)
    host.reload = "/usr/bin/id"  # not in the sudoers rule
    with pytest.raises(SignerError) as err:
        host.sync(keys)
    assert "sudo" in str(err.value) and "/usr/bin/id" in str(err.value)


# --- end to end: OpenDKIM signs with what SSH pushed, dkimpy verifies via named ----------

OPENDKIM = shutil.which("opendkim") or ("/usr/sbin/opendkim" if os.path.exists("/usr/sbin/opendkim") else None)
NAMED = shutil.which("named") or ("/usr/sbin/named" if os.path.exists("/usr/sbin/named") else None)


def _txt_value(key: SigningKey) -> str:
    private = serialization.load_pem_private_key(key.private_key_pem.encode(), None)
    public = private.public_key()
    if key.key_type == "rsa":
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def _zone(domain: str, keys: list[SigningKey]) -> str:
    lines = [
        "$TTL 300",
        f"$ORIGIN {domain}.",
        f"@ IN SOA ns.{domain}. hostmaster.{domain}. ( 2026010100 3600 600 86400 300 )",
        f"@ IN NS ns.{domain}.",
        "ns IN A 127.0.0.1",
    ]
    for k in keys:
        if k.domain != domain:
            continue
        value = _txt_value(k)
        chunks = " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))
        lines.append(f"{k.selector}._domainkey IN TXT ( {chunks} )")
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(OPENDKIM is None or shutil.which("miltertest") is None or NAMED is None,
                    reason="opendkim, miltertest or named missing")
def test_opendkim_signs_with_tables_pushed_over_ssh(mta2, root, keys):
    from tests.infra.dkimverify import verify
    from tests.infra.named import NamedServer
    from tests.infra.opendkim import OpenDkimSigner

    # OpenDKIM (RequireSafeKeys) wants keys only root -- its user here -- can read
    host = Host(mta2, root, owner="root", group="root", key_mode=0o600)
    host.sync(keys)

    zone_dir = root / "zones"
    zone_dir.mkdir()
    zones = {}
    for domain in ("example.test", "example.org"):
        zones[domain] = zone_dir / f"{domain}.db"
        zones[domain].write_text(_zone(domain, keys))

    cases = [
        ("", "rsa-sha256", [
            ("Bob <bob@example.test>", "s1", "example.test"),
            ("Carol <carol@customer.test>", "s1", "example.test"),  # sign_for
            ("Alice <alice@example.org>", "s2", "example.org"),
        ]),
        (".ed25519", "ed25519-sha256", [("Bob <bob@example.test>", "e1", "example.test")]),
    ]
    with NamedServer(root / "named", zones) as named:
        for suffix, algorithm, senders in cases:
            with OpenDkimSigner(root / "run", host.table_dir / f"KeyTable{suffix}",
                                host.table_dir / f"SigningTable{suffix}", algorithm) as signer:
                signed = [signer.sign(sender, "rcpt@example.net", "hello", "body\n")
                          for sender, _, _ in senders]
                assert signer.require_safe_keys, signer.safe_keys_note
            for message, (sender, selector, domain) in zip(signed, senders):
                results = verify(message, named)
                assert results == [(True, selector, domain)], (sender, results, results[0].reason)


# --- end to end: rspamd signs with what SSH pushed --------------------------------

RSPAMD = shutil.which("rspamd")


class RspamdDaemon:
    """A real rspamd started on loopback with the distribution's rspamd.conf and a
    private LOCAL_CONFDIR (whose local.d/dkim_signing.conf dkimroll pushed). Its
    resolver points at the test nameserver, so it sends nothing off the machine."""

    def __init__(self, workdir: Path, local_confdir: Path, nameserver_port: int) -> None:
        self.workdir = workdir
        self.local_confdir = local_confdir
        self.port = free_port()
        override = local_confdir / "override.d"
        override.mkdir(parents=True, exist_ok=True)
        (override / "fuzzy_check.conf").write_text("enabled = false;\n")
        (override / "options.inc").write_text(
            f'dns {{ nameserver = ["127.0.0.1:{nameserver_port}"]; timeout = 1s; retransmits = 1; }}\n'
        )
        (override / "worker-normal.inc").write_text(f'bind_socket = "127.0.0.1:{self.port}";\n')
        (override / "worker-controller.inc").write_text(f'bind_socket = "127.0.0.1:{free_port()}";\n')
        (override / "worker-proxy.inc").write_text(f'bind_socket = "127.0.0.1:{free_port()}";\n')
        (override / "logging.inc").write_text('type = "console"; level = "info";\n')
        for sub in ("db", "run"):
            (workdir / sub).mkdir(parents=True, exist_ok=True)
        self.proc = ManagedProcess(
            [RSPAMD, "-f", "-i", "-u", "root", "-g", "root",
             f"--var=LOCAL_CONFDIR={local_confdir}", f"--var=DBDIR={workdir}/db",
             f"--var=RUNDIR={workdir}/run", f"--var=LOGDIR={workdir}", "-c", "/etc/rspamd/rspamd.conf"],
            workdir / "rspamd.log", cwd=workdir, name="rspamd",
        )

    def _request(self, path: str, data: bytes | None = None, headers: dict | None = None,
                 timeout: float = 10.0) -> bytes:
        import urllib.request

        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data,
                                         headers=headers or {})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
        with opener.open(request, timeout=timeout) as response:
            return response.read()

    def __enter__(self) -> "RspamdDaemon":
        self.proc.start()
        try:
            wait_until(lambda: self._request("/ping", timeout=1.0).strip() == b"pong", timeout=180,
                       interval=0.2, what="rspamd to answer /ping", abort_if=self.proc.exit_reason,
                       details=lambda: self.proc.log_text(tail=4000))
        except BaseException:
            self.proc.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.proc.stop(timeout=20)

    def sign(self, sender: str, headers: list[tuple[str, str]], body: str) -> tuple[bytes, list[str]]:
        """Scan a message as if submitted from 127.0.0.1; return it with rspamd's
        DKIM-Signature headers prepended, and the DKIM_SIGNED symbol's options."""
        import json

        raw = "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n" + body
        reply = json.loads(self._request(
            "/checkv2", raw.encode(),
            {"IP": "127.0.0.1", "From": sender, "Rcpt": "rcpt@example.net", "Hostname": "localhost"},
        ))
        signatures = reply.get("dkim-signature") or []
        if isinstance(signatures, str):
            signatures = [signatures]
        signed = "".join(f"DKIM-Signature: {s}\r\n" for s in signatures) + raw
        options = reply.get("symbols", {}).get("DKIM_SIGNED", {}).get("options", [])
        return signed.encode(), options


@pytest.mark.skipif(RSPAMD is None or NAMED is None or not Path("/etc/rspamd/rspamd.conf").exists(),
                    reason="rspamd or named missing")
def test_rspamd_signs_with_files_pushed_over_ssh(mta2, root, keys):
    """RspamdLayout's files, pushed over SSH, make a real rspamd sign with both
    the RSA and the Ed25519 selector (rspamd's own Ed25519 key format), map a
    sign_for sender to the key's domain, and leave unknown senders unsigned;
    dkimpy verifies every signature against the test nameserver."""
    from providers.signers.rspamd import RspamdLayout
    from tests.infra.dkimverify import verify
    from tests.infra.named import NamedServer

    confdir = root / "etc" / "rspamd"
    layout = RspamdLayout(str(root / "var" / "lib" / "rspamd" / "dkim"), str(confdir / "local.d"))
    t = connect(mta2)
    try:
        result = sync(t, layout, keys, (), None)
    finally:
        t.close()
    key_file = root / "var" / "lib" / "rspamd" / "dkim" / "example.test.e1.key"
    assert str(key_file) in result.written
    st = key_file.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640 and grp.getgrgid(st.st_gid).gr_name == "_rspamd"

    zone_dir = root / "zones"
    zone_dir.mkdir()
    zones = {}
    for domain in ("example.test", "example.org"):
        zones[domain] = zone_dir / f"{domain}.db"
        zones[domain].write_text(_zone(domain, keys))

    def headers(sender: str) -> list[tuple[str, str]]:
        return [("From", sender), ("To", "rcpt@example.net"), ("Subject", "hello"),
                ("Date", "Thu, 01 Jan 2026 00:00:00 +0000"),
                ("Message-ID", f"<{sender.replace('@', '.')}@dkimroll.test>")]

    with NamedServer(root / "named", zones) as named, \
            RspamdDaemon(root / "rspamd-run", confdir, named.port) as rspamd:
        for sender, want in [
            ("bob@example.test", [(True, "e1", "example.test"), (True, "s1", "example.test")]),
            ("carol@customer.test", [(True, "e1", "example.test"), (True, "s1", "example.test")]),
            ("alice@example.org", [(True, "s2", "example.org")]),
        ]:
            message, options = rspamd.sign(sender, headers(sender), "body\r\n")
            results = verify(message, named)
            assert sorted(results) == want, (sender, options, [r.reason for r in results],
                                              rspamd.proc.log_text(tail=3000))
        message, options = rspamd.sign("eve@elsewhere.test", headers("eve@elsewhere.test"), "body\r\n")
        assert options == [] and b"DKIM-Signature" not in message
