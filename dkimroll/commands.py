"""`dkimroll status` and `dkimroll check`: read a stack, build the report, print it.

Both read what the last `up` recorded (the `ledger`, `records` and
`verification` outputs and the stack config); `check` also reads the private
keys from the encrypted state, only to sign a test message in memory. Neither
runs the program nor changes anything.

Exit codes: `status` returns 0 once it could report (its findings are
warnings in the table); `check` returns 0 when every record is served as
expected and every active key signs a message that verifies, else 1. Bad
stack config raises `ConfigError` (a DkimrollError) like the other commands.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Mapping

from dkimroll import engine, report
from dkimroll.config import NAMESPACE, StackConfig, parse_stack_config
from keys import clock

KEYRING_TYPE = "pulumi-python:dynamic/dkimroll:KeyRing"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value in exported state
STATUS_TIMEOUT = 2.0  # seconds per DNS query in `status`
CHECK_TIMEOUT = 3.0


def _print(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def raw_config(all_config: Mapping[str, Any]) -> dict[str, Any]:
    """`stack.get_all_config()` → the raw dict parse_stack_config takes (object values are JSON text)."""
    raw: dict[str, Any] = {}
    prefix = f"{NAMESPACE}:"
    for key, item in all_config.items():
        if not key.startswith(prefix):
            continue
        value = getattr(item, "value", item)
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                pass
        raw[key.removeprefix(prefix)] = value
    return raw


def target_settings(config: StackConfig, name: str, project_dir: Path) -> dict[str, Any]:
    """A target's settings as its DnsZone resource gets them: relative directories resolved."""
    return config.dns[name].settings(str(project_dir))


def reader_factory(config: StackConfig, project_dir: Path, timeout: float) -> report.ReaderFor:
    """(target, zone) → Reader, made once per zone, reading DNS the way the stack's gate does."""
    cache: dict[tuple[str, str], report.Reader] = {}

    def reader_for(target: str, zone: str) -> report.Reader:
        if (target, zone) not in cache:
            if target not in config.dns:
                cache[(target, zone)] = report.UnreachableReader(
                    f"dns target '{target}' is no longer in dkimroll:dns")
            else:
                cache[(target, zone)] = report.open_reader(
                    target, target_settings(config, target, project_dir), zone, timeout)
        return cache[(target, zone)]

    return reader_for


def _unwrap(value: Any) -> Any:
    """Exported state marks secrets as {SECRET_SIG: …, "value"|"plaintext": …}; return plain data."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            if "value" in value:
                return _unwrap(value["value"])
            plaintext = value.get("plaintext")
            if isinstance(plaintext, str):
                try:
                    return _unwrap(json.loads(plaintext))
                except ValueError:
                    return plaintext
            return None  # still encrypted: nothing usable
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def private_keys(deployment: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """(domain, selector) → PKCS#8 PEM, from the KeyRing resources of an exported (decrypted) state."""
    found: dict[tuple[str, str], str] = {}
    for resource in deployment.get("resources") or []:
        if resource.get("type") != KEYRING_TYPE:
            continue
        outputs = _unwrap(resource.get("outputs") or {})
        domain = outputs.get("domain")
        pems = outputs.get("private_keys") or {}
        if not domain or not isinstance(pems, dict):
            continue
        for selector, pem in pems.items():
            if isinstance(pem, str):
                found[(domain, selector)] = pem
    return found


class _StackData:
    def __init__(self, stack_name: str, project_dir: Path | None) -> None:
        self.project_dir = (project_dir or engine.REPO).resolve()
        self.stack = engine.open_stack(stack_name, self.project_dir)
        outputs = self.stack.outputs()

        def output(name: str, default: Any) -> Any:
            item = outputs.get(name)
            return item.value if item is not None and item.value is not None else default

        self.ledger: dict[str, Any] = dict(output("ledger", {}))
        self.records: list[dict[str, Any]] = list(output("records", []))
        self.verification: list[list[str]] = [list(v) for v in output("verification", [])]
        self.config = parse_stack_config(raw_config(self.stack.get_all_config()))


def status(stack_name: str, project_dir: Path | None, as_json: bool = False) -> int:
    """Print every key's phase, age, signers, next step and warnings (a table, or JSON)."""
    data = _StackData(stack_name, project_dir)
    reader_for = reader_factory(data.config, data.project_dir, STATUS_TIMEOUT)
    values, errors = report.observed_values(data.records, reader_for)
    rows = report.status_rows(data.config, data.ledger, data.records, data.verification, clock.now(),
                              values, errors)
    if as_json:
        _print(json.dumps(report.status_json(rows), indent=2))
    else:
        _print(report.render_table(rows))
    return 0


def check(stack_name: str, project_dir: Path | None) -> int:
    """Query DNS for every record and sign + verify a test message with every active key; 1 on any failure."""
    data = _StackData(stack_name, project_dir)
    keys = private_keys(data.stack.export_stack().deployment or {})
    result = report.check(data.ledger, data.records, keys,
                          reader_factory(data.config, data.project_dir, CHECK_TIMEOUT), clock.now())
    _print(report.render_check(result))
    return 0 if result.ok else 1
