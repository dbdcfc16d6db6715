"""A GoDaddy v1 Domains API server of the project's own, on 127.0.0.1, for tests.

It follows GoDaddy's published API for DNS records, errors and limits included:

* `Authorization: sso-key KEY:SECRET`; unknown pairs get 401
  UNABLE_TO_AUTHENTICATE; an account flagged `access_denied` gets 403
  ACCESS_DENIED (GoDaddy's 2024 restriction of the DNS API to accounts with
  10+ domains or a Discount Domain Club plan).
* `GET|PUT|DELETE /v1/domains/{domain}/records/{type}/{name}`: GET lists the
  records at type+name (`[]` when none); PUT replaces all of them with the body
  (a non-empty list of `{data, ttl}`); DELETE removes all of them (204, or 404
  NOT_FOUND when there were none). A domain outside the account: 404
  UNKNOWN_DOMAIN.
* Validation: TTL below 600, `data` longer than 512 characters, malformed
  bodies: 422 INVALID_BODY with `fields` (`records[0].ttl`, ...).
* Rate limit: at most `budget` requests per window of `window_seconds` on the
  server's own clock, which only moves when a test calls `advance()` (or
  `reset_window()`), never with wall time; over budget: 429 TOO_MANY_REQUESTS
  with `retryAfterSec` in the body (and a Retry-After header when
  `retry_after_header` is set).
* `conflicts_after_write`: that many requests right after each write get the
  transient 409 CONFLICT GoDaddy answers while an edit propagates.
* `fail_next(status, body)`: queue canned error answers (5xx, odd 422s).

Tests read `log` (method, path, status per request), `writes()`, and inspect or
seed state directly with `records()`, `txt()` and `seed()`.

Run it as a context manager:

    with GoDaddyServer(domains=["example.com"]) as server:
        target = GoDaddyTarget("gd", "key", "secret", base_url=server.base_url)
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable
from urllib.parse import unquote, urlsplit

MIN_TTL = 600
MAX_DATA = 512
DEFAULT_KEY = "test-key"
DEFAULT_SECRET = "test-secret"


@dataclass
class Account:
    secret: str
    domains: set[str]
    access_denied: bool = False


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    status: int
    body: Any = None


@dataclass
class _State:
    accounts: dict[str, Account] = field(default_factory=dict)
    zones: dict[str, list[dict]] = field(default_factory=dict)  # domain -> records {type,name,data,ttl}
    log: list[LoggedRequest] = field(default_factory=list)
    clock: float = 0.0
    window_start: float = 0.0
    window_count: int = 0
    pending_conflicts: int = 0
    canned: list[tuple[str | None, int, dict, dict]] = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread
    block_on_close = True
    owner: "GoDaddyServer"


class GoDaddyServer:
    """The fake GoDaddy API; `base_url` is valid between start() and stop()."""

    def __init__(
        self,
        domains: Iterable[str] = ("example.com",),
        api_key: str = DEFAULT_KEY,
        api_secret: str = DEFAULT_SECRET,
        access_denied: bool = False,
        budget: int | None = None,
        window_seconds: float = 60.0,
        retry_after_in_body: bool = True,
        retry_after_header: bool = False,
        conflicts_after_write: int = 0,
    ) -> None:
        self._lock = threading.Lock()
        self._state = _State()
        self.budget = budget
        self.window_seconds = window_seconds
        self.retry_after_in_body = retry_after_in_body
        self.retry_after_header = retry_after_header
        self.conflicts_after_write = conflicts_after_write
        self.add_account(api_key, api_secret, domains, access_denied=access_denied)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    # -- lifecycle

    def start(self) -> "GoDaddyServer":
        if self._httpd is not None:
            raise RuntimeError("already started")
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.owner = self
        self._httpd = httpd
        host, port = httpd.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="godaddy-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=10)
        self._httpd = self._thread = None

    def __enter__(self) -> "GoDaddyServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration and direct state access (no HTTP, no budget)

    def add_account(self, api_key: str, api_secret: str, domains: Iterable[str], access_denied: bool = False) -> None:
        with self._lock:
            names = {_domain(d) for d in domains}
            self._state.accounts[api_key] = Account(api_secret, names, access_denied)
            for name in names:
                self._state.zones.setdefault(name, [])

    def seed(self, domain: str, name: str, data: str, ttl: int = 3600, type: str = "TXT") -> None:
        """Add one record as if made in GoDaddy's console (no validation, no log entry)."""
        with self._lock:
            self._state.zones.setdefault(_domain(domain), []).append(
                {"type": type.upper(), "name": _name(name), "data": data, "ttl": ttl}
            )

    def remove(self, domain: str, name: str, data: str, type: str = "TXT") -> None:
        """Delete one value by hand, as an operator would in the console."""
        with self._lock:
            zone = self._state.zones.setdefault(_domain(domain), [])
            zone[:] = [
                r for r in zone if not (r["type"] == type.upper() and r["name"] == _name(name) and r["data"] == data)
            ]

    def records(self, domain: str) -> list[dict]:
        """Every record of the domain, as copies {type, name, data, ttl}."""
        with self._lock:
            return [dict(r) for r in self._state.zones.get(_domain(domain), [])]

    def txt(self, domain: str, name: str) -> list[str]:
        """The TXT data values at `name` (relative, `@` for the apex), in server order."""
        return [r["data"] for r in self.records(domain) if r["type"] == "TXT" and r["name"] == _name(name)]

    @property
    def log(self) -> list[LoggedRequest]:
        with self._lock:
            return list(self._state.log)

    def writes(self) -> list[LoggedRequest]:
        """Requests that changed state (successful PUT and DELETE)."""
        return [r for r in self.log if r.method in ("PUT", "DELETE", "PATCH", "POST") and r.status < 300]

    def clear_log(self) -> None:
        with self._lock:
            self._state.log.clear()

    @property
    def clock(self) -> float:
        with self._lock:
            return self._state.clock

    def advance(self, seconds: float) -> None:
        """Move the server's rate-limit clock forward (a test's fake sleep calls this)."""
        with self._lock:
            self._state.clock += max(0.0, float(seconds))

    def reset_window(self) -> None:
        """Start a fresh rate-limit window now."""
        with self._lock:
            self._state.window_start = self._state.clock
            self._state.window_count = 0

    def fail_next(
        self,
        status: int,
        body: dict | None = None,
        headers: dict | None = None,
        count: int = 1,
        method: str | None = None,
    ) -> None:
        """The next `count` authenticated requests (of `method`, if given) get this answer instead."""
        with self._lock:
            for _ in range(count):
                self._state.canned.append((method, status, dict(body or {}), dict(headers or {})))

    # -- request handling (called from handler threads)

    def _handle(self, method: str, raw_path: str, headers: dict[str, str], raw_body: bytes) -> tuple[int, Any, dict]:
        path = urlsplit(raw_path).path
        with self._lock:
            status, body, extra = self._dispatch(method, path, headers, raw_body)
            logged_body = None
            if raw_body:
                try:
                    logged_body = json.loads(raw_body)
                except ValueError:
                    logged_body = raw_body.decode("utf-8", "replace")
            self._state.log.append(LoggedRequest(method, path, status, logged_body))
            return status, body, extra

    def _dispatch(self, method: str, path: str, headers: dict[str, str], raw_body: bytes) -> tuple[int, Any, dict]:
        st = self._state
        account = self._authenticate(headers.get("authorization", ""))
        if account is None:
            return _err(401, "UNABLE_TO_AUTHENTICATE", "Unauthorized : Could not authenticate API key/secret")
        if account.access_denied:
            return _err(403, "ACCESS_DENIED", "Authenticated user is not allowed access")

        # rate limit, on the server's own clock
        if self.budget is not None:
            if st.clock >= st.window_start + self.window_seconds:
                st.window_start, st.window_count = st.clock, 0
            if st.window_count >= self.budget:
                wait = max(1, math.ceil(st.window_start + self.window_seconds - st.clock))
                body = {"code": "TOO_MANY_REQUESTS", "message": "Too many requests received within interval"}
                if self.retry_after_in_body:
                    body["retryAfterSec"] = wait
                return 429, body, ({"Retry-After": str(wait)} if self.retry_after_header else {})
            st.window_count += 1

        for i, (only, status, body, extra) in enumerate(st.canned):
            if only is None or only == method:
                del st.canned[i]
                return status, body, extra
        if st.pending_conflicts > 0:
            st.pending_conflicts -= 1
            return _err(409, "CONFLICT", "Another change to this domain is still being processed")

        parts = path.split("/")
        # ['', 'v1', 'domains', domain, 'records', type, name]
        if len(parts) != 7 or parts[1] != "v1" or parts[2] != "domains" or parts[4] != "records":
            return _err(404, "NOT_FOUND", f"No such resource: {path}")
        domain, rtype, name = _domain(unquote(parts[3])), unquote(parts[5]).upper(), _name(unquote(parts[6]))
        if domain not in account.domains:
            return _err(404, "UNKNOWN_DOMAIN", "The given domain is not registered, or does not have a zone file")
        zone = st.zones.setdefault(domain, [])
        here = [r for r in zone if r["type"] == rtype and r["name"] == name]

        if method == "GET":
            return 200, [{"data": r["data"], "name": r["name"], "ttl": r["ttl"], "type": r["type"]} for r in here], {}
        if method == "DELETE":
            if not here:
                return _err(404, "NOT_FOUND", f"No {rtype} records found for {name}")
            zone[:] = [r for r in zone if r not in here]
            self._after_write()
            return 204, None, {}
        if method == "PUT":
            try:
                items = json.loads(raw_body or b"null")
            except ValueError:
                return _err(422, "INVALID_BODY", "Request body is not valid JSON")
            problems = _validate(items)
            if problems:
                return _err(
                    422, "INVALID_BODY", "Request body doesn't fulfill schema, see details in `fields`", problems
                )
            zone[:] = [r for r in zone if r not in here] + [
                {"type": rtype, "name": name, "data": item["data"], "ttl": item.get("ttl", 3600)} for item in items
            ]
            self._after_write()
            return 200, None, {}
        return _err(405, "METHOD_NOT_ALLOWED", f"{method} is not supported here")

    def _after_write(self) -> None:
        self._state.pending_conflicts = self.conflicts_after_write

    def _authenticate(self, header: str) -> Account | None:
        scheme, _, creds = header.partition(" ")
        if scheme != "sso-key" or ":" not in creds:
            return None
        key, _, secret = creds.strip().partition(":")
        account = self._state.accounts.get(key)
        if account is None or account.secret != secret:
            return None
        return account


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = 10
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alive threads at shutdown

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, body, extra = self.server.owner._handle(self.command, self.path, headers, raw)
        payload = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if payload:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_PUT = do_DELETE = do_POST = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


def _validate(items: Any) -> list[dict]:
    if not isinstance(items, list) or not items:
        return [{"path": "records", "code": "UNEXPECTED_TYPE", "message": "must be a non-empty array"}]
    problems = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            problems.append({"path": f"records[{i}]", "code": "UNEXPECTED_TYPE", "message": "must be an object"})
            continue
        data = item.get("data")
        if not isinstance(data, str):
            problems.append({"path": f"records[{i}].data", "code": "MISSING_VALUE", "message": "is required"})
        elif len(data) > MAX_DATA:
            problems.append(
                {"path": f"records[{i}].data", "code": "INVALID_VALUE",
                 "message": f"must be no longer than {MAX_DATA} characters"}
            )
        ttl = item.get("ttl", 3600)
        if isinstance(ttl, bool) or not isinstance(ttl, int):
            problems.append({"path": f"records[{i}].ttl", "code": "UNEXPECTED_TYPE", "message": "must be an integer"})
        elif ttl < MIN_TTL:
            problems.append({"path": f"records[{i}].ttl", "code": "INVALID_VALUE", "message": f"must be >= {MIN_TTL}"})
    return problems


def _err(status: int, code: str, message: str, fields: list[dict] | None = None) -> tuple[int, dict, dict]:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return status, body, {}


def _domain(domain: str) -> str:
    return domain.strip().rstrip(".").lower()


def _name(name: str) -> str:
    name = name.strip().rstrip(".").lower()
    return name or "@"


__all__ = ["Account", "DEFAULT_KEY", "DEFAULT_SECRET", "GoDaddyServer", "LoggedRequest"]
