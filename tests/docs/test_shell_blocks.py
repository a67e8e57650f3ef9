"""Every shell block of README.md and docs/*.md runs as written, or is
checked, or is listed below with the reason why neither.

What a block gets, by what it is:
- **run**: ``console`` blocks (their ``$`` commands) and every other shell
  block (``sh``, ``bash``, indented) that is not only ``pylb`` commands. A
  page's run blocks form one script, in page order, run with ``bash -e`` in a
  scratch copy of the repository (what ``pip install .`` needs): a block
  must wait for what it starts and stop it by its own means, as a reader's
  script would. The output a ``console`` block shows after a command must
  come out, in order (a background job's anywhere). No process may be left
  in the script's session when it ends (``kill $PID`` in the page, never a
  job number). The ``console`` commands are also pasted, all at once, into an
  interactive bash on a pseudo-terminal (job control on, as a reader's
  terminal): same outputs, nothing left running.
- **check**: a block of ``pylb`` commands only (they name backends off this
  machine, or ports that need root): each runs as ``pylb --check`` (a shell
  function stands in for ``pylb``), must exit 0, print its ``ok`` line and
  no warning. Nothing listens, nothing is dialled.
- **until Ctrl-C**: a block ending in ``pylb demo`` (README's first command):
  run until the demo is ready, asked twice (two backends answer), then
  interrupted as Ctrl-C does; it must exit 0.
- **explained**: listed in ``EXPLAINED`` with the reason.
A block that is none of these fails the test. Blocks that are not shell
(``python``: tests/docs/test_embedding_examples.py; ``yaml``, ``text``) are
not commands.

How the test stands in for a reader's machine, and nothing else:
- Ports: the doc's fixed ports (8080-8082, 8443 for local processes; the
  host ports of ``docker run -p``, and ``localhost`` without a port) map to
  free ports, in the commands and in the output shown; ``pylb demo`` without
  ``--bind`` gets the one for 127.0.0.1:8080. ``-p`` publishes on 127.0.0.1.
- Docker: a ``docker`` stand-in on PATH (``DOCKER_SHIM``) names containers and
  networks with a per-run prefix, labels what it creates (everything is
  removed by that label at the end), runs the image built by
  scripts/build-image (``pylb``, or the tag in ``PYLB_TEST_IMAGE``), and puts the
  containers of a block without ``--link`` on a network of the test's own,
  so that a balancer with the Docker socket finds only this test's
  containers on a shared engine. It refuses any other subcommand.
- Files a page assumes (``SETUP``: your certificate) are made first.
- ``python3 -m venv .venv``: the venv is made beforehand with a ``.pth``
  line to this interpreter's site-packages, so ``pip install .`` finds
  pylb's dependencies installed and builds only pylb.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import select
import shlex
import shutil
import signal
import site
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from pylb.config import OPTIONS
from tests.discovery.docker_kit import require_docker
from tests.docs.doctext import INDENTED, ROOT, Block, code_blocks, commands
from tests.image.image_kit import IMAGE, build_image

PAGES = ["README.md", *sorted(f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md"))]
SHELL = {"sh", "bash", "shell", "console", "", INDENTED}
NOT_COMMANDS = {"python", "yaml", "text", "toml", "json"}
LOCAL_PORTS = (8080, 8081, 8082, 8443)  # the doc's ports of processes on this machine
SCRIPT_SECONDS = 900.0  # pip install builds pylb; containers join when Docker says healthy
CHECK_SECONDS = 60.0
OPENSSL = (
    "openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost "
    "-addext subjectAltName=DNS:localhost -keyout private.key -out public.crt"
)

# Blocks neither run nor checked, each with the reason: (page, how its first line starts) -> why.
EXPLAINED: dict[tuple[str, str], str] = {
    (
        "README.md",
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[dev]' && python -m pytest",
    ): "the test suite itself: .ci/run runs this command (test_ci_runs_the_readme_test_command checks it)",
    ("docs/benchmarks.md", "apt-get install -y wrk haproxy nginx-light"):
    "the benchmark: minutes of load on both cores, not a test (.ci/run installs the same system packages)",
    ("docs/discovery.md", "docker compose up -d --scale web=3"):
    "Docker Compose is not installed here, and dockercloud/hello-world comes from a registry this machine lacks",
    ("docs/quickstart.md", "docker compose up -d --scale web=3"):
    "Docker Compose is not installed here; the same scaling with docker run is image.md's socket walkthrough, "
    "run here, and tests/image/test_seed_walkthrough.py scales 1 -> 3 -> 1 under load",
    ("docs/image.md", "docker build -t pylb ."):
    "needs a registry and PyPI inside containers, and would replace the shared pylb image; scripts/build-image "
    "builds the same Dockerfile (the next block)",
    ("docs/image.md", "scripts/build-image"):
    ".ci/run runs it before the tests, and this test's fixture runs it again (a cache check)",
    ("docs/index.md", "pip install -e '.[docs]'"):
    "would reinstall the test's own environment, and mkdocs serve runs until stopped; .ci/run runs "
    "mkdocs build --strict",
    ("docs/tcp.md", "docker run -d --name cache1 -e TCP_PORTS=6379 redis:7"):
    "redis:7 comes from a registry this machine lacks; tests/image/test_tcp_ports_image.py runs TCP_PORTS "
    "with containers of the pylb image",
    ("docs/tls.md", "cat /etc/letsencrypt/live/example.com/privkey.pem \\"):
    "the paths of a certbot installation; --cert-folder itself is checked by tests/test_tls_certs.py",
}  # fmt: skip

# Files a page's blocks assume the reader has: page -> commands that make them.
SETUP: dict[str, list[str]] = {
    "docs/image.md": [OPENSSL],  # private.key, public.crt: "your" certificate
    "docs/tls.md": [OPENSSL, "cat private.key public.crt > cert.pem"],
    "docs/routing.md": [OPENSSL, "cat private.key public.crt > site.pem"],
}


# -- reading the blocks ----------------------------------------------------------------------------


def page_blocks(page: str) -> list[Block]:
    return code_blocks(ROOT / page)


def shell_lines(block: Block) -> list[str]:
    """The block's commands, one per line as the shell reads them: ``$``
    lines of a console block; otherwise the lines, continuations joined,
    comments and blank lines dropped."""
    if block.lang == "console":
        return [command.text for command in commands(block)]
    joined, current = [], ""
    for line in block.text.splitlines():
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            words = shlex.split(current, comments=True)
            if words:
                joined.append(current.strip())
            current = ""
    return joined


def _words(line: str) -> list[str]:
    """The words of a command, variable assignments before it dropped."""
    words = shlex.split(line, comments=True)
    while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
        words.pop(0)
    return words


def _operators(line: str) -> bool:
    """Whether the command line has a control operator (``;``, ``&``, ``|``...) outside quotes."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.commenters = "#"
    return any(token and set(token) <= set(";&|()") for token in lexer)


def is_check_block(block: Block) -> bool:
    """Only ``pylb`` commands that run a balancer (not a subcommand), one per
    line: a configuration to check."""
    lines = shell_lines(block)
    if block.lang == "console" or not lines:
        return False
    for line in lines:
        words = _words(line)
        if not words or words[0] != "pylb" or words[1:2] in (["hello"], ["demo"], ["healthcheck"]):
            return False
        if _operators(line):
            return False
    return True


def is_until_interrupted(block: Block) -> bool:
    lines = shell_lines(block)
    return block.lang != "console" and len(lines) == 1 and re.search(r"(^|&&\s*)pylb demo\s*$", lines[0]) is not None


def kind(page: str, block: Block) -> str:
    if block.lang in NOT_COMMANDS:
        return "not commands"
    if block.lang not in SHELL:
        raise AssertionError(f"{block.where}: a ```{block.lang} block: say what it is (sh, console, text...)")
    if explained(page, block) is not None:
        return "explained"
    if is_check_block(block):
        return "check"
    if is_until_interrupted(block):
        return "until Ctrl-C"
    return "run"


def explained(page: str, block: Block) -> tuple[str, str] | None:
    """The EXPLAINED key of ``block``, if any."""
    return next((key for key in EXPLAINED if key[0] == page and block.first.startswith(key[1])), None)


def has_docker(block: Block) -> bool:
    return any(_words(line)[:1] == ["docker"] for line in shell_lines(block))


_OFF_MACHINE = re.compile(r"(?<![\d.])(?!127\.|0\.0\.0\.0)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})(?![\d.])")


def test_every_shell_block_is_run_checked_or_explained() -> None:
    kinds: dict[str, int] = {}
    used: set[tuple[str, str]] = set()
    for page in PAGES:
        for block in page_blocks(page):
            how = kind(page, block)
            kinds[how] = kinds.get(how, 0) + 1
            key = explained(page, block)
            if key is not None:
                used.add(key)
            if how in ("run", "until Ctrl-C"):
                for line in shell_lines(block):
                    off = _OFF_MACHINE.findall(line)
                    checked = _words(line)[:2] == ["pylb", "--check"]
                    assert checked or not off, f"{block.where}: a block that runs names {off}: make it pylb commands"
    assert not set(EXPLAINED) - used, f"EXPLAINED names blocks that are gone: {sorted(set(EXPLAINED) - used)}"
    assert kinds.get("run", 0) >= 15 and kinds.get("check", 0) >= 5 and kinds.get("until Ctrl-C") == 1, kinds


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    (command,) = [b.first for b in page_blocks("README.md") if "python -m pytest" in b.text]
    install = re.search(r"pip install -e '([^']+)'", command)
    assert install is not None and command.endswith("&& python -m pytest"), command
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"pip install -q -e '{install.group(1)}'" in ci, "the install of README's test command"
    assert re.search(r"^python -m pytest$", ci, re.M), "README's test command, the last step of .ci/run"
    first_screen = readme[: readme.index("## Three ways in")]
    assert "pip install . && pylb demo" in first_screen and command in first_screen


def test_the_quickstart_is_the_seed_walkthrough_with_answers_alternating() -> None:
    steps = [c for b in page_blocks("docs/quickstart.md") if b.lang == "console" for c in commands(b)]
    texts = [step.text for step in steps]
    assert "pip install ." in texts
    assert any(text.startswith("pylb demo") for text in texts)
    assert sum(text.startswith("pylb hello ") for text in texts) == 2
    answers = [step.output for step in steps if step.text.startswith("curl ")]
    assert answers[:2] == [["Hello from hello-1"], ["Hello from hello-2"]], "the demo's two curls alternate"
    through_lb = [a for a in answers[2:] if len(a) == 1]
    assert [a[0] for a in through_lb] == ["Hello from web1", "Hello from web2"] * 2, "each curl: the other backend"
    assert not any(re.search(r"\bkill\s+%", text) for text in texts), "kill $PID: job numbers differ in a script"


# -- the scratch machine ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Ports:
    """The doc's ports and the free ones that stand in for them."""

    mapped: dict[int, int] = field(default_factory=dict)

    def __getitem__(self, port: int) -> int:
        if port not in self.mapped:
            self.mapped[port] = _free_port()
        return self.mapped[port]

    def local(self, text: str) -> str:
        """Text of a block that runs processes here: the doc's local ports."""
        return re.sub(r":(\d{4})\b", lambda m: f":{self[int(m[1])]}" if int(m[1]) in LOCAL_PORTS else m[0], text)

    def command(self, text: str) -> str:
        """``pylb demo`` (127.0.0.1:8080 by default) on the port standing in for 8080."""
        return re.sub(r"\bpylb demo\b(?![^\n]*--bind)", f"pylb demo --bind 127.0.0.1:{self[8080]}", text)

    def docker(self, text: str) -> str:
        """Text of a block with containers: published ports and ``localhost``."""
        text = re.sub(r"-p (\d+):(\d+)\b", lambda m: f"-p 127.0.0.1:{self[int(m[1])]}:{m[2]}", text)
        return re.sub(
            r"\b(https?://)?localhost\b(?![:.\w-])",
            lambda m: f"{m[1] or ''}localhost:{self[443 if m[1] == 'https://' else 80]}",
            text,
        )


DOCKER_SHIM = '''#!{python}
"""docker, as the docs test lets a page use it (see tests/docs/test_shell_blocks.py)."""
import os, sys
env = {{name[15:]: value for name, value in os.environ.items() if name.startswith("PYLB_TEST_DOCS_")}}
real, prefix, label, network, image = env["DOCKER"], env["PREFIX"], env["LABEL"], env["NETWORK"], env["IMAGE"]
BOOLEAN = {{"-d", "--detach", "-t", "-i", "-it", "--rm", "--init", "--privileged", "--no-healthcheck", "-P"}}
def named(name):
    return name if name in ("host", "bridge", "none") or name.startswith(prefix) else prefix + name
def refuse(why):
    print(f"docs test: {{why}}", file=sys.stderr)
    sys.exit(97)
args = sys.argv[1:]
if not args:
    refuse("docker without a subcommand")
command, rest = args[0], args[1:]
if command == "run":
    out, i, has_network = [], 0, False
    while i < len(rest) and rest[i].startswith("-"):
        flag = rest[i]
        value = None
        if "=" in flag and flag.startswith("--"):
            flag, value = flag.split("=", 1)
        elif flag not in BOOLEAN:
            i += 1
            value = rest[i]
        if flag == "--name":
            value = named(value)
        elif flag == "--link":
            value = named(value.split(":")[0]) + ":" + value.split(":", 1)[-1]
        elif flag in ("--network", "--net"):
            value, has_network = named(value), True
        elif flag in ("-p", "--publish") and not value.startswith("127.0.0.1:"):
            refuse(f"publish on 127.0.0.1 only, not {{value}}")
        out += [flag] if value is None else [flag, value]
        i += 1
    if not has_network and network != "bridge":
        out += ["--network", network]
    out += ["--label", label]
    rest = rest[i:]
    if rest and rest[0] == "pylb":
        rest = [image, *rest[1:]]
    args = ["run", *out, *rest]
elif command in ("rm", "stop", "kill", "logs", "inspect", "port", "restart", "start"):
    args = [command, *[a if a.startswith("-") else named(a) for a in rest]]
elif command == "network" and rest[:1] == ["create"]:
    args = ["network", "create", "--label", label, *[a if a.startswith("-") else named(a) for a in rest[1:]]]
elif command == "network" and rest[:1] in (["rm"], ["connect"], ["disconnect"]):
    args = ["network", rest[0], *[a if a.startswith("-") else named(a) for a in rest[1:]]]
else:
    refuse(f"docker {{command}} is not run by the docs test")
os.execv(real, [real, *args])
'''


def _share_site_packages(venv: Path, python: str) -> None:
    """A venv of this Python version that sees this interpreter's packages
    (pylb's dependencies) after its own."""
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=120)
    probe = "import sys, sysconfig; print(sys.version_info[:2] == (%d, %d)); print(sysconfig.get_path('purelib'))"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe % sys.version_info[:2]], capture_output=True,
                         text=True, check=True).stdout.split()  # fmt: skip
    if out[0] == "True":
        paths = [p for p in (*site.getsitepackages(), site.getusersitepackages()) if os.path.isdir(p)]
        (Path(out[1]) / "_pylb_docs_test_parent.pth").write_text("\n".join(paths) + "\n")


@dataclass
class Machine:
    """A reader's machine for one page: a scratch checkout, its ports, and
    (for pages with containers) the docker stand-in."""

    page: str
    root: Path
    ports: Ports = field(default_factory=Ports)
    token: str = field(default_factory=lambda: secrets.token_hex(3))
    docker_used: bool = False

    @property
    def prefix(self) -> str:
        return f"pylbdocs-{os.getpid()}-{self.token}-"

    @property
    def label(self) -> str:
        return f"pylb-docs-test={self.prefix}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not _pylb_setting(k)}
        env.pop("PYTHONPATH", None)  # the pylb that runs is the one the page installs, else this one
        bin_dirs = [str(self.root / ".shim"), os.path.dirname(sys.executable)]
        env["PATH"] = os.pathsep.join([*bin_dirs, env.get("PATH", "/usr/bin:/bin")])
        env.update(
            PIP_DISABLE_PIP_VERSION_CHECK="1",
            PYLB_TEST_DOCS_DOCKER=shutil.which("docker") or "/usr/bin/docker",
            PYLB_TEST_DOCS_PREFIX=self.prefix,
            PYLB_TEST_DOCS_LABEL=self.label,
            PYLB_TEST_DOCS_NETWORK=self.prefix + "net",
            PYLB_TEST_DOCS_IMAGE=IMAGE,
        )
        return env

    def prepare(self, texts: list[str]) -> None:
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            shutil.copy2(ROOT / name, self.root / name)
        shutil.copytree(ROOT / "pylb", self.root / "pylb", ignore=ignore)
        shim = self.root / ".shim" / "docker"
        shim.parent.mkdir()
        shim.write_text(DOCKER_SHIM.format(python=sys.executable))
        shim.chmod(0o755)
        for command in SETUP.get(self.page, []):
            subprocess.run(["bash", "-ec", command], cwd=self.root, check=True, capture_output=True, timeout=60)
        if any(re.search(r"python3? -m venv \.venv", text) for text in texts):
            python = shutil.which("python3", path=self.env()["PATH"]) or sys.executable
            _share_site_packages(self.root / ".venv", python)

    def start_docker(self) -> None:
        require_docker()
        _ensure_image()
        subprocess.run(["docker", "network", "create", "--label", self.label, self.prefix + "net"], check=True,
                       capture_output=True, timeout=60)  # fmt: skip
        self.docker_used = True

    def containers(self) -> list[tuple[str, str, str]]:
        """(name, state, status) of every container this page made."""
        done = subprocess.run(
            ["docker", "ps", "-a", "--filter", f"label={self.label}", "--format", "{{.Names}}\t{{.State}}\t{{.Status}}"
             ],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return [tuple(line.split("\t")) for line in done.stdout.splitlines() if line]  # type: ignore[misc]

    def cleanup(self) -> None:
        if not self.docker_used:
            return
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", f"label={self.label}"], capture_output=True,
                             text=True, timeout=60).stdout.split()  # fmt: skip
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=120)
        nets = subprocess.run(["docker", "network", "ls", "-q", "--filter", f"label={self.label}"],
                              capture_output=True, text=True, timeout=60).stdout.split()  # fmt: skip
        for net in nets:
            subprocess.run(["docker", "network", "rm", net], capture_output=True, timeout=60)


_IMAGE_BUILT: list[str] = []


def _ensure_image() -> None:
    """The image the pages run (scripts/build-image: a cache check when .ci/run built it)."""
    if not _IMAGE_BUILT:
        build_image()
        _IMAGE_BUILT.append(IMAGE)


def _pylb_setting(name: str) -> bool:
    """Variables pylb reads: they would change what the page shows."""
    return name.startswith("PYLB_") or any(option.env == name for option in OPTIONS)


@contextlib.contextmanager
def machine(page: str, tmp_path: Path, texts: list[str]) -> Iterator[Machine]:
    for tool in ("bash", "curl", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"the docs need {tool}")
    root = tmp_path / "pylb"
    root.mkdir()
    made = Machine(page, root)
    try:
        made.prepare(texts)
        yield made
    finally:
        made.cleanup()


# -- what a run printed ----------------------------------------------------------------------------


@dataclass
class Expected:
    """Lines a page's console blocks show: foreground ones in order, a
    background job's anywhere."""

    ordered: list[tuple[str, str]] = field(default_factory=list)  # (where, line)
    anywhere: list[tuple[str, str]] = field(default_factory=list)

    def check(self, output: str, how: str) -> None:
        lines = [_plain(line) for line in output.splitlines()]
        at = 0
        for where, want in self.ordered:
            while at < len(lines) and lines[at].strip() != want.strip():
                at += 1
            assert at < len(lines), f"{where}: {want!r} not printed ({how}), in order; output:\n{_tail(output)}"
            at += 1
        for where, want in self.anywhere:
            assert want.strip() in _plain(output), f"{where}: {want!r} not printed ({how}); output:\n{_tail(output)}"


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\r", "", text)


def _tail(text: str, lines: int = 80) -> str:
    return "\n".join(_plain(text).splitlines()[-lines:])


def _session_processes(sid: int) -> list[tuple[int, str]]:
    """Processes still in session ``sid`` (what a script or terminal left running)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append((int(entry.name), cmdline))
    return found


def _left_running(sid: int, grace: float = 5.0) -> list[str]:
    """Kill what session ``sid`` left running; what it was. Processes on
    their way out (a worker pool's resource tracker, a moment after pylb)
    get ``grace`` seconds to go by themselves."""
    deadline = time.monotonic() + grace
    while (left := _session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid, _ in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return [cmd for _, cmd in left]


# -- running a page --------------------------------------------------------------------------------


def _script(made: Machine, blocks: list[Block], console_only: bool) -> tuple[str, Expected]:
    """The page's run blocks as one script, localized, and what they must print."""
    parts: list[str] = []
    expected = Expected()
    for block in blocks:
        docker = has_docker(block)
        if console_only and (block.lang != "console" or docker):
            continue
        localize = made.ports.docker if docker else made.ports.local
        if docker and not console_only:
            if not made.docker_used:
                made.start_docker()
            links = any("--link" in line for line in shell_lines(block))
            parts.append(f"export PYLB_TEST_DOCS_NETWORK={'bridge' if links else made.prefix + 'net'}")
        if block.lang == "console":
            for command in commands(block):
                assert not command.text.endswith("\\"), f"{command.where}: one line per $ command"
                parts.append(made.ports.command(localize(command.text)))
                background = re.search(r"(^|[^&])&(\s+\w+=\$!)?\s*$", command.text) is not None
                into = expected.anywhere if background else expected.ordered
                into += [(command.where, localize(line)) for line in command.output]
        else:
            parts.append(made.ports.command(localize(block.text)))
    return "\n".join(parts) + "\n", expected


def run_as_script(made: Machine, blocks: list[Block]) -> None:
    script, expected = _script(made, blocks, console_only=False)
    (made.root / "page.sh").write_text(script)
    log = made.root / "page.log"
    with open(log, "wb") as out:  # a file, not a pipe: what the script leaves running may hold it open
        proc = subprocess.Popen(
            ["bash", "-e", "page.sh"], cwd=made.root, env=made.env(), stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            code = proc.wait(SCRIPT_SECONDS)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            left = _left_running(proc.pid)
            proc.wait()
    text = log.read_text(errors="replace")
    assert code is not None, f"{made.page}: the script did not end in {SCRIPT_SECONDS:g} s:\n{_tail(text)}"
    assert code == 0, f"{made.page}: the script exited {code}:\n{_tail(text)}"
    expected.check(text, "as a script")
    assert not left, f"{made.page}: the script left these running (stop them with kill $PID): {left}"
    for name, state, status in made.containers():
        assert state == "running" or status.startswith("Exited (0)"), f"{made.page}: container {name}: {status}"


def run_pasted(made: Machine, blocks: list[Block]) -> None:
    """The console commands typed at once into an interactive bash on a
    pseudo-terminal (job control on), then a line that says they are done."""
    script, expected = _script(made, blocks, console_only=True)
    env = {**made.env(), "PS1": "$ ", "TERM": "dumb", "INPUTRC": "/dev/null", "HISTFILE": "/dev/null"}
    pid, fd = os.forkpty()
    if pid == 0:  # the child: bash, with the pseudo-terminal as its controlling terminal
        os.chdir(made.root)
        os.execvpe("bash", ["bash", "--norc", "--noprofile", "-i"], env)
    output = bytearray()
    done = threading.Event()
    sentinel = b"pasted-and-done-2"

    def read() -> None:
        while True:
            try:
                ready, _, _ = select.select([fd], [], [], 1.0)
                if ready:
                    data = os.read(fd, 65536)
                    if not data:
                        break
                    output.extend(data)
                    if sentinel in output:
                        done.set()
            except OSError:
                break
        done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        paste = (script + "echo pasted-and-done-$((1 + 1))\n").encode()
        while paste:
            paste = paste[os.write(fd, paste) :]
        assert done.wait(SCRIPT_SECONDS), f"{made.page}: the pasted commands did not end:\n{_tail(output.decode())}"
        os.write(fd, b"exit\n")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0):
            time.sleep(0.05)
    finally:
        left = _left_running(pid)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        reader.join(5)
        os.close(fd)
    text = output.decode(errors="replace")
    expected.check(text, "pasted at once")
    assert not [cmd for cmd in left if cmd], f"{made.page}: the pasted commands left these running: {left}"


def run_checked(made: Machine, block: Block) -> None:
    """The block as written, ``pylb`` standing for ``pylb --check``."""
    lines = shell_lines(block)
    script = 'pylb() { command pylb --check "$@"; }\n' + block.text
    env = {k: v for k, v in made.env().items() if not k.startswith("PYLB_TEST_DOCS_")}
    done = subprocess.run(["bash", "-ec", script], cwd=made.root, env=env, capture_output=True, text=True,
                          timeout=CHECK_SECONDS, stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, f"{block.where}: pylb --check exited {done.returncode}: {done.stderr.strip()}"
    assert done.stderr == "", f"{block.where}: warnings: {done.stderr.strip()}"
    oks = [line for line in done.stdout.splitlines() if line.startswith("pylb --check: ok: ")]
    assert len(oks) == len(lines), f"{block.where}: {len(lines)} commands, {len(oks)} ok lines: {done.stdout}"


def run_until_interrupted(made: Machine, block: Block) -> None:
    """Run it until the demo is ready, ask it twice (two backends answer, as
    the README says), then Ctrl-C (SIGINT to its process group)."""
    (command,) = shell_lines(block)
    proc = subprocess.Popen(
        ["bash", "-c", made.ports.command(made.ports.local(command))], cwd=made.root, env=made.env(),
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + SCRIPT_SECONDS
        line = b""
        while not line.startswith(b"pylb demo: ") and time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 1.0)[0]:
                line = proc.stdout.readline()
                assert line, f"{block.where}: ended before the demo was ready (exit {proc.wait()})"
        assert line.startswith(b"pylb demo: "), f"{block.where}: the demo was not ready in time"
        url = f"http://127.0.0.1:{made.ports[8080]}/"
        served = [httpx.get(url, timeout=30).headers["x-served-by"] for _ in range(2)]
        assert served[0] != served[1], f"{block.where}: two requests, one backend: {served}"
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(30) == 0, f"{block.where}: Ctrl-C: exit {proc.returncode}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        _left_running(proc.pid)


def _runs(page: str) -> list[Block]:
    return [block for block in page_blocks(page) if kind(page, block) == "run"]


RUN_PAGES = [page for page in PAGES if _runs(page)]
PASTE_PAGES = [page for page in RUN_PAGES if any(b.lang == "console" and not has_docker(b) for b in _runs(page))]
CHECKS = [(page, b) for page in PAGES for b in page_blocks(page) if kind(page, b) == "check"]
DEMOS = [(page, b) for page in PAGES for b in page_blocks(page) if kind(page, b) == "until Ctrl-C"]


@pytest.mark.timeout(SCRIPT_SECONDS + 600)
@pytest.mark.parametrize("page", RUN_PAGES)
def test_the_pages_blocks_run_as_a_script(page: str, tmp_path: Path) -> None:
    blocks = _runs(page)
    with machine(page, tmp_path, [b.text for b in blocks]) as made:
        run_as_script(made, blocks)


@pytest.mark.timeout(SCRIPT_SECONDS + 300)
@pytest.mark.parametrize("page", PASTE_PAGES)
def test_the_pages_console_commands_pasted_at_once(page: str, tmp_path: Path) -> None:
    blocks = _runs(page)
    with machine(page, tmp_path, [b.text for b in blocks if b.lang == "console"]) as made:
        run_pasted(made, blocks)


@pytest.mark.parametrize(("page", "block"), CHECKS, ids=[b.where for _, b in CHECKS])
def test_the_blocks_naming_other_machines_pass_pylb_check(page: str, block: Block, tmp_path: Path) -> None:
    with machine(page, tmp_path, []) as made:
        run_checked(made, block)


@pytest.mark.timeout(SCRIPT_SECONDS + 120)
@pytest.mark.parametrize(("page", "block"), DEMOS, ids=[b.where for _, b in DEMOS])
def test_the_demo_runs_until_ctrl_c(page: str, block: Block, tmp_path: Path) -> None:
    with machine(page, tmp_path, [block.text]) as made:
        run_until_interrupted(made, block)
