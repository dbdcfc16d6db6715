"""Run the real Pulumi engine on a dkimroll project, offline, through the Automation API.

The program runs inline (in this process), so no Python language-host binary
is needed; the CLI still does all planning, diffing, state and secrets. The
environment is the same one `make env` exports, so plain `pulumi` commands see
the same backend, passphrase and settings.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pulumi import automation as auto

from providers.errors import DkimrollError

PROJECT = "dkimroll"
REPO = Path(__file__).resolve().parent.parent
# The demo's keys are throw-away, and its stack file (with the salt for this
# passphrase) is committed, so every clone can run it. Real stacks get a random
# passphrase of their own (see ensure_passphrase).
DEMO_STACK = "demo"
DEMO_PASSPHRASE = "dkimroll-demo-only"


class EngineError(DkimrollError):
    """The Pulumi CLI could not be found or an operation failed."""


@dataclass(frozen=True)
class Paths:
    """Where a project keeps its local state. Everything is git-ignored."""

    project_dir: Path

    @property
    def state_dir(self) -> Path:
        return self.project_dir / ".state"

    @property
    def backend_url(self) -> str:
        return f"file://{self.state_dir / 'backend'}"

    @property
    def pulumi_home(self) -> Path:
        return self.state_dir / "home"

    @property
    def passphrase_file(self) -> Path:
        return self.state_dir / "passphrase"


def pulumi_bin_dir() -> Path:
    """The pinned CLI: $DKIMROLL_PULUMI_BIN, else the cache built by scripts/ensure-pulumi.sh, else PATH."""
    explicit = os.environ.get("DKIMROLL_PULUMI_BIN")
    if explicit:
        return Path(explicit)
    version = os.environ.get("DKIMROLL_PULUMI_VERSION") or (REPO / ".pulumi-version").read_text().strip()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dkimroll" / "pulumi" / version / "bin"
    if (cache / "pulumi").exists():
        return cache
    found = shutil.which("pulumi")
    if found:
        return Path(found).parent
    raise EngineError("no Pulumi CLI found: run `make setup` (builds the pinned CLI) or install pulumi")


def ensure_passphrase(paths: Paths) -> None:
    """A random local passphrase for the passphrase secrets provider, kept 0600 beside the state.

    Only used when the operator has not set PULUMI_CONFIG_PASSPHRASE(_FILE).
    """
    if _operator_passphrase():
        return
    paths.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not paths.passphrase_file.exists():
        fd = os.open(paths.passphrase_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")


def _operator_passphrase() -> bool:
    return os.environ.get("PULUMI_CONFIG_PASSPHRASE") is not None or bool(
        os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE"))


def engine_env(paths: Paths, stack: str | None = None) -> dict[str, str]:
    """Environment for the CLI and the dynamic providers it starts."""
    bin_dir = pulumi_bin_dir()
    venv_bin = Path(sys.executable).parent
    env = {
        "PULUMI_BACKEND_URL": os.environ.get("PULUMI_BACKEND_URL", paths.backend_url),
        "PULUMI_HOME": os.environ.get("PULUMI_HOME", str(paths.pulumi_home)),
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
        "PULUMI_PYTHON_CMD": sys.executable,
        "PATH": os.pathsep.join([str(bin_dir), str(venv_bin), os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
    }
    if not _operator_passphrase():
        if stack == DEMO_STACK:
            env["PULUMI_CONFIG_PASSPHRASE"] = DEMO_PASSPHRASE
        else:
            env["PULUMI_CONFIG_PASSPHRASE_FILE"] = str(paths.passphrase_file)
    return env


def open_stack(stack: str, project_dir: Path | None = None,
               program: Callable[[], None] | None = None) -> auto.Stack:
    """Select (or create) a stack of the project in `project_dir`, with the inline program.

    The program gets the previous run's `ledger` output (key phases and their
    timestamps), read before the operation starts.
    """
    from dkimroll.program import run

    paths = Paths((project_dir or REPO).resolve())
    config_file = paths.project_dir / "stacks" / f"Pulumi.{stack}.yaml"
    if not config_file.exists():
        raise EngineError(f"no stack file {config_file} (stacks live in stacks/Pulumi.<stack>.yaml)")
    ensure_passphrase(paths)
    paths.pulumi_home.mkdir(parents=True, exist_ok=True)
    (paths.state_dir / "backend").mkdir(parents=True, exist_ok=True)
    env = engine_env(paths, stack)
    os.environ.update({k: v for k, v in env.items() if k in ("PATH", "PYTHONPATH")})
    os.environ["DKIMROLL_PROJECT_DIR"] = str(paths.project_dir)
    command = auto.PulumiCommand(root=str(pulumi_bin_dir().parent), skip_version_check=True)
    previous: dict = {}
    workspace = auto.LocalWorkspace(
        work_dir=str(paths.project_dir),
        program=program or (lambda: run(ledger=previous)),
        env_vars=env,
        pulumi_command=command,
    )
    selected = auto.Stack.create_or_select(stack, workspace)
    previous.update(read_ledger(selected))
    return selected


def read_ledger(stack: auto.Stack) -> dict:
    """The `ledger` output of the last successful run ({} for a new stack)."""
    outputs = stack.outputs()
    ledger = outputs.get("ledger")
    return dict(ledger.value) if ledger is not None and ledger.value else {}
