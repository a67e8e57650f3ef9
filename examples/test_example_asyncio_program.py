"""The asyncio program runs as its user runs it: ``python examples/asyncio_program.py``."""

import subprocess
import sys
from pathlib import Path


def test_the_asyncio_program_runs() -> None:
    program = Path(__file__).with_name("asyncio_program.py")
    done = subprocess.run([sys.executable, str(program)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "requests, served: {" in done.stdout
