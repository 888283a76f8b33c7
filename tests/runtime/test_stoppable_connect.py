"""Ctrl-C or SIGTERM while the pods are still connecting ends the session like one while
streaming: the caller gets control back to close its transports and report."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from fusion_edge.runtime.simulated_kit import stoppable_connect


def _connect_then_stop(stop: str) -> tuple[list[bool], list[str], bool]:
    said: list[str] = []
    closed = []

    async def session() -> list[bool]:
        async with stoppable_connect(said.append) as stopped:
            try:
                if stop == "sigterm":
                    os.kill(os.getpid(), signal.SIGTERM)
                else:
                    asyncio.current_task().cancel()  # what asyncio.run does on Ctrl-C
                await asyncio.sleep(5)  # the pods' connect, never finished
            finally:
                closed.append(True)  # the transports' own clean-up still runs
        await asyncio.sleep(0)  # not cancelled any more: closing and reporting go on
        return stopped

    return asyncio.run(session()), said, bool(closed)


@pytest.mark.parametrize("stop", ["ctrl-c", "sigterm"])
def test_a_stop_while_connecting_returns_to_the_caller(stop: str) -> None:
    stopped, said, closed = _connect_then_stop(stop)
    assert stopped == [True] and closed
    assert said == ["stopped while connecting: nothing was streamed"]


def test_a_session_that_connects_is_not_marked_stopped() -> None:
    async def session() -> list[bool]:
        async with stoppable_connect(lambda _m: None) as stopped:
            await asyncio.sleep(0)
        return stopped

    assert asyncio.run(session()) == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is gone again
