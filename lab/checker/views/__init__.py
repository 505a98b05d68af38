"""The views of a check: each one module of this package, found by its `VIEW`.

A view plans its runs (adaptively, from earlier results, if it needs), and contributes its section of
the report data and, if it has any, headline cells. Adding a view is adding a module here, its template
section (`lab/report/templates/views/<name>.{html,md}.j2`) and its docs; the CLI, the check, the result
and the report model take every view from `VIEWS`.

The headline cell for an attack and a protection merges what the views say, the strongest first:

- `needed` (ablation): `recommended` minus this protection let the attack through while `recommended`
  did not: nothing else of `recommended` stops the attack without it;
- `enough_alone` (defence-sets): this protection alone, added to the attack's floor, stops it;
- `part_of_a_set` (defence-sets): it stops the attack only together with others (a minimal set);
- `undetermined`: a run the cell depends on ended in `error`, and no view says more;
- `no_effect`: every view that looked at it says it makes no difference.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol

from lab.channel.protections import PROTECTION_IDS
from lab.stacks import EVERY_PROTECTION, attacks_on

if TYPE_CHECKING:
    from lab.checker.runner import Runner, RunResult
    from lab.stacks.scenario import Scenario


@dataclass(frozen=True)
class CellKind:
    """One value a headline cell can have: the report's word for it, the terminal's glyph, its meaning."""

    value: str
    text: str
    glyph: str
    legend: str


CELL_KINDS: Final = (
    CellKind("needed", "needed", "●", "without it, recommended lets the attack through"),
    CellKind("enough_alone", "alone", "○", "added alone to the attack's floor, it stops the attack"),
    CellKind("part_of_a_set", "in a set", "◐", "it stops the attack only together with others"),
    CellKind("undetermined", "?", "?", "a run it depends on ended in error"),
    CellKind("no_effect", "·", "·", "it makes no difference to the attack"),
)
"""Strongest first: the headline shows the strongest value any view gives a cell."""
CELL_VALUES: Final = tuple(kind.value for kind in CELL_KINDS)

STOPPED: Final = ("blocked", "unaffected")
"""Verdicts in which the attack did not get through."""


@dataclass(frozen=True)
class Cell:
    value: str
    runs: tuple[str, ...]
    """The scenario ids this cell was derived from."""


Headline = dict[str, dict[str, Cell]]


@dataclass(frozen=True)
class Placement:
    """Where a scenario appears in a view (one scenario can appear in several)."""

    view: str
    attack: str
    label: str
    """What the scenario is in its view: 'baseline', a protection id, a ladder level, a set."""
    scenario: Scenario


@dataclass
class ViewOutcome:
    placements: list[Placement] = field(default_factory=list)
    section: dict[str, Any] = field(default_factory=dict)
    """This view's part of report.json (`sections.<name>`), JSON-ready; its `summary`, a list of lines,
    if any, is printed after the headline in the terminal."""
    headline: Headline = field(default_factory=dict)
    """The cells this view can tell, by attack and protection."""


class View(Protocol):
    name: ClassVar[str]
    order: ClassVar[int]
    """Where the view comes in the report and the CLI."""
    stack: ClassVar[str]
    """The stack (`lab.stacks`) its scenarios run on: it is given the attacks that apply to it."""
    summary: ClassVar[str]
    """One line for `--help`."""
    flags: ClassVar[Mapping[str, str]]
    """Switches it takes (`mitmlab check --NAME`), with their help."""
    needs_lab_network: ClassVar[bool]
    """Whether its runs need lanes whose roles are hosts of a lab network (ARP positioning)."""

    @property
    def programs(self) -> tuple[str, ...]:
        """The system programs its runs start (`lab.system`: the check installs them where it can)."""
        ...

    async def run(
        self, runner: Runner, attacks: tuple[str, ...], settings: Mapping[str, bool]
    ) -> ViewOutcome:
        """Its runs, its section and its headline cells; `settings` holds the value of each of its flags."""
        ...


def _discover() -> dict[str, View]:
    found: list[View] = []
    for module in pkgutil.iter_modules(__path__):
        view = getattr(importlib.import_module(f"{__name__}.{module.name}"), "VIEW", None)
        if view is not None:
            found.append(view)
    return {view.name: view for view in sorted(found, key=lambda v: v.order)}


def views_here(*, lab_network: bool) -> tuple[str, ...]:
    """The names of the views that can run on lanes with (or without) a lab network, in order."""
    return tuple(name for name, view in VIEWS.items() if lab_network or not view.needs_lab_network)


def views_on(stack: str, *, lab_network: bool = False) -> tuple[str, ...]:
    """The names of the views whose scenarios run on `stack` (on lanes with, or without, a lab
    network), in order."""
    return tuple(name for name in views_here(lab_network=lab_network) if VIEWS[name].stack == stack)


def attacks_for(view: View, attacks: Iterable[str]) -> tuple[str, ...]:
    """Those of `attacks` that apply to the view's stack."""
    return attacks_on(view.stack, attacks)


def cell_for(runs: Iterable[RunResult | None], value: str) -> Cell:
    """`value` unless a run it rests on ended in error (then `undetermined`)."""
    used = [r for r in runs if r is not None]
    ids = tuple(r.scenario.id for r in used)
    return Cell("undetermined" if any(r.verdict.verdict == "error" for r in used) else value, ids)


def merge_headlines(outcomes: Iterable[ViewOutcome], attacks: tuple[str, ...]) -> Headline:
    """Per cell the strongest value any view gives it, with the runs of every view that looked. The
    columns: the lab channel's protections, then the link layer's where a view told of them
    (`static_arp`, on a lab network)."""
    told = [outcome.headline for outcome in outcomes if outcome.headline]
    if not told:
        return {}
    told_of = {p for h in told for row in h.values() for p in row}
    columns = [*PROTECTION_IDS, *(p for p in EVERY_PROTECTION if p in told_of and p not in PROTECTION_IDS)]
    table: Headline = {}
    for attack in attacks:
        row: dict[str, Cell] = {}
        for protection in columns:
            cells = [h[attack][protection] for h in told if protection in h.get(attack, {})]
            if not cells:  # no view could tell (the attack never got through anywhere): nothing to stop
                row[protection] = Cell("no_effect", ())
                continue
            strongest = min(cells, key=lambda c: CELL_VALUES.index(c.value))
            runs = tuple(dict.fromkeys(run for c in cells for run in c.runs))
            row[protection] = Cell(strongest.value, runs)
        table[attack] = row
    return table


VIEWS: Final[Mapping[str, View]] = _discover()  # last: the views import what is above
