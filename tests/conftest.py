"""Suite-wide set-up: a private base directory for temporary files.

pytest's basetemp (.test-work/tmp, see pyproject.toml) lives inside the
repository rather than /tmp because OpenDKIM, and dkimroll like it, refuse
private keys below a world-writable directory such as /tmp.
"""

from __future__ import annotations

from pathlib import Path

WORK = Path(__file__).resolve().parent.parent / ".test-work"


def pytest_configure(config) -> None:
    WORK.mkdir(mode=0o700, exist_ok=True)
    WORK.chmod(0o700)
