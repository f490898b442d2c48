"""Worker processes that each listen on a socket of their own, so the kernel spreads connections.

Uvicorn's workers share one listening socket and race to accept from it: a client that opens
its connections in a burst (a load balancer, a benchmark, a connection pool) can land all of
them on one worker while the others idle, for as long as the connections live (measured: 16
keep-alive connections, one of two workers at 1.06 cores, the other at 0). With
``SO_REUSEPORT`` every worker binds its own socket to the same address and the kernel
assigns each new connection to one of them by a hash of its addresses, evenly.

The parent process claims the address (:func:`claim_address`: refused while anything else
holds it; then bound, never listening, so it is never handed a connection) and gives
uvicorn's supervisor a :class:`ReusePortSocket`; each worker process receives it as a
fresh socket bound to the same address, which uvicorn then listens on. A worker that the
supervisor restarts binds anew the same way. Two costs of one queue per worker: when a
worker restarts, the connections waiting in its queue are reset (Linux can hand them to
another worker with ``net.ipv4.tcp_migrate_req=1``), and a worker that hangs keeps getting
its share of new connections until the supervisor's health check replaces it.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any, TypeVar

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

logger = logging.getLogger("uvicorn.error")
SocketT = TypeVar("SocketT", bound=socket.socket)

#: Whether this platform spreads connections over ``SO_REUSEPORT`` sockets (Linux does).
SPREADS_CONNECTIONS = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def reuse_port_socket(
    family: int, address: tuple[Any, ...], kind: type[SocketT] = socket.socket
) -> SocketT:
    """A TCP socket of class ``kind`` bound to ``address`` with ``SO_REUSEPORT`` (not
    listening)."""
    sock = kind(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


class ReusePortSocket(socket.socket):
    """A bound socket that reaches a worker process as a new socket of its own on its address."""

    def __reduce__(self) -> tuple[Any, ...]:
        return reuse_port_socket, (self.family, self.getsockname())


def claim_address(family: int, host: str, port: int) -> ReusePortSocket:
    """Reserve ``(host, port)`` for this server's workers alone.

    A plain socket binds first: it fails while anything else holds the address, another
    ``SO_REUSEPORT`` group included, which would otherwise share the connections without a
    word (a forgotten old instance of the server, say). Port 0 takes the free port it got.

    Raises
    ------
    OSError
        When the address is taken or cannot be bound.
    """
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        address = probe.getsockname()
    return reuse_port_socket(family, address, ReusePortSocket)


def run_workers(config: uvicorn.Config) -> None:
    """Serve ``config`` with ``config.workers`` processes, one listening socket each.

    Parameters
    ----------
    config : uvicorn.Config
        With ``workers`` > 1, a TCP ``host`` and ``port`` (0 picks a free port for all) and
        the app as an import string.

    Raises
    ------
    SystemExit
        With uvicorn's startup-failure status when the address cannot be bound or a worker
        fails to start (the error is logged first, as uvicorn does).
    """
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    try:
        reserved = claim_address(family, config.host, config.port)
    except OSError as exc:
        logger.error(
            "cannot listen on %s port %d (--host / --port): %s",
            config.host,
            config.port,
            exc.strerror or exc,
        )
        raise SystemExit(STARTUP_FAILURE) from None
    host, port = reserved.getsockname()[:2]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    logger.info(
        "Uvicorn running on http://%s:%d with %d workers, one socket each (Press CTRL+C to quit)",
        shown,
        port,
        config.workers,
    )
    supervisor = Multiprocess(config, sockets=[reserved])
    try:
        supervisor.run()
    except KeyboardInterrupt:  # as uvicorn.run: the supervisor has stopped the workers
        pass
    finally:
        reserved.close()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)
