"""Shared measuring: repeat, take the median, report a rate."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    unit: str
    reference: str | None = None
    """The name of the result this one is compared with, if any."""


async def median_rate(run: Callable[[], Awaitable[float]], repeats: int, tick: Callable[[], None]) -> float:
    """`run` does some work and returns how much (handshakes, bytes); the median of its rates per second."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        amount = await run()
        rates.append(amount / (time.perf_counter() - start))
        tick()
    return statistics.median(rates)


def ratios(results: list[Result]) -> list[tuple[Result, float | None]]:
    by_name = {r.name: r for r in results}
    return [(r, r.value / by_name[r.reference].value if r.reference else None) for r in results]
