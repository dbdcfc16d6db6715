"""A throw-away dkimroll project for engine tests: Pulumi.yaml, one stack file, its own backend.

Every operation goes through `dkimroll.engine`, i.e. the real Pulumi CLI with
the inline program, exactly as `make up` does.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml
from pulumi import automation as auto

from dkimroll import engine

PULUMI_YAML = """name: dkimroll
runtime: python
stackConfigDir: stacks
"""


@dataclass
class RunResult:
    ok: bool
    output: str
    changes: dict[str, int]
    outputs: dict[str, Any]


class StackProject:
    """One project directory with one stack; relative paths in its config resolve inside it."""

    def __init__(self, root: Path, stack: str = "test") -> None:
        self.root = root
        self.stack = stack
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
        (root / "Pulumi.yaml").write_text(PULUMI_YAML)
        (root / "stacks").mkdir(exist_ok=True)

    @property
    def stack_file(self) -> Path:
        return self.root / "stacks" / f"Pulumi.{self.stack}.yaml"

    def write_config(self, config: dict[str, Any]) -> None:
        self.stack_file.write_text(yaml.safe_dump({"config": config}, sort_keys=True))

    def run(self, operation: str, *, expect_ok: bool = True, now: str | None = None,
            rotate: dict | None = None) -> RunResult:
        """Run up/preview/refresh/destroy; collect the full engine output.

        `rotate` ({"domain", "compromised"}) makes the run carry out `dkimroll rotate`'s request.
        """
        lines: list[str] = []
        with _env("DKIMROLL_NOW", now), _env("DKIMROLL_ROTATE", json.dumps(rotate) if rotate else None):
            stack = engine.open_stack(self.stack, self.root)
            try:
                if operation == "preview":
                    result = stack.preview(on_output=lines.append, color="never")
                    run = RunResult(True, "\n".join(lines), dict(result.change_summary or {}), {})
                else:
                    method = {"up": stack.up, "refresh": stack.refresh, "destroy": stack.destroy}[operation]
                    result = method(on_output=lines.append, color="never")
                    outputs = {k: v.value for k, v in (getattr(result, "outputs", None) or {}).items()}
                    run = RunResult(True, "\n".join(lines), dict(result.summary.resource_changes or {}), outputs)
            except auto.CommandError as exc:
                run = RunResult(False, "\n".join(lines) + "\n" + str(exc), {}, {})
        if expect_ok and not run.ok:
            raise AssertionError(f"pulumi {operation} failed:\n{run.output[-6000:]}")
        if not expect_ok and run.ok:
            raise AssertionError(f"pulumi {operation} unexpectedly succeeded:\n{run.output[-3000:]}")
        return run

    def set_secret(self, path: str, value: str) -> None:
        """`pulumi config set --secret --path <path> <value>`: encrypted in the stack file."""
        stack = engine.open_stack(self.stack, self.root)
        stack.set_config(path, auto.ConfigValue(value=value, secret=True), path=True)

    def outputs(self) -> dict[str, Any]:
        stack = engine.open_stack(self.stack, self.root)
        return {k: v.value for k, v in stack.outputs().items()}

    def raw_state_files(self) -> list[Path]:
        return [p for p in (self.root / ".state" / "backend").rglob("*") if p.is_file()]


@contextmanager
def _env(name: str, value: str | None) -> Iterator[None]:
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
