"""LocalTransport + OpenDkimLayout + sync on a real filesystem, checked with the real OpenDKIM.

Where the files go: OpenDKIM refuses a key when any directory above it can be
written by other users, sticky bit or not (dkimf_securefile() in opendkim.c),
and dkimroll refuses the same. pytest's stock tmp_path lives under /tmp (mode
1777), so tests/conftest.py moves the suite's basetemp under the user's cache;
the `root` fixture asserts that every directory above it is safe.
"""

from __future__ import annotations

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

from providers.errors import SignerError
from providers.signers.base import ManagedFile, SigningKey
from providers.signers.local import LocalTransport
from providers.signers.opendkim import OpenDkimLayout
from providers.signers.sync import (
    digest_matches,
    file_digest,
    inspect,
    sync,
    wanted_digest,
)

UNSAFE = stat.S_IWGRP | stat.S_IWOTH
ME = pwd.getpwuid(os.geteuid()).pw_name
MY_GROUP = grp.getgrgid(os.getegid()).gr_name


def _tree_is_safe(path: Path) -> bool:
    real = Path(os.path.realpath(path))
    return not any(os.stat(p).st_mode & UNSAFE for p in [real, *real.parents])


@pytest.fixture
def root(tmp_path):
    """tmp_path lives under the suite's safe basetemp (see tests/conftest.py)."""
    assert _tree_is_safe(tmp_path), f"{tmp_path} or a directory above it is group/world writable"
    return tmp_path


def _pem(private_key) -> str:
    return private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def pems() -> dict[str, str]:
    return {
        "rsa1": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "rsa2": _pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ed1": _pem(ed25519.Ed25519PrivateKey.generate()),
    }


@pytest.fixture
def keys(pems) -> list[SigningKey]:
    return [
        SigningKey("example.com", "s1", "rsa", pems["rsa1"]),
        SigningKey("example.org", "s2", "rsa", pems["rsa2"], ("alice@example.org", "*@example.org")),
        SigningKey("example.com", "e1", "ed25519", pems["ed1"]),
    ]


class Env:
    def __init__(self, root: Path, owner: str | None = ME, group: str | None = MY_GROUP):
        self.root = root
        self.key_dir = root / "etc" / "opendkim" / "keys"
        self.table_dir = root / "etc" / "opendkim"
        self.marker = root / "reloaded"
        self.reload = f"/usr/bin/touch {self.marker}"
        self.layout = OpenDkimLayout(str(self.key_dir), str(self.table_dir), owner=owner, group=group)
        self.transport = LocalTransport("local-test", reload=self.reload)

    def sync(self, keys, previous=(), **kw):
        return sync(self.transport, self.layout, keys, previous, self.reload, **kw)

    def key_path(self, selector: str, domain: str) -> Path:
        return self.key_dir / f"{selector}._domainkey.{domain}.private"

    def table(self, name: str) -> list[str]:
        text = (self.table_dir / name).read_text()
        return [l for l in text.splitlines() if not l.startswith("#")]

    def mtimes(self) -> dict[str, int]:
        return {
            str(p): p.stat().st_mtime_ns for p in self.root.rglob("*") if p.is_file()
        }


@pytest.fixture
def env(root) -> Env:
    return Env(root)


# ---------------------------------------------------------------------------


def test_first_sync_writes_keys_and_tables(env, keys, pems):
    result = env.sync(keys)

    key_files = {
        env.key_path("s1", "example.com"): pems["rsa1"],
        env.key_path("s2", "example.org"): pems["rsa2"],
        env.key_path("e1", "example.com"): pems["ed1"],
    }
    tables = [env.table_dir / n for n in ("KeyTable", "SigningTable", "KeyTable.ed25519", "SigningTable.ed25519")]
    assert set(result.written) == {str(p) for p in [*key_files, *tables]}
    # keys are written before the tables that name them
    assert all(p.endswith(".private") for p in result.written[:3])
    assert result.removed == ()
    assert result.reloaded and env.marker.exists()

    for path, pem in key_files.items():
        st = path.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert pwd.getpwuid(st.st_uid).pw_name == ME
        assert grp.getgrgid(st.st_gid).gr_name == MY_GROUP
        assert path.read_text() == pem
    for path in tables:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    # directories created by the sync: keys 0711 (not listable), tables 0755
    assert stat.S_IMODE(env.key_dir.stat().st_mode) == 0o711
    assert stat.S_IMODE(env.table_dir.stat().st_mode) == 0o755

    kd = env.key_dir
    assert env.table("KeyTable") == [
        f"s1._domainkey.example.com example.com:s1:{kd}/s1._domainkey.example.com.private",
        f"s2._domainkey.example.org example.org:s2:{kd}/s2._domainkey.example.org.private",
    ]
    assert env.table("SigningTable") == [
        "alice@example.org s2._domainkey.example.org",
        "*@example.com s1._domainkey.example.com",
        "*@example.org s2._domainkey.example.org",
    ]
    assert env.table("KeyTable.ed25519") == [
        f"e1._domainkey.example.com example.com:e1:{kd}/e1._domainkey.example.com.private"
    ]
    assert env.table("SigningTable.ed25519") == ["*@example.com e1._domainkey.example.com"]

    # the digests are the host's, carry no key material, and are what refresh sees
    assert set(result.digests) == set(result.written)
    assert inspect(env.transport, result.digests) == result.digests
    for path, digest in result.digests.items():
        assert "PRIVATE" not in digest
        assert digest.endswith(f":{ME}:{MY_GROUP}") or digest.split(":")[1] == "0644"
    # no temporary files left behind
    assert not [p for p in env.root.rglob(".*") if p.name.endswith(".tmp")]


def test_second_sync_writes_nothing(env, keys):
    first = env.sync(keys)
    env.marker.unlink()
    before = env.mtimes()

    second = env.sync(keys, previous=first.digests)
    assert second.written == () and second.removed == ()
    assert not second.reloaded and not env.marker.exists()
    assert second.digests == first.digests
    assert env.mtimes() == before

    # with the previous digests recorded, an unchanged host is not reloaded either
    third = env.sync(keys, previous=second.digests, previous_digests=second.digests)
    assert not third.reloaded and not env.marker.exists()


def test_mode_and_content_drift_is_repaired(env, keys, pems):
    first = env.sync(keys)
    env.marker.unlink()
    key = env.key_path("s1", "example.com")
    key.chmod(0o640)
    (env.table_dir / "SigningTable").write_text("# edited by hand\n")
    assert inspect(env.transport, [str(key)])[str(key)] != first.digests[str(key)]

    result = env.sync(keys, previous=first.digests)
    assert set(result.written) == {str(key), str(env.table_dir / "SigningTable")}
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_text() == pems["rsa1"]
    assert result.reloaded and env.marker.exists()
    assert result.digests == first.digests


def test_owner_not_managed_is_ignored(root, keys):
    env = Env(root, owner=None, group=None)
    first = env.sync(keys)
    assert first.written
    assert not env.sync(keys, previous=first.digests).written


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another group needs root")
def test_owner_and_group_applied(root, keys):
    try:
        grp.getgrnam("daemon")
    except KeyError:
        pytest.skip("no 'daemon' group")
    env = Env(root, owner="root", group="daemon")
    env.layout = OpenDkimLayout(
        str(env.key_dir), str(env.table_dir), owner="root", group="daemon", key_mode=0o640
    )
    env.sync(keys)
    st = env.key_path("s1", "example.com").stat()
    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name) == (0, "daemon")
    assert stat.S_IMODE(st.st_mode) == 0o640
    # a group change on the host is drift, repaired by the next sync
    os.chown(env.key_path("s1", "example.com"), 0, 0)
    again = env.sync(keys)
    assert again.written == (str(env.key_path("s1", "example.com")),)
    assert grp.getgrgid(env.key_path("s1", "example.com").stat().st_gid).gr_name == "daemon"


def test_removing_keys_removes_files_and_table_lines(env, keys):
    first = env.sync(keys)
    env.marker.unlink()

    rsa_only = [k for k in keys if k.selector != "e1" and k.domain != "example.org"]
    result = env.sync(rsa_only, previous=first.digests)

    gone = [
        env.key_path("s2", "example.org"),
        env.key_path("e1", "example.com"),
        env.table_dir / "KeyTable.ed25519",
        env.table_dir / "SigningTable.ed25519",
    ]
    assert set(result.removed) == {str(p) for p in gone}
    assert all(not p.exists() for p in gone)
    assert set(result.written) == {str(env.table_dir / "KeyTable"), str(env.table_dir / "SigningTable")}
    assert result.reloaded and env.marker.exists()
    assert env.table("KeyTable") == [
        f"s1._domainkey.example.com example.com:s1:{env.key_dir}/s1._domainkey.example.com.private"
    ]
    assert env.table("SigningTable") == ["*@example.com s1._domainkey.example.com"]
    assert set(result.digests) == {
        str(env.key_path("s1", "example.com")),
        str(env.table_dir / "KeyTable"),
        str(env.table_dir / "SigningTable"),
    }
    # an already-absent previous path is not "removed" and triggers no reload
    env.marker.unlink()
    again = env.sync(rsa_only, previous=first.digests)
    assert again.removed == () and not again.reloaded


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_unsafe_key_dir_refused_nothing_written(env, keys, mode):
    env.key_dir.mkdir(parents=True)
    env.key_dir.chmod(mode)
    with pytest.raises(SignerError) as err:
        env.sync(keys)
    assert err.value.path == str(env.key_dir)
    assert f"{mode:04o}" in str(err.value)
    assert "chmod" in str(err.value) or "sticky bit" in str(err.value)
    assert list(env.key_dir.iterdir()) == []
    assert not (env.table_dir / "KeyTable").exists()
    assert not env.marker.exists()


def test_unsafe_parent_refused_before_creating(env, keys):
    (env.root / "etc").mkdir()
    (env.root / "etc").chmod(0o757)
    with pytest.raises(SignerError) as err:
        env.sync(keys)
    assert err.value.path == str(env.root / "etc")
    assert not (env.root / "etc" / "opendkim").exists()


def test_symlinked_dir_checked_at_its_target(root, keys):
    unsafe = root / "shared"
    unsafe.mkdir()
    unsafe.chmod(0o777)
    (root / "etc").mkdir()
    (root / "etc" / "opendkim").symlink_to(unsafe)
    env = Env(root)
    with pytest.raises(SignerError) as err:
        env.sync(keys)
    assert err.value.path == str(unsafe)
    assert "resolves to" in str(err.value)


@pytest.mark.skipif(
    not (os.stat("/tmp").st_mode & stat.S_IWOTH and os.stat("/tmp").st_mode & stat.S_ISVTX),
    reason="/tmp is not world-writable sticky here",
)
def test_keys_under_tmp_refused_like_opendkim():
    base = Path(tempfile.mkdtemp())
    try:
        with pytest.raises(SignerError) as err:
            LocalTransport("t").ensure_safe_dir(str(base / "keys"))
        assert err.value.path == os.path.realpath("/tmp")
        assert "sticky" in str(err.value)
        assert not (base / "keys").exists()
    finally:
        shutil.rmtree(base)


def test_ensure_safe_dir_modes(root):
    t = LocalTransport("t")
    old = os.umask(0o077)
    try:
        t.ensure_safe_dir(str(root / "a" / "b"), 0o755)
    finally:
        os.umask(old)
    assert stat.S_IMODE((root / "a").stat().st_mode) == 0o755
    assert stat.S_IMODE((root / "a" / "b").stat().st_mode) == 0o755
    (root / "a").chmod(0o700)
    t.ensure_safe_dir(str(root / "a" / "b"))  # existing dirs keep their mode
    assert stat.S_IMODE((root / "a").stat().st_mode) == 0o700
    with pytest.raises(SignerError):
        t.ensure_safe_dir(str(root / "c"), 0o775)
    (root / "file").write_text("x")
    with pytest.raises(SignerError, match="not a directory"):
        t.ensure_safe_dir(str(root / "file" / "d"))


def test_failed_write_cleans_temp_file(env, keys, monkeypatch):
    import providers.atomic

    def refuse(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(providers.atomic.os, "fchown", refuse)
    with pytest.raises(SignerError) as err:
        env.sync(keys)
    assert "Operation not permitted" in str(err.value)
    assert "PRIVATE" not in str(err.value)
    assert err.value.path == str(env.key_path("e1", "example.com"))  # the first key written
    assert list(env.key_dir.iterdir()) == []  # neither the key nor its temporary file
    assert not (env.table_dir / "KeyTable").exists()
    assert not env.marker.exists()


def test_unknown_owner_fails_before_writing(root, keys):
    env = Env(root, owner="no-such-user-dkimroll", group=None)
    with pytest.raises(SignerError) as err:
        env.sync(keys)
    assert "no-such-user-dkimroll" in str(err.value)
    assert list(env.key_dir.iterdir()) == []
    assert not env.marker.exists()


def test_reload_failure_and_retry(env, keys, pems):
    flag = env.root / "fail-reload"
    flag.touch()
    script = env.root / "reload.sh"
    script.write_text(
        f'#!/bin/sh\nif [ -e "{flag}" ]; then echo "opendkim: reload refused" >&2; exit 3; fi\n'
        f'touch "{env.marker}"\n'
    )
    script.chmod(0o700)
    env.reload = str(script)

    with pytest.raises(SignerError) as err:
        env.sync(keys)
    message = str(err.value)
    assert "status 3" in message and "reload refused" in message
    assert "PRIVATE" not in message and pems["rsa1"][40:80] not in message
    assert env.key_path("s1", "example.com").exists()  # files were written

    # The retry finds nothing to write; given the last recorded digests (none,
    # since the failed update recorded nothing) it still reloads.
    flag.unlink()
    retry = env.sync(keys, previous_digests={})
    assert retry.written == () and retry.reloaded and env.marker.exists()


def test_run(root):
    t = LocalTransport("t")
    t.run(f"/usr/bin/touch '{root}/with space'")
    assert (root / "with space").exists()
    t.run(f"/bin/echo $HOME; touch {root}/shell-ran")  # no shell: ';' and '$' are plain arguments
    assert not (root / "shell-ran").exists()
    with pytest.raises(SignerError, match="not found"):
        t.run("/nonexistent/reload")
    with pytest.raises(SignerError, match="status 1"):
        t.run("/bin/false")
    with pytest.raises(SignerError, match="empty"):
        t.run("  ")
    t.close()


def test_digest_format(root):
    path = root / "f"
    t = LocalTransport("t")
    assert t.digests([str(path)]) == {str(path): None}
    f = ManagedFile(str(path), b"hello", mode=0o640, owner=ME, group=MY_GROUP)
    t.write(f)
    have = t.digests([str(path)])[str(path)]
    assert have == file_digest(b"hello", 0o640, ME, MY_GROUP) == wanted_digest(f)
    assert digest_matches(have, wanted_digest(ManagedFile(str(path), b"hello", mode=0o640)))
    assert not digest_matches(have, wanted_digest(ManagedFile(str(path), b"hello", mode=0o600)))
    assert not digest_matches(have, wanted_digest(ManagedFile(str(path), b"hello", 0o640, "nobody")))
    assert not digest_matches(have, wanted_digest(ManagedFile(str(path), b"hellO", 0o640)))
    assert not digest_matches(None, wanted_digest(f))
    # a symlink never matches, so a write replaces it by a regular file
    path.unlink()
    (root / "target").write_bytes(b"hello")
    (root / "target").chmod(0o640)
    path.symlink_to(root / "target")
    assert not digest_matches(t.digests([str(path)])[str(path)], wanted_digest(f))
    t.write(f)
    assert not path.is_symlink() and (root / "target").read_bytes() == b"hello"
    t.remove(str(path))
    t.remove(str(path))  # absent: no error
    assert not path.exists()


# --- the real OpenDKIM parser loads the tables --------------------------------

OPENDKIM = shutil.which("opendkim") or ("/usr/sbin/opendkim" if os.path.exists("/usr/sbin/opendkim") else None)


def _config_check(conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run([OPENDKIM, "-n", "-x", str(conf)], capture_output=True, text=True, timeout=30)


def _conf(env: Env, suffix: str, algorithm: str) -> Path:
    conf = env.root / f"opendkim{suffix}.conf"
    conf.write_text(
        "Syslog no\n"
        "RequireSafeKeys yes\n"
        f"KeyTable file:{env.table_dir}/KeyTable{suffix}\n"
        f"SigningTable refile:{env.table_dir}/SigningTable{suffix}\n"
        f"SignatureAlgorithm {algorithm}\n"
    )
    return conf


@pytest.mark.skipif(OPENDKIM is None, reason="opendkim is not installed")
def test_opendkim_config_check_loads_tables(env, keys):
    env.sync(keys)
    for suffix, algorithm in (("", "rsa-sha256"), (".ed25519", "ed25519-sha256")):
        proc = _config_check(_conf(env, suffix, algorithm))
        assert proc.returncode == 0, proc.stderr

    # only-Ed25519 host: the header-only RSA tables still load
    only_ed = [k for k in keys if k.key_type == "ed25519"]
    env.sync(only_ed)
    assert env.table("KeyTable") == []
    proc = _config_check(_conf(env, "", "rsa-sha256"))
    assert proc.returncode == 0, proc.stderr

    # the check really opens the tables: a missing one fails it
    (env.table_dir / "SigningTable").unlink()
    proc = _config_check(_conf(env, "", "rsa-sha256"))
    assert proc.returncode != 0 and "SigningTable" in proc.stderr


# --- end to end: the real milter signs with what sync put on disk ----------------

MILTERTEST = shutil.which("miltertest")


def _txt_records(keys: list[SigningKey]) -> dict[bytes, bytes]:
    import base64

    records = {}
    for k in keys:
        private = serialization.load_pem_private_key(k.private_key_pem.encode(), None)
        public = private.public_key()
        if k.key_type == "rsa":
            der = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            txt = f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
        else:
            raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            txt = f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
        records[f"{k.owner_name}.".encode()] = txt.encode()
    return records


@pytest.mark.skipif(OPENDKIM is None or MILTERTEST is None, reason="opendkim/miltertest missing")
def test_opendkim_signs_with_synced_keys(env, keys, pems):
    """Both instances (RSA tables, Ed25519 tables) load the synced keys with
    RequireSafeKeys on, pick them by SigningTable pattern, and sign verifiably."""
    import email
    import re

    import dkim

    from tests.infra.opendkim import OpenDkimSigner

    env.sync(keys)
    records = _txt_records(keys)

    def dnsfunc(name, timeout=5):
        return records.get(name if name.endswith(b".") else name + b".")

    # (tables suffix, algorithm, [(sender, d=, s=)]): one instance per table set
    # (each OpenDKIM instance takes ~5s to stop, so both RSA senders share one).
    instances = [
        ("", "rsa-sha256", [
            ("Alice <alice@example.org>", b"example.org", b"s2"),
            ("Bob <bob@example.com>", b"example.com", b"s1"),
        ]),
        (".ed25519", "ed25519-sha256", [("Bob <bob@example.com>", b"example.com", b"e1")]),
    ]
    for suffix, algorithm, cases in instances:
        signed = []
        with OpenDkimSigner(
            env.root / "run",
            env.table_dir / f"KeyTable{suffix}",
            env.table_dir / f"SigningTable{suffix}",
            algorithm,
        ) as signer:
            for sender, _, _ in cases:
                signed.append(signer.sign(sender, "rcpt@example.net", "hello", "body text\n"))
            assert "not secure" not in signer.log_text()
        for msg, (sender, domain, selector) in zip(signed, cases):
            header = email.message_from_bytes(msg)["DKIM-Signature"]
            sig = dkim.parse_tag_value(re.sub(r"\s+", "", str(header)).encode())
            assert (sig[b"d"], sig[b"s"], sig[b"a"]) == (domain, selector, algorithm.encode())
            assert dkim.verify(msg, dnsfunc=dnsfunc), (sender, algorithm)
