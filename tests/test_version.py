"""`pylb --version` says which pylb this is."""

import subprocess
import sys


def test_version() -> None:
    import pylb

    result = subprocess.run([sys.executable, "-m", "pylb", "--version"], capture_output=True, text=True, timeout=30)
    assert (result.returncode, result.stdout.strip()) == (0, f"pylb {pylb.__version__}")
