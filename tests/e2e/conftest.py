"""Run ``async def`` tests under trio, with or without pytest-trio.

With pytest-trio and ``trio_mode = true`` (pyproject), pytest-trio runs them
and this hook steps aside (it sees a plain function). Without it, each async
test function runs in its own ``trio.run`` here. A generous guard
(``trio.fail_after``) turns a hang into a failure naming the test; it is a
safety net, never an assertion about speed.
"""

from __future__ import annotations

import functools
import inspect

import pytest
import trio

GUARD_SECONDS = 30


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    fn = pyfuncitem.obj
    if not inspect.iscoroutinefunction(fn):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs = {name: pyfuncitem.funcargs[name] for name in names}

    async def main() -> None:
        with trio.fail_after(GUARD_SECONDS):
            await fn(**kwargs)

    trio.run(functools.partial(main))
    return True
