"""Ending a bluesky RunEngine: its asyncio event loop (and the thread running it) closed.

A RunEngine runs its own event loop forever on a background thread and has no ``close``:
each one left behind keeps that loop's epoll and self-pipe descriptors open for the life of
the process. :func:`close_engine` ends it once it will run no more plans.
"""

from __future__ import annotations

from typing import Any

from bluesky import run_engine


def close_engine(engine: Any, timeout: float = 5.0) -> None:
    """Stop ``engine``'s event loop, wait for its thread and close the loop (idempotent; an
    engine still running a plan is left as it is)."""
    if getattr(engine, "state", "idle") != "idle":
        return
    loop = engine.loop
    if loop.is_closed():
        return
    threads = getattr(run_engine._ensure_event_loop_running, "loop_to_thread", {})
    thread = threads.pop(loop, None)
    loop.call_soon_threadsafe(loop.stop)
    if thread is not None:
        thread.join(timeout)
    if not loop.is_running():
        loop.close()


__all__ = ["close_engine"]
