"""The embedding API: a balancer inside a trio program or a pytest test.

Owns: ``open_balancer``, the one-call way to run a balancer on port 0 and
drive it from code. Must not know: the CLI, signals or logging setup (the
library installs no signal handler and configures no logging).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from pylb.config import Bind, Config
from pylb.core.models import Backend, parse_balance
from pylb.core.timeouts import Timeouts
from pylb.net.httpproxy import Observer
from pylb.net.server import Balancer


@asynccontextmanager
async def open_balancer(
    backends: Sequence[Backend | str] = (),
    bind: str | Sequence[str] = "127.0.0.1:0",
    *,
    balance: str = "roundrobin",
    timeouts: Timeouts | None = None,
    maxconn: int = 4096,
    observer: Observer | None = None,
) -> AsyncIterator[Balancer]:
    """Run a balancer for the duration of the ``async with`` block.

    ``backends`` are ``Backend`` objects or ``"HOST:PORT[,weight=N]"`` text;
    ``bind`` one or more ``[http://]ADDR:PORT`` (port 0 picks a free port).
    The yielded Balancer has ``url``, ``urls``, ``set_backends()`` and
    ``statistics()``. Leaving the block closes listeners and connections.
    Raises ConfigError (or its subclass BindError) for bad input."""
    binds = (bind,) if isinstance(bind, str) else tuple(bind)
    config = Config(
        binds=tuple(Bind.parse(b, "bind") for b in binds),
        backends=tuple(b if isinstance(b, Backend) else Backend.parse(b, "backends") for b in backends),
        balance=parse_balance(balance, "balance"),
        timeouts=timeouts or Timeouts(),
        maxconn=maxconn,
    )
    lb = Balancer(config, observer=observer)
    async with trio.open_nursery() as nursery:
        await nursery.start(lb.run)
        try:
            yield lb
        finally:
            nursery.cancel_scope.cancel()
