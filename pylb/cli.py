"""The ``pylb`` command: the balancer, ``pylb --check``, ``pylb demo``,
``pylb hello`` and ``pylb healthcheck`` (the image's HEALTHCHECK: stdlib
sockets, no trio).

Owns: argument parsing (generated from ``pylb.config.OPTIONS``), the
warnings about the environment and about settings that do nothing, the
``--check`` summary, choosing one process or workers (``pylb.workers``),
and turning ConfigError into one line on stderr and exit code 2. Logging
and signals: ``pylb.runtime``. Must not know: how the data plane works inside.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import socket
import ssl
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import NoReturn

import trio

from pylb import __version__, compat
from pylb import config as cfg
from pylb.core.errors import ConfigError
from pylb.core.models import BALANCE_ALGORITHMS, SCHEMES, Backend, Bind, Snapshot, parse_balance
from pylb.discovery import launch
from pylb.net.hello import HelloServer
from pylb.net.server import Balancer
from pylb.runtime import listening_on, setup_logging, until_signal
from pylb.workers import default_workers, run_workers

log = logging.getLogger("pylb")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see '{self.prog} --help')")


def _balancer_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pylb",
        description="A load balancer for containers. Subcommands: 'pylb demo' (a balancer in front of three "
        "built-in backends, in one process), 'pylb hello' (a backend that says who it is) and 'pylb healthcheck' "
        "(exit 0 when the local pylb answers: the image's HEALTHCHECK); each has --help.",
        epilog="Every option also reads the environment variable named in brackets; a flag wins over it. "
        "SSL_CERT and DEFAULT_SSL_CERT (PEM text) are read from the environment only.",
    )
    parser.add_argument("--version", action="version", version=f"pylb {__version__}")
    parser.add_argument(
        "--check",
        action="store_true",
        help="Check the whole configuration (flags, environment, certificates, discovery mode), print one line "
        "saying what would run, and exit 0; a problem is one line and exit 2. Nothing listens and nothing is "
        "contacted (as haproxy -c).",
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


def _run_balancer(argv: Sequence[str]) -> int:
    args = _balancer_parser().parse_args(argv)
    known = {option.env for option in cfg.OPTIONS if option.env}
    for line in compat.unsupported(os.environ) + compat.unknown(os.environ, known):
        print(f"pylb: warning: {line}", file=sys.stderr)
    config = cfg.from_sources(vars(args))
    for line in config.warnings():
        print(f"pylb: warning: {line}", file=sys.stderr)
    mode = launch.resolve_mode(config, explicit=args.discover is not None)
    if args.workers is None and "PYLB_WORKERS" not in os.environ:
        config = config.with_changes(workers=default_workers())
    if args.check:
        launch.check(mode, os.environ)
        print(f"pylb --check: ok: {_summary(config, mode)}", flush=True)
        return 0
    if config.workers > 1:
        return run_workers(config, mode, config.workers)
    setup_logging(config.log_level)
    lb = Balancer(config)
    lb.bind()

    async def main() -> None:
        provider = await launch.prepare(mode, config)  # a ConfigError here is one line, before serving
        async with trio.open_nursery() as nursery:
            await nursery.start(provider.run, lb)
            addresses = await nursery.start(lb.run)
            await nursery.start(until_signal, nursery, lb, config.grace)  # before anyone reads "listening"
            log.info(
                "listening on %s; %d backends, %d routes, %s; %s",
                listening_on([Bind(a.scheme, a.host, a.port) for a in addresses]),
                len(lb.pool.states()),
                len(lb.pool.snapshot.routes) if lb.pool.snapshot else 0,
                config.balance,
                provider.description,
            )
            observing(config, lb.stats_server.port if lb.stats_server is not None else None)

    trio.run(main)
    return 0


def observing(config: cfg.Config, stats_port: int | None = None) -> None:
    """One line saying where the stats are (``stats_port``: as bound) and
    which access log is written (when any)."""
    parts = []
    if config.stats_port is not None:
        auth = "Basic auth" if config.stats_auth else "no auth: set STATS_AUTH"
        bind = config.stats_port
        shown = Bind(bind.scheme, bind.host, stats_port) if stats_port else bind
        parts.append(f"stats on {listening_on([shown])} ({auth})")
    if config.access_log_format != "off":
        parts.append(f"access log: {config.access_log_format} on standard output")
    if config.monitor_uri is not None:
        parts.append(f"monitor URI {config.monitor_uri}")
    if parts:
        log.info("%s", "; ".join(parts))


_DISCOVERY = {
    "none": "static backends",
    "docker": "discovery: docker",
    "links": "discovery: links",
    "swarm": "discovery: swarm",
    "auto": "discovery: auto (swarm on a swarm manager, docker when its socket answers, else links)",
}


def _summary(config: cfg.Config, mode: str) -> str:
    """What ``pylb`` would run with ``config``, in one line (``--check``)."""
    snapshot = config.snapshot()
    backends = {b.key for s in snapshot.services for b in s.backends} if snapshot else set()
    certificates = len(config.certificates)
    parts = [
        f"would listen on {listening_on(config.listeners)}",
        f"{len(backends)} backends, {len(snapshot.routes) if snapshot else 0} routes, {config.balance}",
        f"{certificates} certificate{'s' if certificates != 1 else ''}" if certificates else "",
        f"{config.workers} worker{'s' if config.workers != 1 else ''}",
        _DISCOVERY[mode],
    ]
    return "; ".join(part for part in parts if part)


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
    bind = Bind.parse(args.bind, "--bind")
    delay = _parse_delay(args.delay)
    server = HelloServer(args.name, delay)
    try:
        server.bind(bind.host, bind.port)
    except OSError as exc:
        raise ConfigError(f"--bind {bind}: {exc.strerror or exc} (choose another port)") from None
    setup_logging()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(_start_hello, server, bind)
            await nursery.start(until_signal, nursery, server, HELLO_GRACE)
            log.info("hello %s listening on %s", server.name, f"{bind.host}:{server.port}")

    trio.run(main)
    return 0


async def _start_hello(server: HelloServer, bind: Bind, *, task_status: trio.TaskStatus[int]) -> None:
    await server.run(bind.host, bind.port, task_status=task_status)


HELLO_GRACE = 10.0  # as pylb's own: requests in progress finish on `docker stop`


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
    parser.add_argument(
        "--balance",
        default="roundrobin",
        metavar="ALGORITHM",
        help=f"how to choose a backend: {', '.join(BALANCE_ALGORITHMS)} (default roundrobin)",
    )
    args = parser.parse_args(argv)
    count = cfg._parse_int(1, 64)(args.backends, "--backends")
    bind = Bind.parse(args.bind, "--bind")
    balance = parse_balance(args.balance, "--balance")
    lb = Balancer(cfg.Config(binds=(bind,), balance=balance, log_format="haproxy"))
    lb.bind()
    setup_logging()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            servers = [HelloServer(f"hello-{i + 1}") for i in range(count)]
            for server in servers:
                await nursery.start(server.run, "127.0.0.1", 0)
            backends = [Backend("127.0.0.1", s.port) for s in servers]
            names = tuple((str(b), str(s.name)) for b, s in zip(backends, servers, strict=True))
            lb.swap(dataclasses.replace(Snapshot.of_backends(backends, balance), names=names))
            await nursery.start(lb.run)
            await nursery.start(until_signal, nursery, lb, 1.0)
            print(
                f"pylb demo: {count} hello backends behind {lb.url} ({balance}).\n"
                f"  try: curl {lb.url}/   (each request shows which backend answered; Ctrl-C stops)",
                flush=True,
            )

    trio.run(main)
    return 0


# -- pylb healthcheck: the image's HEALTHCHECK (stdlib sockets only) -------------------------

HEALTHCHECK_TIMEOUT = 2.0


def _healthcheck_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="pylb healthcheck",
        description="Exit 0 when the local pylb answers on its first listener, 1 when not, with one line "
        "on stderr saying why. With MONITOR_URI (or PID 1's --monitor-uri): GET it, on MONITOR_PORT when set, "
        "and only a 200 is healthy (503: draining or no backend up). Else HTTP(S): any HTTP answer to GET / "
        "(even a 503: no backends) means alive; "
        "TCP: the connect (and TLS handshake) succeeds. Timeout 2 s. The image's HEALTHCHECK.",
    )
    parser.add_argument(
        "--url",
        default=None,
        metavar="URL",
        help="http://HOST:PORT[/PATH], https://..., tcp://HOST:PORT or tls://HOST:PORT (default: the first "
        "listener of the pylb that is PID 1 (its --bind), else PYLB_BIND's first address, else "
        "http://127.0.0.1:80; MODE=tcp makes an address without a scheme tcp://)",
    )
    return parser


def _pid1_args(pid1: Sequence[str] | None = None) -> list[str]:
    """PID 1's arguments after ``pylb`` when PID 1 is pylb, else none."""
    if pid1 is None:
        try:
            with open("/proc/1/cmdline", "rb") as file:
                pid1 = [arg.decode(errors="replace") for arg in file.read().split(b"\0") if arg]
        except OSError:
            pid1 = []
    args = list(pid1)
    if args and os.path.basename(args[0]).startswith("python"):  # the script's shebang, or python -m pylb
        args = args[2:] if args[1:2] == ["-m"] and args[2:3] == ["pylb"] else args[1:]
    # PID 1 not pylb: the environment says it all
    return args[1:] if args and os.path.basename(args[0]) == "pylb" else []


def _flag(args: Sequence[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    return None


def _own_listener(environ: Mapping[str, str], pid1: Sequence[str] | None = None) -> Bind:
    """The first listener of the pylb in this container: PID 1's own flags
    when PID 1 is pylb (``pylb hello --bind ...`` too), else the environment
    (PYLB_BIND's first address, MODE), else port 80."""
    args = _pid1_args(pid1)

    def flag(name: str) -> str | None:
        return _flag(args, name)

    if args and args[0] in ("hello", "demo"):
        return Bind.parse(flag("--bind") or ("0.0.0.0:80" if args[0] == "hello" else "127.0.0.1:8080"))
    mode = flag("--mode") or environ.get("MODE", "").strip() or "http"
    binds = environ.get("PYLB_BIND", "").replace(";", " ").split()
    text = flag("--bind") or (binds[0] if binds else "0.0.0.0:80")
    bind = Bind.parse(text, "--bind" if flag("--bind") else "PYLB_BIND")
    if bind.implicit and mode == "tcp":
        return Bind("tcp", bind.host, bind.port)
    return bind


def _own_monitor(environ: Mapping[str, str], pid1: Sequence[str] | None = None) -> tuple[str | None, int | None]:
    """MONITOR_URI and MONITOR_PORT of the pylb in this container: PID 1's
    flags (``--monitor-uri``, ``--monitor-port``), else the environment."""
    args = _pid1_args(pid1)
    uri = _flag(args, "--monitor-uri") or environ.get("MONITOR_URI", "").strip() or None
    port_text = _flag(args, "--monitor-port") or environ.get("MONITOR_PORT", "").strip()
    port = int(port_text) if port_text.isdigit() and 0 < int(port_text) < 65536 else None
    if uri is not None and not uri.startswith("/"):
        uri = None
    return uri, port


def _healthcheck_target(url: str | None, environ: Mapping[str, str]) -> tuple[str, str, int, str]:
    """(scheme, host to connect to, port, path): with MONITOR_URI, that path
    (on MONITOR_PORT when set, else on the first listener when it is HTTP)."""
    if url is None:
        bind = _own_listener(environ)
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind.host, bind.host)
        monitor, monitor_port = _own_monitor(environ)
        if monitor is not None and monitor_port is not None:
            return "http", "127.0.0.1", monitor_port, monitor
        if monitor is not None and bind.scheme in ("http", "https"):
            return bind.scheme, host, bind.port, monitor
        return bind.scheme, host, bind.port, "/"
    parts = urllib.parse.urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port or cfg.DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    if scheme not in SCHEMES or not parts.hostname or port is None:
        raise ConfigError(f"--url: {url!r} is not http[s]://HOST[:PORT][/PATH] nor tcp|tls://HOST:PORT")
    return scheme, parts.hostname, port, parts.path or "/"


def _healthcheck(url: str | None, environ: Mapping[str, str], timeout: float = HEALTHCHECK_TIMEOUT) -> tuple[bool, str]:
    """Check the listener; (healthy, one line saying why)."""
    scheme, host, port, path = _healthcheck_target(url, environ)
    monitor = path == _own_monitor(environ)[0]
    where = f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"
    deadline = time.monotonic() + timeout

    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        return remaining

    try:
        with socket.create_connection((host, port), timeout=left()) as raw:
            sock: socket.socket = raw
            if scheme in ("https", "tls"):  # pylb's own listener: its certificate is not the question here
                context = ssl.create_default_context()
                context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
                sock = context.wrap_socket(raw)
            if scheme in ("tcp", "tls"):
                return True, f"{where} accepts connections"
            sock.settimeout(left())
            sock.sendall(
                f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: pylb-healthcheck\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            received = b""
            while b"\r\n" not in received and len(received) < 4096:
                sock.settimeout(left())
                data = sock.recv(4096)
                if not data:
                    break
                received += data
    except TimeoutError:
        return False, f"{where}: no answer within {timeout:g} s"
    except ConnectionRefusedError:
        return False, f"{where}: connection refused (is pylb listening there? see --url)"
    except OSError as exc:  # ssl.SSLError among them
        return False, f"{where}: {exc.strerror or exc}"
    status = received.partition(b"\r\n")[0].decode("latin-1")
    if not received:
        return False, f"{where}: the connection closed without an HTTP answer"
    if not re.match(r"HTTP/1\.[01] \d{3}", status):
        return False, f"{where}: the answer is not HTTP: {status[:60]!r}"
    if monitor and status[9:12] != "200":  # the monitor URI: 503 while draining or with no backend up
        return False, f"{where}{path} (MONITOR_URI) answered {status[9:].strip()}"
    return True, f"{where}{path} answered {status[9:].strip()}"


def _run_healthcheck(argv: Sequence[str]) -> int:
    args = _healthcheck_parser().parse_args(argv)
    healthy, why = _healthcheck(args.url, os.environ)
    print(f"pylb healthcheck: {'healthy' if healthy else 'unhealthy'}: {why}", file=sys.stderr)
    return 0 if healthy else 1


_SUBCOMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "hello": _run_hello,
    "demo": _run_demo,
    "healthcheck": _run_healthcheck,
}


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
