"""Find loopback ports that are free for both TCP and UDP.

There is an unavoidable race between "we found a free port" and "the daemon
bound it"; callers that start daemons (see ``named.py``) detect a bind
failure and retry with a new port.
"""

from __future__ import annotations

import socket

LOOPBACK = "127.0.0.1"

# Ports handed out by this process; never hand out the same port twice in one
# test session, so two daemons started back to back cannot collide even if
# the first one has not bound its port yet.
_issued: set[int] = set()


def free_port(host: str = LOOPBACK, attempts: int = 200) -> int:
    """Return a port number on ``host`` that is currently free for TCP *and* UDP.

    The kernel picks a free TCP port (bind to port 0); we then check that UDP
    can bind the same number as well, retrying a bounded number of times.
    """
    for _ in range(attempts):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                udp.bind((host, port))
            except OSError:
                continue
            finally:
                udp.close()
        finally:
            tcp.close()
        if port in _issued:
            continue
        _issued.add(port)
        return port
    raise RuntimeError(f"could not find a port free for both TCP and UDP on {host}")


def free_ports(n: int, host: str = LOOPBACK) -> list[int]:
    """Return ``n`` distinct ports, each free for TCP and UDP."""
    return [free_port(host) for _ in range(n)]


__all__ = ["LOOPBACK", "free_port", "free_ports"]
