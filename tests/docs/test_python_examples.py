"""Every Python example of README.md and docs/*.md, run as it is written.

A ``python`` block is one of:
- a program: it calls ``trio.run(`` or ``asyncio.run(``; it is executed in a
  fresh namespace, in a thread with a deadline (a hang fails, never blocks);
- a user's test file: it defines ``test_`` functions; it is written to a
  folder of its own and run by pytest in-process (``pytester``) with no
  configuration, so a trio test that is not marked ``@pytest.mark.trio`` fails
  here as it would in the reader's project, and pylb's fixtures come from the
  plugin's entry point;
- excused: listed in ``EXCUSED`` below with the reason. Any other block fails:
  an example that nothing runs could silently rot.
"""

from __future__ import annotations

import ast
import threading
from pathlib import Path
from typing import Any

import httpcore  # noqa: F401  imported before pytester's in-process runs, which forget modules first imported inside them
import pytest

from tests.docs.doctext import DOCS, ROOT, Block, blocks, code_blocks

pytest_plugins = ["pytester"]

PAGES = [block for page in sorted(p.name for p in DOCS.glob("*.md")) for block in blocks(page, "python")]
EXAMPLES = [b for b in code_blocks(ROOT / "README.md") if b.lang == "python"] + PAGES
DEADLINE = 60.0

# (page, a line of the block) -> why CI does not run it
EXCUSED = {
    ("testing.md", "toxiproxy_api("): "needs toxiproxy-server (a Go daemon, not on PyPI) listening on 127.0.0.1:8474",
    ("testing.md", "import proxy"): "needs proxy.py (pip install proxy.py), which CI does not install",
}
# (page, a line of the block) -> what must be there, else the block is skipped
NEEDS_DOCKER = {("discovery.md", "open_docker_discovery(")}


def excuse(block: Block) -> str | None:
    return next((why for (page, line), why in EXCUSED.items() if page == block.page and line in block.text), None)


def test_the_pages_have_examples() -> None:
    assert sum(block.page == "embedding.md" for block in EXAMPLES) >= 6
    assert sum(block.page == "testing.md" for block in EXAMPLES) >= 6
    assert any(block.path == "README.md" for block in EXAMPLES)  # README.md's


def test_every_excuse_still_matches_a_block() -> None:
    for page, line in EXCUSED:
        assert any(b.page == page and line in b.text for b in EXAMPLES), f"{page}: no block has {line!r} any more"


def run_program(block: Block) -> None:
    namespace: dict[str, Any] = {"__name__": "__main__"}
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            exec(compile(block.text, block.where, "exec"), namespace)
            outcome.append(None)
        except BaseException as exc:  # handed to the test thread below
            outcome.append(exc)

    thread = threading.Thread(target=target, name=block.where, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), f"{block.where}: the example did not finish within {DEADLINE} s"
    (error,) = outcome
    if error is not None:
        raise error


def names_of_tests(block: Block) -> list[str]:
    tree = ast.parse(block.text, block.where)
    return [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    ]


@pytest.mark.parametrize("block", EXAMPLES, ids=[block.where for block in EXAMPLES])
def test_example_runs(block: Block, pytester: pytest.Pytester) -> None:
    why = excuse(block)
    if why is not None:
        pytest.skip(f"excused: {why}")
    if any(page == block.page and line in block.text for page, line in NEEDS_DOCKER):
        from tests.discovery.docker_kit import require_docker

        require_docker()
    names = names_of_tests(block)
    if names:
        pytester.makepyfile(**{f"test_{Path(block.page).stem}_{block.line}": block.text})
        result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")
        assert result.parseoutcomes().get("passed", 0) == len(names), (
            f"{block.where}: expected {len(names)} passing tests ({', '.join(names)}):\n" + "\n".join(result.outlines)
        )
        return
    assert "trio.run(" in block.text or "asyncio.run(" in block.text, (
        f"{block.where}: an example must run itself (trio.run or asyncio.run), define test_ functions, "
        f"or be listed in EXCUSED with the reason"
    )
    run_program(block)
