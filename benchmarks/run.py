"""Entry point of the side-by-side benchmark, pylb against HAProxy; the work is in harness.py.

    python benchmarks/run.py [--duration SECONDS] [--cases a,b,c] [--out benchmarks/results]

See benchmarks/README.md for what each case measures. Exit codes: 0 run complete (whatever the
verdicts), 1 a HAProxy baseline failed, 2 cannot run (something missing: it installs nothing).
"""

import sys
from pathlib import Path


def _main() -> int:
    if __package__ in (None, ""):  # run as a script: import `benchmarks` as a package
        sys.path[0] = str(Path(__file__).resolve().parent.parent)
    from benchmarks.harness import main

    return main()


if __name__ == "__main__":
    sys.exit(_main())
