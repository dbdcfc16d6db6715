"""Bounded polling and daemon lifecycle for the integration harness.

* :func:`wait_until` -- the only sanctioned way for tests to wait for
  something; ``time.sleep`` is used solely as the pause *between* checks of
  a real condition, never as synchronisation by itself.
* :class:`ManagedProcess` -- a foreground daemon that cannot outlive the test
  run (used by ``named.py`` and ``opendkim.py``).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
    *,
    abort_if: Optional[Callable[[], Optional[str]]] = None,
    details: Optional[Callable[[], str]] = None,
) -> T:
    """Call ``predicate`` until it returns a truthy value; return that value.

    * ``timeout``  – overall deadline in seconds (monotonic clock).
    * ``interval`` – pause between attempts (capped by the remaining time).
    * ``what``     – human description used in the error message.
    * ``abort_if`` – optional callable checked before every attempt; if it
      returns a non-empty string the wait fails immediately with
      ``RuntimeError`` (e.g. "the daemon exited with status 1").
    * ``details``  – optional callable whose text (e.g. a daemon's captured
      stderr) is appended to the error message on failure.

    Exceptions raised by ``predicate`` count as "not yet"; the last one is
    chained to the ``TimeoutError`` so failures stay debuggable.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    attempts = 0

    def _extra() -> str:
        if details is None:
            return ""
        try:
            text = details()
        except Exception as exc:  # pragma: no cover - diagnostics only
            text = f"<details unavailable: {exc!r}>"
        return f"\n--- details ---\n{text}" if text else ""

    while True:
        if abort_if is not None:
            reason = abort_if()
            if reason:
                raise RuntimeError(f"gave up waiting for {what}: {reason}{_extra()}")
        attempts += 1
        try:
            result = predicate()
        except Exception as exc:  # noqa: BLE001 - "not ready yet"
            last_exc = exc
        else:
            if result:
                return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            msg = f"timed out after {timeout:g}s ({attempts} attempts) waiting for {what}"
            if last_exc is not None:
                msg += f"; last error: {last_exc!r}"
            raise TimeoutError(msg + _extra()) from last_exc
        time.sleep(min(interval, remaining))


# ---------------------------------------------------------------------------
# Daemon lifecycle shared by the named / opendkim harnesses.
# ---------------------------------------------------------------------------


_PR_SET_PDEATHSIG = 1
_live: "set[ManagedProcess]" = set()
_live_lock = threading.Lock()


def _child_setup() -> None:  # pragma: no cover - runs in the forked child
    """Ask the kernel to SIGKILL the daemon if the test process dies.

    This is the last line of defence against leaked daemons when pytest itself
    is killed (no finally/atexit runs then).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:
        pass


class ManagedProcess:
    """A foreground daemon whose stdout+stderr go to a log file.

    * own session/process group (so stop() reaches any children),
    * PR_SET_PDEATHSIG=SIGKILL (dies with the test process),
    * registered for an ``atexit`` sweep,
    * ``stop()`` is idempotent: SIGTERM, bounded wait, then SIGKILL.
    """

    def __init__(
        self,
        argv: Sequence[str],
        log_path: "os.PathLike[str] | str",
        *,
        cwd: "os.PathLike[str] | str | None" = None,
        env: Optional[Mapping[str, str]] = None,
        name: Optional[str] = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.name = name or Path(self.argv[0]).name
        self.proc: Optional[subprocess.Popen[bytes]] = None

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> "ManagedProcess":
        if self.proc is not None:
            raise RuntimeError(f"{self.name} already started")
        log = open(self.log_path, "ab", buffering=0)
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=self.env,
                start_new_session=True,
                preexec_fn=_child_setup,
                close_fds=True,
            )
        finally:
            log.close()  # the child holds its own descriptor
        with _live_lock:
            _live.add(self)
        return self

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc is not None else None

    def poll(self) -> Optional[int]:
        return self.proc.poll() if self.proc is not None else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_reason(self) -> Optional[str]:
        """For ``wait_until(abort_if=...)``: a message once the daemon died."""
        if self.proc is None:
            return f"{self.name} was never started"
        rc = self.proc.poll()
        if rc is None:
            return None
        return f"{self.name} (pid {self.proc.pid}) exited with status {rc}"

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except FileNotFoundError:
            return 0

    def log_text(self, since: int = 0, tail: Optional[int] = None) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(since)
                data = fh.read()
        except FileNotFoundError:
            return ""
        text = data.decode("utf-8", "replace")
        if tail is not None and len(text) > tail:
            text = "...\n" + text[-tail:]
        return text

    def stop(self, timeout: float = 10.0,
             wake: Optional[Callable[[], object]] = None) -> Optional[int]:
        """Terminate (then kill) the daemon and reap it. Safe to call twice.

        ``wake`` (if given) is called repeatedly after SIGTERM until the
        daemon exits, for daemons that only notice the signal when their
        accept loop wakes up (libmilter polls in 5 s slices; a connection
        wakes it at once).
        """
        proc = self.proc
        if proc is None:
            return None
        try:
            if proc.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    if wake is None:
                        proc.wait(timeout=timeout)
                    else:
                        wait_until(lambda: self._woken_exit(wake), timeout=timeout,
                                   interval=0.05, what=f"{self.name} to exit after SIGTERM")
                except (subprocess.TimeoutExpired, TimeoutError):
                    self._signal_group(signal.SIGKILL)
                    proc.wait(timeout=timeout)
            return proc.returncode
        finally:
            with _live_lock:
                _live.discard(self)

    def _woken_exit(self, wake: Callable[[], object]) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            return True
        try:
            wake()
        except Exception:
            pass
        return self.proc.poll() is not None

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            if self.proc.poll() is None:
                try:
                    self.proc.send_signal(sig)
                except ProcessLookupError:
                    pass

    def __enter__(self) -> "ManagedProcess":
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@atexit.register
def _sweep_live_processes() -> None:  # pragma: no cover - safety net
    with _live_lock:
        procs = list(_live)
    for p in procs:
        try:
            p.stop(timeout=3.0)
        except Exception:
            pass


__all__ = ["wait_until", "ManagedProcess"]
