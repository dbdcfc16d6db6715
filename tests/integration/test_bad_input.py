"""Bad input fails before anything changes, naming the stack key and what would be valid."""

from __future__ import annotations

import copy

import pytest

from tests.infra.project import StackProject
from tests.integration.test_engine_end_to_end import snapshot

pytestmark = pytest.mark.engine

GOOD = {
    "dkimroll:dns": {"lab": {"type": "bind-file", "zone_dir": "zones", "create": True}},
    "dkimroll:signers": {"mta1": {"transport": "local", "root": "signers/mta1"}},
    "dkimroll:domains": {"good.test": {"dns": "lab", "signers": ["mta1"], "algorithm": "ed25519"}},
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> StackProject:
    proj = StackProject(tmp_path_factory.mktemp("bad-input"))
    proj.write_config(GOOD)
    proj.run("up")
    return proj


def _with_domain(name: str, **spec) -> dict:
    config = copy.deepcopy(GOOD)
    config["dkimroll:domains"][name] = {"dns": "lab", "signers": ["mta1"], **spec}
    return config


def _changed(field: str, value) -> dict:
    config = copy.deepcopy(GOOD)
    config["dkimroll:domains"]["good.test"][field] = value
    return config


CASES = {
    "invalid domain": (_with_domain("bad_domain..test"), "dkimroll:domains.bad_domain..test"),
    "invalid selector": (_changed("selector", "bad selector!"), "dkimroll:domains.good.test.selector"),
    "unknown algorithm": (_changed("algorithm", "dsa-2048"), "dkimroll:domains.good.test.algorithm"),
    "key under 1024 bits": (_changed("algorithm", "rsa-512"), "dkimroll:domains.good.test.algorithm"),
    "unknown DNS target": (_changed("dns", "nowhere"), "dkimroll:domains.good.test.dns"),
    "unknown signer": (_changed("signers", ["mta9"]), "dkimroll:domains.good.test.signers"),
    "unknown DNS target type": (
        {**GOOD, "dkimroll:dns": {"lab": {"type": "carrier-pigeon", "zone_dir": "zones"}}}, "dkimroll:dns.lab"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_fails_naming_the_key_and_changes_nothing(project, case):
    config, key = CASES[case]
    before = snapshot(project.root)
    project.write_config(config)
    try:
        for operation in ("preview", "up"):
            result = project.run(operation, expect_ok=False)
            assert key in result.output, result.output[-2000:]
            assert "Traceback" not in result.output
    finally:
        project.write_config(GOOD)
    assert snapshot(project.root) == before


def test_zone_file_with_syntax_error_fails_and_stays_byte_identical(project):
    zone = project.root / "zones" / "good.test.zone"
    broken = zone.read_text() + "this line is not a record ((\n"
    zone.write_text(broken)
    before = snapshot(project.root)
    project.write_config(_changed("testing", True))  # needs a DNS write
    try:
        for operation in ("preview", "up"):
            result = project.run(operation, expect_ok=False)
            assert "good.test.zone" in result.output and "lab" in result.output, result.output[-2000:]
    finally:
        project.write_config(GOOD)
    assert snapshot(project.root) == before
    assert zone.read_text() == broken
