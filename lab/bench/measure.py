"""Shared measuring: interleave, repeat, take the median, report a rate.

This machine's speed drifts by tens of percent within minutes. A measurement and its reference are
therefore interleaved (one round of every row, then the next round), so that both meet the same
conditions, and each row reports its median.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    unit: str
    reference: str | None = None
    """The name of the result this one is compared with, if any."""


async def interleaved_rates(
    works: Mapping[str, Callable[[], Awaitable[float]]], repeats: int, tick: Callable[[], None]
) -> dict[str, float]:
    """Each work does something and returns how much (handshakes, bytes); the median rate per second of
    each, measured in interleaved rounds."""
    rates: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(repeats):
        for name, run in works.items():
            start = time.perf_counter()
            amount = await run()
            rates[name].append(amount / (time.perf_counter() - start))
            tick()
    return {name: statistics.median(values) for name, values in rates.items()}


def ratios(results: list[Result]) -> list[tuple[Result, float | None]]:
    by_name = {r.name: r for r in results}
    return [(r, r.value / by_name[r.reference].value if r.reference else None) for r in results]
