"""Worker processes that each listen on a socket of their own, so the kernel spreads connections.

Uvicorn's workers share one listening socket and race to accept from it: a client that opens
its connections in a burst (a load balancer, a benchmark, a connection pool) can land all of
them on one worker while the others idle, for as long as the connections live (measured: 16
keep-alive connections, one of two workers at 1.06 cores, the other at 0). With
``SO_REUSEPORT`` every worker binds its own socket to the same address and the kernel
assigns each new connection to one of them by a hash of its addresses, evenly.

The parent process reserves the address (bound, never listening, so it is never handed a
connection) and gives uvicorn's supervisor a :class:`ReusePortSocket`; each worker process
receives it as a fresh socket bound to the same address, which uvicorn then listens on. A
worker that the supervisor restarts binds anew the same way.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors import Multiprocess

#: Whether this platform spreads connections over ``SO_REUSEPORT`` sockets (Linux does).
SPREADS_CONNECTIONS = sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def reuse_port_socket(family: int, address: tuple[Any, ...]) -> socket.socket:
    """A TCP socket bound to ``address`` with ``SO_REUSEPORT`` (not yet listening)."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


class ReusePortSocket(socket.socket):
    """A bound socket that reaches a worker process as a new socket of its own on its address."""

    def __reduce__(self) -> tuple[Any, ...]:
        return reuse_port_socket, (self.family, self.getsockname())


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
        With uvicorn's startup-failure status when the address cannot be bound (the error
        is logged first, as uvicorn does).
    """
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    reserved = ReusePortSocket(family, socket.SOCK_STREAM)
    try:
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserved.bind((config.host, config.port))
    except OSError as exc:
        reserved.close()
        uvicorn.config.logger.error(exc)
        raise SystemExit(STARTUP_FAILURE) from None
    try:
        Multiprocess(config, sockets=[reserved]).run()
    except KeyboardInterrupt:  # as uvicorn.run: the supervisor has stopped the workers
        pass
    finally:
        reserved.close()
