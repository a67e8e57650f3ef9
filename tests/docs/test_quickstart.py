"""Every command of docs/quickstart.md's ``console`` blocks, run in order.

The page's ``$ `` lines are run one after the other, as a reader would type
them in one shell, and the output the page shows after a command must be the
output it prints. The Docker part of the page (``sh`` blocks) is not run
here: the image's tests (tests/image/test_seed_walkthrough.py) run the same
walkthrough (links, the socket, SSL_CERT) against a real Docker engine.

How the shell is stood in for:
- Ports: the page uses fixed ports (8080, 8081, 8082, 8443); the test maps
  each to a port that is free now, in commands and in the output shown, and
  gives ``pylb demo`` (whose default is 127.0.0.1:8080) the mapped port with
  ``--bind``. So the test never depends on what else listens on this machine.
- ``CMD &``: started in the background, in its own process group (a job, as
  in an interactive shell); the test waits, bounded, for its readiness line
  ("listening on" on stderr, or ``pylb demo:`` on stdout), never by sleeping.
- ``kill %N``: SIGTERM to job N's process group (what bash does); the job
  must exit 0 (pylb drains, then exits 0). Job numbers are bash's: the
  lowest number above the jobs still running.
- ``. .venv/bin/activate``: sets ``VIRTUAL_ENV`` and ``PATH`` as the script does.
- Everything runs in a scratch copy of the repository (what ``pip install .``
  needs), so ``.venv`` and the certificate files land there. The fresh venv
  sees this interpreter's site-packages (a ``.pth`` file) when the Python
  versions match, so ``pip install .`` finds pylb's dependencies installed
  and only fetches the build backend; the pylb it installs is the venv's own.
Every job still running at the end is stopped by its process group id.
"""

from __future__ import annotations

import itertools
import os
import queue
import re
import shutil
import signal
import site
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pylb.config import OPTIONS
from tests.docs.doctext import Command, blocks, commands

ROOT = Path(__file__).resolve().parents[2]
DOC_PORTS = (8080, 8081, 8082, 8443)
READY = re.compile(r"listening on|^pylb demo: ")
FOREGROUND_SECONDS = 60.0
INSTALL_SECONDS = 600.0  # pip install: builds pylb (and may download the build backend)
READY_SECONDS = 30.0
STOP_SECONDS = 20.0


def quickstart() -> list[Command]:
    return [command for block in blocks("quickstart.md", "console") for command in commands(block)]


# -- the page itself ---------------------------------------------------------------------------


def test_the_console_blocks_are_the_part_without_docker() -> None:
    for block in blocks("quickstart.md", "console"):
        assert "docker" not in block.text, f"{block.where}: Docker commands go in sh blocks (tests/image/ runs them)"
    assert any("docker run" in block.text for block in blocks("quickstart.md", "sh"))


def test_the_page_shows_the_seed_walkthrough_with_answers_alternating() -> None:
    steps = quickstart()
    texts = [step.text for step in steps]
    assert "pip install ." in texts
    assert any(text.startswith("pylb demo") for text in texts)
    assert sum(text.startswith("pylb hello ") for text in texts) == 2
    answers = [step.output for step in steps if step.text.startswith("curl ")]
    assert answers[:2] == [["Hello from hello-1"], ["Hello from hello-2"]], "the demo's two curls alternate"
    named = [a[0] for a in answers[2:]]
    assert named and all(a in ("Hello from web1", "Hello from web2") for a in named)
    assert all(x != y for x, y in itertools.pairwise(named)), "each curl goes to the other backend"


# -- running it ----------------------------------------------------------------------------------


class Job:
    """A background command: its process (a process group of its own) and
    every line it printed, read by two threads so its pipes never fill."""

    def __init__(self, number: int, command: Command, proc: subprocess.Popen[bytes]) -> None:
        self.number = number
        self.command = command
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []
        self.events: queue.Queue[str | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read, args=(proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, pipe: object, into: list[str]) -> None:
        for raw in iter(pipe.readline, b""):  # type: ignore[attr-defined]
            line = raw.decode(errors="replace").rstrip("\n")
            into.append(line)
            self.events.put(line)
        self.events.put(None)  # end of this pipe

    def wait_ready(self, stdout_lines: int) -> None:
        """Until a readiness line has come and ``stdout_lines`` lines are on
        stdout; fails when the job ends first or the deadline passes."""
        ready, closed = False, 0
        while not (ready and len(self.out) >= stdout_lines):
            try:
                line = self.events.get(timeout=READY_SECONDS)
            except queue.Empty:
                silent = f"{self.command.where}: no readiness line within {READY_SECONDS} s\n{self}"
                raise AssertionError(silent) from None
            if line is None:
                closed += 1
                if closed == 2:
                    raise AssertionError(f"{self.command.where}: the job ended before it was ready\n{self}")
            elif READY.search(line):
                ready = True

    def stop(self, check: bool) -> None:
        """SIGTERM to the job's process group, then wait (bounded); with
        ``check``, it must exit 0."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            stuck = f"{self.command.where}: the job did not stop within {STOP_SECONDS} s\n{self}"
            raise AssertionError(stuck) from None
        for reader in self._readers:
            reader.join(STOP_SECONDS)
        if check:
            assert code == 0, f"{self.command.where}: the job exited {code} on SIGTERM\n{self}"

    def __str__(self) -> str:
        return (
            f"[{self.number}] {self.command.text}\nstdout:\n"
            + "\n".join(self.out)
            + "\nstderr:\n"
            + "\n".join(self.err[-40:])
        )


class Shell:
    """Runs the page's commands one by one, as one interactive shell would."""

    def __init__(self, cwd: Path, ports: dict[int, int]) -> None:
        self.cwd = cwd
        self.ports = ports
        self.jobs: dict[int, Job] = {}
        self.env = {k: v for k, v in os.environ.items() if not _pylb_setting(k)}
        self.env.pop("PYTHONPATH", None)  # the pylb that runs must be the one pip installs
        self.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def localize(self, text: str) -> str:
        return re.sub(r":(\d{4})\b", lambda m: f":{self.ports.get(int(m.group(1)), m.group(1))}", text)

    def run(self, command: Command) -> None:
        text = self.localize(command.text)
        expected = [self.localize(line) for line in command.output]
        if re.fullmatch(r"(\.|source) \S+/bin/activate", text):
            self._activate(self.cwd / text.split()[1].rsplit("/bin/", 1)[0])
        elif text.startswith("kill "):
            self._kill(command, text)
        elif text.endswith("&"):
            self._background(command, text[:-1].strip(), expected)
        else:
            self._foreground(command, text, expected)

    def _foreground(self, command: Command, text: str, expected: list[str]) -> None:
        seconds = INSTALL_SECONDS if text.startswith("pip ") else FOREGROUND_SECONDS
        done = subprocess.run(
            ["bash", "-c", text], cwd=self.cwd, env=self.env, capture_output=True, timeout=seconds, check=False
        )
        out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        assert done.returncode == 0, f"{command.where}: `{text}` exited {done.returncode}\n{out}\n{err[-4000:]}"
        if expected:
            assert out.splitlines() == expected, f"{command.where}: `{text}` printed\n{out}\n(stderr: {err[-2000:]})"
        venv = re.fullmatch(r"python3? -m venv (\S+)", text)
        if venv:
            _share_site_packages(self.cwd / venv.group(1))
        if text.startswith("pip install") and "VIRTUAL_ENV" in self.env:
            found = shutil.which("pylb", path=self.env["PATH"])
            assert found == os.path.join(self.env["VIRTUAL_ENV"], "bin", "pylb"), f"{command.where}: pylb is {found}"

    def _background(self, command: Command, text: str, expected: list[str]) -> None:
        if text.startswith("pylb demo") and "--bind" not in text:
            text += f" --bind 127.0.0.1:{self.ports[8080]}"  # the demo's default address is 127.0.0.1:8080
        assignments, rest = re.fullmatch(r"((?:[A-Za-z_]\w*=(?:\"[^\"]*\"|'[^']*'|\S)*\s+)*)(.*)", text).groups()  # type: ignore[union-attr]
        proc = subprocess.Popen(
            ["bash", "-c", f"{assignments}exec {rest}"],  # exec: the job's pid is the program's
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        number = max(self.jobs, default=0) + 1
        job = self.jobs[number] = Job(number, command, proc)
        job.wait_ready(len(expected))
        if expected:
            assert job.out[: len(expected)] == expected, f"{command.where}: the job printed\n{job}"

    def _kill(self, command: Command, text: str) -> None:
        targets = text.split()[1:]
        assert targets and all(re.fullmatch(r"%\d+", t) for t in targets), f"{command.where}: only `kill %N...`"
        for target in targets:
            job = self.jobs.pop(int(target[1:]), None)
            assert job is not None, f"{command.where}: there is no job {target}"
            job.stop(check=True)

    def _activate(self, venv: Path) -> None:
        self.env["VIRTUAL_ENV"] = str(venv)
        self.env["PATH"] = f"{venv / 'bin'}{os.pathsep}{self.env.get('PATH', '')}"
        self.env.pop("PYTHONHOME", None)

    def stop_all(self) -> None:
        for job in self.jobs.values():
            job.stop(check=False)
        self.jobs.clear()


def _pylb_setting(name: str) -> bool:
    """Environment variables pylb reads (they would change what the page shows)."""
    return name.startswith("PYLB_") or any(option.env == name for option in OPTIONS)


def _share_site_packages(venv: Path) -> None:
    """Let a fresh venv of this Python version see the packages installed for
    the test run (pylb's dependencies), after its own."""
    python = venv / "bin" / "python"
    probe = "import sys, sysconfig; print(sys.version_info[:2] == (%d, %d)); print(sysconfig.get_path('purelib'))"
    same, purelib = (
        subprocess.run([str(python), "-c", probe % sys.version_info[:2]], capture_output=True, text=True, check=True)
        .stdout.strip()
        .splitlines()
    )
    if same == "True":
        paths = [p for p in (*site.getsitepackages(), site.getusersitepackages()) if os.path.isdir(p)]
        (Path(purelib) / "_pylb_docs_test_parent.pth").write_text("\n".join(paths) + "\n")


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Shell]:
    for tool in ("bash", "curl", "openssl"):
        if shutil.which(tool) is None:
            pytest.skip(f"the quickstart needs {tool}")
    checkout = tmp_path / "pylb"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    checkout.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, checkout / name)
    shutil.copytree(ROOT / "pylb", checkout / "pylb", ignore=ignore)
    runner = Shell(checkout, dict(zip(DOC_PORTS, _free_ports(len(DOC_PORTS)), strict=True)))
    try:
        yield runner
    finally:
        runner.stop_all()


@pytest.mark.timeout(INSTALL_SECONDS + 300)
def test_every_quickstart_command_runs_and_prints_what_the_page_shows(shell: Shell) -> None:
    steps = quickstart()
    assert len(steps) >= 15
    for step in steps:
        shell.run(step)
    assert not shell.jobs, f"the page leaves jobs running: {sorted(shell.jobs)} (end it with kill)"
