"""Sleeping and wall-clock time, as the host sees it."""

from wit_world.imports import clock as _clock

__all__ = ["now_ms", "sleep"]


def now_ms() -> int:
    """Milliseconds since the UNIX epoch."""
    return _clock.now_ms()


def sleep(ms: int) -> None:
    """Sleeps `ms` milliseconds (the call's events keep queueing)."""
    _clock.sleep(ms)
