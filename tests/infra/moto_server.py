"""A local Route53 for integration tests: moto's server mode, plus a fault-injecting proxy.

Usage::

    from tests.infra.moto_server import MotoServer, FaultProxy, dummy_aws_env

    for key, value in dummy_aws_env(tmp_path).items():
        monkeypatch.setenv(key, value)                  # never real credentials
    with MotoServer(tmp_path) as moto:                  # its own process, its own state
        zone_id = moto.create_zone("example.test")
        with FaultProxy(moto.port, [(400, "Throttling")]) as proxy:
            target = Route53Target("aws", endpoint_url=proxy.url)
            ...
            proxy.count("ChangeResourceRecordSets")     # requests that reached the proxy

moto runs as `python -m moto.server` in a process of its own (ManagedProcess:
own process group, dies with the test process), so two servers never share
state. Readiness is polled over HTTP with a deadline; nothing sleeps blindly.

moto does NOT enforce Route53's TXT limits (it accepts a 300-character
string); dkimroll enforces them itself (providers/dns/route53.py).
"""

from __future__ import annotations

import http.client
import http.server
import json
import os
import re
import sys
import threading
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Iterable, Optional

from .ports import LOOPBACK, free_port
from .wait import ManagedProcess, wait_until

__all__ = ["FaultProxy", "MotoServer", "dummy_aws_env", "route53_action"]

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def dummy_aws_env(workdir: "os.PathLike[str] | str") -> dict[str, str]:
    """Environment for boto3 in tests: fake keys, no config files, no instance metadata, no proxy."""
    base = Path(workdir)
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(base / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(base / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


# AWS variables that would let boto3 find credentials elsewhere; tests that want "no credentials" drop them.
CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
)


def _get(url: str, timeout: float = 2.0) -> int:
    with _NO_PROXY.open(url, timeout=timeout) as response:
        response.read()
        return response.status


class MotoServer:
    """`python -m moto.server` on 127.0.0.1 with a private port and state."""

    address = LOOPBACK

    def __init__(self, workdir: "os.PathLike[str] | str", start_timeout: float = 30.0) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.start_timeout = start_timeout
        self.port = 0
        self._proc: Optional[ManagedProcess] = None
        self._client = None

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def start(self) -> "MotoServer":
        if self._proc is not None:
            raise RuntimeError("moto server already started")
        last: Optional[BaseException] = None
        for _attempt in range(3):  # retry only when another process took the port first
            self.port = free_port()
            log = self.workdir / f"moto-{self.port}.log"
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            env.update(dummy_aws_env(self.workdir))
            proc = ManagedProcess(
                [sys.executable, "-m", "moto.server", "-p", str(self.port), "-H", self.address],
                log,
                cwd=self.workdir,
                env=env,
                name="moto_server",
            )
            self._proc = proc
            proc.start()
            try:
                wait_until(
                    lambda: _get(f"{self.url}/moto-api/") == 200,
                    timeout=self.start_timeout,
                    interval=0.05,
                    what=f"moto server on {self.url}",
                    abort_if=proc.exit_reason,
                    details=lambda: proc.log_text(tail=4000),
                )
                return self
            except BaseException as exc:
                text = proc.log_text().lower()
                proc.stop()
                self._proc = None
                last = exc
                if "address already in use" in text:
                    continue
                raise
        raise RuntimeError(f"moto server could not bind a port after retries: {last}")

    def stop(self) -> None:
        self._client = None
        if self._proc is not None:
            self._proc.stop()
            self._proc = None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.is_running()

    def __enter__(self) -> "MotoServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers for tests (they talk to moto directly, not through dkimroll)

    def reset(self) -> None:
        """Forget every zone and record (moto's own reset endpoint)."""
        request = urllib.request.Request(f"{self.url}/moto-api/reset", data=b"", method="POST")
        with _NO_PROXY.open(request, timeout=10) as response:
            response.read()

    def client(self):
        """A boto3 Route53 client talking straight to moto (dummy credentials, no retries); built once."""
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self):
        import boto3
        import botocore.config

        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client(
            "route53",
            endpoint_url=self.url,
            config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}),
        )

    def create_zone(self, name: str, private: bool = False, reference: Optional[str] = None) -> str:
        """Create a hosted zone; returns its short id (no /hostedzone/ prefix)."""
        kwargs: dict = {"Name": name, "CallerReference": reference or f"{name}-{private}-{os.urandom(6).hex()}"}
        if private:
            kwargs["HostedZoneConfig"] = {"PrivateZone": True, "Comment": "test"}
            kwargs["VPC"] = {"VPCRegion": "us-east-1", "VPCId": "vpc-12345678"}
        zone = self.client().create_hosted_zone(**kwargs)
        return zone["HostedZone"]["Id"].rsplit("/", 1)[-1]


# --- the fault-injecting proxy -----------------------------------------------------------

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}

_ROUTES = [
    ("POST", re.compile(r"^/[\d-]+/hostedzone/[^/]+/rrset/?$"), "ChangeResourceRecordSets"),
    ("GET", re.compile(r"^/[\d-]+/hostedzone/[^/]+/rrset/?$"), "ListResourceRecordSets"),
    ("GET", re.compile(r"^/[\d-]+/hostedzone/?$"), "ListHostedZones"),
    ("POST", re.compile(r"^/[\d-]+/hostedzone/?$"), "CreateHostedZone"),
    ("GET", re.compile(r"^/[\d-]+/hostedzone/[^/]+/?$"), "GetHostedZone"),
    ("DELETE", re.compile(r"^/[\d-]+/hostedzone/[^/]+/?$"), "DeleteHostedZone"),
    ("GET", re.compile(r"^/[\d-]+/hostedzonesbyname"), "ListHostedZonesByName"),
    ("GET", re.compile(r"^/[\d-]+/change/[^/]+$"), "GetChange"),
]

_MESSAGES = {
    "Throttling": "Rate exceeded",
    "ThrottlingException": "Rate exceeded",
    "PriorRequestNotComplete": "The request was rejected because Route 53 was still processing a prior request.",
    "RequestLimitExceeded": "Request limit exceeded.",
    "ServiceUnavailable": "Service unavailable",
    "InternalError": "An internal error occurred",
    "InvalidChangeBatch": "Invalid change batch",
}


def route53_action(method: str, path: str) -> str:
    """The Route53 API action of a REST request (`POST /2013-04-01/hostedzone/Z1/rrset/`...)."""
    bare = path.split("?", 1)[0]
    for verb, pattern, action in _ROUTES:
        if method == verb and pattern.match(bare):
            return action
    return f"{method} {bare}"


def error_xml(code: str, message: Optional[str] = None, sender: bool = True) -> bytes:
    """A Route53 (rest-xml) error body, as botocore parses it."""
    text = message if message is not None else _MESSAGES.get(code, code)
    kind = "Sender" if sender else "Receiver"
    return (
        '<?xml version="1.0"?>\n'
        '<ErrorResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
        f"<Error><Type>{kind}</Type><Code>{code}</Code><Message>{text}</Message></Error>"
        "<RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    ).encode()


def _pending_xml(change_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<GetChangeResponse xmlns="https://route53.amazonaws.com/doc/2013-04-01/">'
        f"<ChangeInfo><Id>/change/{change_id}</Id><Status>PENDING</Status>"
        "<SubmittedAt>2024-01-01T00:00:00Z</SubmittedAt></ChangeInfo></GetChangeResponse>"
    ).encode()


class FaultProxy:
    """An HTTP proxy in front of moto that fails the first requests of one action, then forwards.

    * `faults`: (HTTP status, error code) pairs, used up in order by the first
      requests of `fault_action` (default ChangeResourceRecordSets). A faulted
      request never reaches moto.
    * `pending`: how many GetChange requests to answer PENDING (later ones go to
      moto, which says INSYNC); while any are left, accepted changes are
      reported PENDING too, as real Route53 does.
    * Every request is counted per action (`count`), faulted or not; the
      bodies of ChangeResourceRecordSets requests that reached moto are kept
      in `change_bodies`.
    """

    def __init__(
        self,
        upstream_port: int,
        faults: Iterable[tuple[int, str]] = (),
        *,
        fault_action: str = "ChangeResourceRecordSets",
        pending: int = 0,
        upstream_host: str = LOOPBACK,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.fault_action = fault_action
        self._faults = list(faults)
        self._pending = pending
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self.change_bodies: list[bytes] = []
        self.log: list[tuple[str, int]] = []  # (action, status) in order
        self._server: Optional[http.server.ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None

    # -- configuration and counters

    def add_faults(self, faults: Iterable[tuple[int, str]]) -> None:
        with self._lock:
            self._faults.extend(faults)

    def set_pending(self, n: int) -> None:
        with self._lock:
            self._pending = n

    def count(self, action: str) -> int:
        with self._lock:
            return self._counts[action]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def port(self) -> int:
        assert self._server is not None, "proxy not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    # -- lifecycle

    def start(self) -> "FaultProxy":
        if self._server is not None:
            raise RuntimeError("proxy already started")
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def _handle(self) -> None:
                proxy._serve(self)

            do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _handle

        self._server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- one request

    def _serve(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        action = route53_action(handler.command, handler.path)
        fault: Optional[tuple[int, str]] = None
        pending = False
        with self._lock:
            self._counts[action] += 1
            if action == self.fault_action and self._faults:
                fault = self._faults.pop(0)
            elif action == "GetChange" and self._pending > 0:
                self._pending -= 1
                pending = True
        if fault is not None:
            status, code = fault
            self._respond(handler, action, status, error_xml(code, sender=status < 500))
            return
        if pending:
            change_id = handler.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
            self._respond(handler, action, 200, _pending_xml(change_id))
            return
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        connection = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            connection.request(handler.command, handler.path, body=body or None, headers=headers)
            response = connection.getresponse()
            data = response.read()
            out_headers = [(k, v) for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
            status = response.status
        except OSError as exc:
            self._respond(handler, action, 502, error_xml("InternalError", f"proxy: {exc}", sender=False))
            return
        finally:
            connection.close()
        with self._lock:
            self.forwarded[action] += 1
            if action == "ChangeResourceRecordSets":
                self.change_bodies.append(body)
                if self._pending > 0 and status == 200:
                    # moto reports every change INSYNC at once; real Route53 says PENDING first
                    data = data.replace(b"<Status>INSYNC</Status>", b"<Status>PENDING</Status>")
        self._respond(handler, action, status, data, out_headers)

    def _respond(
        self,
        handler: http.server.BaseHTTPRequestHandler,
        action: str,
        status: int,
        data: bytes,
        headers: Optional[list[tuple[str, str]]] = None,
    ) -> None:
        with self._lock:
            self.log.append((action, status))
        handler.send_response(status)
        sent_type = False
        for key, value in headers or []:
            handler.send_header(key, value)
            sent_type = sent_type or key.lower() == "content-type"
        if not sent_type:
            handler.send_header("Content-Type", "text/xml")
        if headers is None:
            handler.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
        handler.send_header("Content-Length", str(len(data)))
        handler.send_header("Connection", "close")  # one request per connection: no idle handler threads
        handler.close_connection = True
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)


def moto_api_json(server: MotoServer, path: str) -> object:
    """GET a moto-api JSON document (diagnostics)."""
    with _NO_PROXY.open(f"{server.url}{path}", timeout=10) as response:
        return json.loads(response.read())
