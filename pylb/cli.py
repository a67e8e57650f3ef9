"""The ``pylb`` command: the balancer, ``pylb demo`` and ``pylb hello``.

Owns: argument parsing (generated from ``pylb.config.OPTIONS``), logging
setup, signal handling, and turning ConfigError into one line on stderr and
exit code 2. Must not know: how the data plane works inside.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from typing import NoReturn

import trio

from pylb import config as cfg
from pylb.core.errors import ConfigError
from pylb.core.models import Backend, parse_balance
from pylb.discovery import launch
from pylb.net.hello import HelloServer
from pylb.net.httpproxy import RequestRecord
from pylb.net.server import Balancer

log = logging.getLogger("pylb")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see '{self.prog} --help')")


def _balancer_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pylb",
        description="A load balancer for containers. Subcommands: 'pylb demo' (a balancer in front of three "
        "built-in backends) and 'pylb hello' (a backend that says who it is).",
        epilog="Every option also reads the environment variable named in brackets; a flag wins over it. "
        "SSL_CERT and DEFAULT_SSL_CERT (PEM text) are read from the environment only.",
    )
    for option in cfg.OPTIONS:
        if option.flag is None:
            continue
        env = f" [{option.env}]" if option.env else ""
        switch = {"nargs": "?", "const": "true"} if option.parse is cfg.parse_bool else {}  # bare --flag: true
        parser.add_argument(
            option.flag,
            dest=option.dest,
            metavar=option.metavar,
            default=None,
            action="append" if option.repeat else "store",
            help=f"{option.help}{env}",
            **switch,  # type: ignore[arg-type]
        )
    return parser


def _access_logger(names: dict[tuple[str, int], str] | None = None) -> Callable[[RequestRecord], None]:
    access = logging.getLogger("pylb.access")

    def observe(record: RequestRecord) -> None:
        backend = "-"
        if record.backend is not None:
            backend = str(record.backend)
            if names and record.backend.key in names:
                backend = f"{names[record.backend.key]} ({backend})"
        access.info(
            '%s "%s %s" %d -> %s %dB %.1fms',
            record.client,
            record.method,
            record.target[:200],
            record.status,
            backend,
            record.bytes_sent,
            record.seconds * 1000,
        )

    return observe


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")


async def _until_signal(nursery: trio.Nursery, lb: Balancer | None = None, grace: float = 0.0) -> None:
    """On SIGTERM or SIGINT: drain ``lb`` for up to ``grace`` seconds, then
    stop; a second signal stops at once."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s, stopping", signal.Signals(signum).name)
            if lb is not None:
                async with trio.open_nursery() as drain:
                    drain.start_soon(_second_signal, signals, drain)
                    if not await lb.drain(grace):
                        log.warning("grace period of %gs over; closing %d connections", grace, lb.connections)
                    drain.cancel_scope.cancel()
            nursery.cancel_scope.cancel()
            return


async def _second_signal(signals: AsyncIterator[int], drain: trio.Nursery) -> None:
    async for signum in signals:
        log.info("received %s again, stopping now", signal.Signals(signum).name)
        drain.cancel_scope.cancel()
        return


def _run_balancer(argv: Sequence[str]) -> int:
    args = _balancer_parser().parse_args(argv)
    config = cfg.from_sources(vars(args))
    mode = launch.resolve_mode(config, explicit=args.discover is not None)
    _setup_logging()
    lb = Balancer(config, observer=_access_logger() if config.access_log else None)
    lb.bind()

    async def main() -> None:
        provider = await launch.prepare(mode, config)  # a ConfigError here is one line, before serving
        async with trio.open_nursery() as nursery:
            await nursery.start(provider.run, lb)
            addresses = await nursery.start(lb.run)
            log.info(
                "listening on %s; %d backends, %d routes, %s; %s",
                ", ".join(a.url for a in addresses),
                len(lb.pool.states()),
                len(lb.pool.snapshot.routes) if lb.pool.snapshot else 0,
                config.balance,
                provider.description,
            )
            nursery.start_soon(_until_signal, nursery, lb, config.grace)

    trio.run(main)
    return 0


def _hello_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pylb hello",
        description="A small HTTP backend that answers every request with its "
        "name, in the body and in an X-Served-By header.",
    )
    parser.add_argument(
        "--bind", default="0.0.0.0:80", metavar="ADDR:PORT", help="where to listen (default 0.0.0.0:80)"
    )
    parser.add_argument("--name", default=None, help="the name it answers with (default: host name and port)")
    parser.add_argument("--delay", default="0", metavar="SECONDS", help="wait this long before each answer")
    return parser


def _run_hello(argv: Sequence[str]) -> int:
    args = _hello_parser().parse_args(argv)
    bind = cfg.Bind.parse(args.bind, "--bind")
    delay = _parse_delay(args.delay)
    server = HelloServer(args.name, delay)
    try:
        server.bind(bind.host, bind.port)
    except OSError as exc:
        raise ConfigError(f"--bind {bind}: {exc.strerror or exc} (choose another port)") from None
    _setup_logging()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(_start_hello, server, bind)
            log.info("hello %s listening on %s", server.name, f"{bind.host}:{server.port}")
            nursery.start_soon(_until_signal, nursery)

    trio.run(main)
    return 0


async def _start_hello(server: HelloServer, bind: cfg.Bind, *, task_status: trio.TaskStatus[int]) -> None:
    await server.run(bind.host, bind.port, task_status=task_status)


def _parse_delay(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        raise ConfigError(f"--delay: {text!r} must be a number of seconds from 0 to 3600")
    return value


def _run_demo(argv: Sequence[str]) -> int:
    parser = _Parser(
        prog="pylb demo",
        description="Three built-in hello backends behind a balancer, "
        "in one process: the seed's hello-world walkthrough without Docker.",
    )
    parser.add_argument("--bind", default="127.0.0.1:8080", metavar="ADDR:PORT", help="default 127.0.0.1:8080")
    parser.add_argument("--backends", default="3", metavar="N", help="how many hello backends (default 3)")
    parser.add_argument("--balance", default="roundrobin", help="roundrobin or leastconn")
    args = parser.parse_args(argv)
    count = cfg._parse_int(1, 64)(args.backends, "--backends")
    bind = cfg.Bind.parse(args.bind, "--bind")
    balance = parse_balance(args.balance, "--balance")
    names: dict[tuple[str, int], str] = {}
    lb = Balancer(cfg.Config(binds=(bind,), balance=balance), observer=_access_logger(names))
    lb.bind()
    _setup_logging()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            servers = [HelloServer(f"hello-{i + 1}") for i in range(count)]
            for server in servers:
                await nursery.start(server.run, "127.0.0.1", 0)
            backends = [Backend("127.0.0.1", s.port) for s in servers]
            names.update({b.key: str(s.name) for b, s in zip(backends, servers, strict=True)})
            lb.set_backends(backends)
            await nursery.start(lb.run)
            print(
                f"pylb demo: {count} hello backends behind {lb.url} ({balance}).\n"
                f"  try: curl {lb.url}/   (each request shows which backend answered; Ctrl-C stops)",
                flush=True,
            )
            nursery.start_soon(_until_signal, nursery)

    trio.run(main)
    return 0


_SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {"hello": _run_hello, "demo": _run_demo}


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv and argv[0] in _SUBCOMMANDS:
            return _SUBCOMMANDS[argv[0]](argv[1:])
        return _run_balancer(argv)
    except ConfigError as exc:
        print(f"pylb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
