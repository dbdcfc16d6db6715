"""Rendering of the rspamd layout: key files and local.d/dkim_signing.conf.

The last tests feed the rendered configuration to the real `rspamadm
configtest` when rspamd is installed (with fuzzy_check disabled, so the check
resolves no external server name).
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from providers.errors import ConfigError
from tests.pem import fresh_pem
from providers.signers.base import SigningKey
from providers.signers.rspamd import RspamdLayout, key_file_content

PEM = fresh_pem()  # made at run time; only its bytes matter here
ED = ed25519.Ed25519PrivateKey.generate()
ED_PEM = ED.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()


def key(domain: str, selector: str, key_type: str = "rsa", sign_for: tuple[str, ...] = ()) -> SigningKey:
    return SigningKey(domain, selector, key_type, ED_PEM if key_type == "ed25519" else PEM, sign_for)


@pytest.fixture
def layout() -> RspamdLayout:
    return RspamdLayout("/var/lib/rspamd/dkim", "/etc/rspamd/local.d")


def by_path(files):
    return {f.path: f for f in files}


def test_key_files_modes_and_paths(layout):
    files = by_path(layout.files([key("example.com", "s1"), key("example.com", "e1", "ed25519")]))
    rsa_file = files["/var/lib/rspamd/dkim/example.com.s1.key"]
    assert rsa_file.content == (PEM + "\n").encode()
    assert (rsa_file.mode, rsa_file.owner, rsa_file.group) == (0o640, "root", "_rspamd")
    assert rsa_file.secret and "PRIVATE" not in repr(rsa_file)
    conf = files["/etc/rspamd/local.d/dkim_signing.conf"]
    assert not conf.secret and conf.mode == 0o644 and conf.owner is None
    assert layout.key_dirs() == ["/var/lib/rspamd/dkim"]


def test_ed25519_key_in_rspamd_format(layout):
    """rspamd 3.x cannot load a PKCS#8 Ed25519 PEM: the file holds base64 of the
    libsodium secret key (32-byte seed, then the 32-byte public key), as
    `rspamadm dkim_keygen -t ed25519` writes it."""
    content = by_path(layout.files([key("example.com", "e1", "ed25519")]))[
        "/var/lib/rspamd/dkim/example.com.e1.key"
    ].content
    raw = base64.b64decode(content, validate=True)
    seed = ED.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    public = ED.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert raw == seed + public
    assert b"PRIVATE" not in content and not content.endswith(b"\n")


def test_ed25519_key_mismatch_refused():
    rsa_pem = fresh_pem("rsa-1024")
    bad = SigningKey("example.com", "e1", "ed25519", rsa_pem)
    with pytest.raises(ConfigError) as err:
        key_file_content(bad)
    assert err.value.key == "e1._domainkey.example.com"
    assert rsa_pem.strip().splitlines()[1] not in str(err.value)


def test_config_lists_every_selector_per_domain(layout):
    text = layout.render_config([
        key("example.com", "s1"), key("example.com", "e1", "ed25519"), key("Example.org", "s2"),
    ])
    assert text.startswith("# Managed by dkimroll")
    for setting in ('use_domain = "header";', "allow_username_mismatch = true;",
                    "use_esld = false;", "try_fallback = false;"):
        assert setting in text.splitlines()
    assert "use_domain_custom" not in text  # no sender rules beyond the domains
    assert (
        '  "example.com" {\n'
        "    selectors [\n"
        '      { path = "/var/lib/rspamd/dkim/example.com.e1.key"; selector = "e1"; },\n'
        '      { path = "/var/lib/rspamd/dkim/example.com.s1.key"; selector = "s1"; }\n'
        "    ]\n"
        "  }\n"
    ) in text
    assert '"example.org" {' in text and "/var/lib/rspamd/dkim/example.org.s2.key" in text


def test_rendering_is_deterministic(layout):
    keys = [key("b.example", "s1"), key("a.example", "s2"), key("a.example", "s1")]
    assert layout.render_config(keys) == layout.render_config(list(reversed(keys)))


def test_sign_for_adds_sender_map(layout):
    text = layout.render_config([
        key("example.com", "s1", sign_for=("*@example.com", "*@Customer.example", "ceo@other.example")),
        key("example.com", "e1", "ed25519", sign_for=("*@example.com", "*@customer.example")),
        key("example.org", "s2"),
    ])
    block = text[text.index("use_domain_custom = <<EOD"):text.index("\nEOD\n")]
    assert '["ceo@other.example"] = "example.com",' in block
    assert '["customer.example"] = "example.com",' in block
    assert '["example.com"] = "example.com",' in block
    assert '["example.org"] = "example.org",' in block  # the default rule of a plain key
    # exact addresses are looked up before domains
    assert block.index("by_address[addr]") < block.index("by_domain[domain]")


def test_sign_for_only_other_domain_does_not_sign_own(layout):
    text = layout.render_config([key("example.com", "s1", sign_for=("*@customer.example",))])
    assert '["customer.example"] = "example.com",' in text
    assert '["example.com"]' not in text


@pytest.mark.parametrize("pattern", ["*", "*@*.example.com", "a*@example.com", "user", "@example.com",
                                     'x"y@example.com'])
def test_inexpressible_patterns_refused(layout, pattern):
    with pytest.raises(ConfigError) as err:
        layout.files([key("example.com", "s1", sign_for=(pattern,))])
    assert err.value.key == "s1._domainkey.example.com"
    assert "user@domain" in str(err.value)


def test_pattern_claimed_by_two_domains_refused(layout):
    with pytest.raises(ConfigError, match="also claimed by"):
        layout.files([
            key("example.com", "s1", sign_for=("*@shared.example",)),
            key("example.org", "s1", sign_for=("*@shared.example",)),
        ])


@pytest.mark.parametrize(
    "bad",
    [
        dict(key_dir="relative/keys"),
        dict(key_dir="/var/lib/rspamd/$domain"),
        dict(config_dir='/etc/rspamd/"local.d'),
        dict(key_mode=0o644),
        dict(key_mode=0o660),
        dict(config_mode=0o666),
    ],
)
def test_bad_settings_refused(bad):
    settings = dict(key_dir="/var/lib/rspamd/dkim", config_dir="/etc/rspamd/local.d")
    settings.update(bad)
    with pytest.raises(ConfigError):
        RspamdLayout(**settings)


def test_bad_keys_refused(layout):
    with pytest.raises(ConfigError, match="not a valid selector"):
        layout.files([key("example.com", "bad selector")])
    with pytest.raises(ConfigError, match="A-label"):
        layout.files([key("exämple.com", "s1")])
    with pytest.raises(ConfigError, match="share"):
        layout.files([key("example.com", "s1"), key("EXAMPLE.com", "s1")])
    with pytest.raises(ConfigError, match="key type"):
        layout.files([key("example.com", "s1", "dsa")])
    secret = "not a pem but a secret"
    with pytest.raises(ConfigError) as err:
        layout.files([SigningKey("example.com", "s1", "rsa", secret)])
    assert secret not in str(err.value)


# --- the real rspamadm ---------------------------------------------------------------

RSPAMADM = shutil.which("rspamadm")


def _configtest(local_confdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RSPAMADM, f"--var=LOCAL_CONFDIR={local_confdir}", "configtest", "-s", "-c",
         "/etc/rspamd/rspamd.conf"],
        capture_output=True, text=True, timeout=120, cwd=local_confdir,
    )


@pytest.fixture
def confdir(tmp_path):
    path = tmp_path / "rspamd-conf"
    path.mkdir()
    (path / "local.d").mkdir()
    (path / "override.d").mkdir()
    # fuzzy_check would resolve rspamd.com's fuzzy servers while loading
    (path / "override.d" / "fuzzy_check.conf").write_text("enabled = false;\n")
    return path


@pytest.mark.skipif(RSPAMADM is None or not Path("/etc/rspamd/rspamd.conf").exists(),
                    reason="rspamd is not installed")
@pytest.mark.parametrize("with_sender_map", [False, True])
def test_rspamadm_configtest_accepts_config(confdir, with_sender_map):
    layout = RspamdLayout("/var/lib/rspamd/dkim", str(confdir / "local.d"))
    rules = ("*@example.com", "*@customer.example", "ceo@other.example") if with_sender_map else ()
    keys = [key("example.com", "s1", sign_for=rules), key("example.com", "e1", "ed25519", rules),
            key("example.org", "s2")]
    conf = by_path(layout.files(keys))[layout.config_path]
    Path(conf.path).write_bytes(conf.content)
    proc = _configtest(confdir)
    assert proc.returncode == 0 and "syntax OK" in proc.stdout, proc.stdout + proc.stderr

    dump = subprocess.run(
        [RSPAMADM, f"--var=LOCAL_CONFDIR={confdir}", "configdump", "-c", "/etc/rspamd/rspamd.conf",
         "dkim_signing"], capture_output=True, text=True, timeout=120, cwd=confdir,
    )
    assert dump.returncode == 0, dump.stderr
    assert 'path = "/var/lib/rspamd/dkim/example.com.e1.key";' in dump.stdout
    assert "use_esld = false;" in dump.stdout
    assert ("use_domain_custom" in dump.stdout) == with_sender_map


@pytest.mark.skipif(RSPAMADM is None or not Path("/etc/rspamd/rspamd.conf").exists(),
                    reason="rspamd is not installed")
def test_rspamadm_configtest_catches_breakage(confdir):
    """The check above is not vacuous: a broken file fails it."""
    (confdir / "local.d" / "dkim_signing.conf").write_text("domain { example.com { selectors [ }\n")
    assert _configtest(confdir).returncode != 0
