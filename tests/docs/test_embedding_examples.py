"""Every Python example of docs/embedding.md and docs/tls.md, run as it is.

Each ```python block is a complete program: it is executed in a fresh
namespace, so a block that ends with ``trio.run(main)`` runs there; then every
``async def test_*`` it defines is run the way pytest-trio would (under
``trio.run``, with a ``MockClock(autojump_threshold=0)`` for a parameter named
``autojump_clock``). A block that neither calls ``trio.run`` nor defines a test
fails: an example that nothing runs could silently rot. Each example runs in
a thread with a deadline, so a hang fails the test instead of blocking it.
"""

from __future__ import annotations

import inspect
import threading
from typing import Any

import pytest
import trio
import trio.testing

from tests.docs.doctext import Block, blocks

PAGES = ("embedding.md", "tls.md")
EXAMPLES = [block for page in PAGES for block in blocks(page, "python")]
DEADLINE = 60.0


def test_the_pages_have_examples() -> None:
    assert sum(block.page == "embedding.md" for block in EXAMPLES) >= 6


def run_test_function(fn: Any) -> None:
    parameters = list(inspect.signature(fn).parameters)
    assert parameters in ([], ["autojump_clock"]), f"{fn.__name__}: unsupported fixtures {parameters}"
    if parameters:
        clock = trio.testing.MockClock(autojump_threshold=0)
        trio.run(fn, clock, clock=clock)
    else:
        trio.run(fn)


def execute(block: Block) -> list[str]:
    """Run the block and its tests; return the names of the tests run."""
    namespace: dict[str, Any] = {"__name__": f"docs_example_{block.page.replace('.', '_')}_{block.line}"}
    exec(compile(block.text, block.where, "exec"), namespace)
    tests = [
        (name, fn) for name, fn in namespace.items() if name.startswith("test_") and inspect.iscoroutinefunction(fn)
    ]
    for _, fn in tests:
        run_test_function(fn)
    return [name for name, _ in tests]


@pytest.mark.parametrize("block", EXAMPLES, ids=[block.where for block in EXAMPLES])
def test_example_runs(block: Block) -> None:
    assert "trio.run(" in block.text or "async def test_" in block.text, (
        f"{block.where}: an example must run itself (trio.run) or define async test_ functions"
    )
    outcome: list[BaseException | list[str]] = []

    def target() -> None:
        try:
            outcome.append(execute(block))
        except BaseException as exc:  # handed to the test thread below
            outcome.append(exc)

    thread = threading.Thread(target=target, name=block.where, daemon=True)
    thread.start()
    thread.join(DEADLINE)
    assert not thread.is_alive(), f"{block.where}: the example did not finish within {DEADLINE} s"
    (result,) = outcome
    if isinstance(result, BaseException):
        raise result
    if "trio.run(" not in block.text:
        assert result, f"{block.where}: no async test_ function was run"
