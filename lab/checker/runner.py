"""The runner: plays scenarios on lanes of roles, through their control ports, and judges each run.

One scenario on one lane: the scenario's stack plays it (`lab.stacks`, each stack's docstring has its
steps) through this runner's `_LaneRun`, which every stack's steps share:

    all:      reset (fresh bank, no pins, no recordings, no evidence), the three roles at once
    server:   configure, as the stack says
    attacker: the scenario's attack (a stack may play a session before it, whose evidence is kept
              apart under pre/)
    client:   the stack's session or visit, dialling the attacker under the server's name
    attacker, server: wait until idle

Positioned by ARP (docs/arp.md), the client dials the server's own address instead, and around its
session:

    client:   warm the ARP cache (an ICMP echo), pin the server's entry if static_arp, watch the cache
    attacker: poison both caches, redirect the server's ports to mitmproxy's transparent listener
    client:   record its entry and the hops once the entry has moved (or after ARP_TAKES)
    ...       the session, as above
    attacker: stop, restore both caches, remove the redirect; client: record its entry again

Right after its reset, the attacker starts capturing the lane's connections (and ARP, through ARP);
once the run is over, its frames are written as `run.pcapng` beside the evidence, with the run's TLS
key logs embedded, and the run's sequence diagram drawn from them as `sequence.svg` (docs/wireshark.md).
An attacker that cannot capture says why, and the run goes on.
The keys of the run's lab-channel sessions, as the client and the server logged them, are written as
`lab.keylog` (lab.channel.keylog).
Every file of a run's evidence holds its secrets (the password, keys, what was on the wire): each is
0600, in a folder the runner makes afresh (0700), and none is written through a link (lab.files).

Then every role's evidence is taken through its control port (so it reaches the report wherever the
roles run) and the verdict computed from it; the lane goes on to its next scenario while a worker
thread writes the run's files into the report, off the event loop that serves every lane. Identical
scenarios (several views share some) run once. A run that times out, or whose roles die, is an
`error` with the reason; the lane is restarted and the other scenarios go on.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import dataclasses
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from lab import files
from lab.capture import Frame
from lab.capture.diagram import Places, sequence_diagram
from lab.capture.pcapng import write_pcapng
from lab.capture.streams import read_capture
from lab.channel.connection import key_fingerprint
from lab.checker.backends import Backend, BackendError, Lane
from lab.control import Connections, ControlError
from lab.events import Event, EvidenceError
from lab.evidence import parse_lines
from lab.net import Address
from lab.stacks import ARP, EVERY_PROTECTION, NAMES, STACKS, CannotPlay, NotRunHere
from lab.stacks.scenario import Scenario
from lab.state import ROLES, StateDir
from lab.verdict import NOT_RUN_HERE, GroundTruth, RunEvidence, Verdict

SCENARIO_TIMEOUT: Final = 30.0
ARP_TAKES: Final = 3.0
"""How long the client's entry may take to move once the poisoning starts: an interval of forged
replies, with room to spare; an entry that has not moved by then will not."""
EVIDENCE_TIMEOUT: Final = 5.0


def ground_truth(state: StateDir) -> GroundTruth:
    key = state.server_leaf().private_key.public_key()
    return GroundTruth(password=state.client_password(), server_key=key_fingerprint(key))


@dataclass
class RunResult:
    scenario: Scenario
    verdict: Verdict
    duration_ms: float
    evidence_dir: str
    """Relative to the report directory."""
    events: dict[str, list[Event]] = field(default_factory=dict)
    pre_events: dict[str, list[Event]] = field(default_factory=dict)
    client_outcome: dict[str, Any] | None = None
    recorded: tuple[str, ...] = ()
    """The roles whose evidence lines are in the report (valid or not)."""
    capture: str | None = None
    """The run's pcapng, relative to the report directory; None: `capture_note` says why."""
    capture_note: str | None = None
    """Why the run has no capture, or what its capture lacks (frames past the size cap, a stop)."""
    diagram: str | None = None
    """The run's sequence diagram (SVG) drawn from its capture, relative to the report directory."""
    no_diagram: str | None = None
    """Why a run with a capture has no diagram."""
    lab_keylog: str | None = None
    """The keys of the run's lab-channel sessions (lab.channel.keylog), relative to the report directory."""


class Runner:
    def __init__(
        self,
        backend: Backend,
        lanes: list[Lane],
        truth: GroundTruth,
        out: Path,
        on_result: Callable[[RunResult], None] = lambda result: None,
        timeout: float = SCENARIO_TIMEOUT,
        *,
        on_planned: Callable[[int], None] = lambda runs: None,
        positioning: str = NAMES,
        static_arp: bool = False,
        capture: bool = True,
    ) -> None:
        """`positioning`, `static_arp`: how the attacker gets on the path in every scenario
        the views ask for by name (docs/arp.md); the result's scenario says how it ran. `capture`:
        a pcapng of every run, where the attacker can take one. `on_planned`: told how many runs the
        views have asked for so far, each time that grows (a view that searches asks as it goes)."""
        self.backend = backend
        self.capture = capture
        self.positioning, self.static_arp = positioning, static_arp
        self.truth = truth
        self.out = out
        self.on_result = on_result
        self.on_planned = on_planned
        self.timeout = timeout
        self._lanes: asyncio.Queue[Lane | None] = asyncio.Queue()
        """Lanes free to run a scenario; None once every lane is lost."""
        for lane in lanes:
            self._lanes.put_nowait(lane)
        self._live_lanes = len(lanes)
        self.on_a_lab_network = bool(lanes) and all(
            lane.network is not None and lane.transparent is not None for lane in lanes
        )
        """Whether the lanes' roles are hosts of a lab network, where a scenario can run through ARP."""
        self._lost: list[str] = []
        self._runs: dict[str, asyncio.Task[RunResult]] = {}
        self._networks: dict[tuple[tuple[str, str], ...], asyncio.Lock] = {}

    @property
    def results(self) -> dict[str, RunResult]:
        return {
            sid: task.result() for sid, task in self._runs.items() if task.done() and not task.cancelled()
        }

    async def run(self, scenario: Scenario) -> RunResult:
        """The scenario's result, running it unless it ran (or is running) already."""
        if scenario.id not in self._runs:
            played = scenario
            if self.positioning != NAMES and scenario.positioning == NAMES:
                played = scenario.positioned(self.positioning, static_arp=self.static_arp)
            self._runs[scenario.id] = asyncio.create_task(self._on_a_lane(played))
            self.on_planned(len(self._runs))
        return await self._runs[scenario.id]

    async def _on_a_lane(self, scenario: Scenario) -> RunResult:
        lane = await self._lanes.get()
        if lane is None:
            self._lanes.put_nowait(None)  # for the next scenario waiting
            played = self._unplayable(scenario)
        else:
            try:
                async with self._network_of(lane, scenario):
                    played = await self._play(lane, scenario)
                if played.result.verdict.error or await self.backend.dead_roles(lane):
                    lane = await self.backend.restart(lane)
            except BackendError as exc:  # the lane did not come back: the others go on without it
                self._lost.append(f"lane {lane.number}: {exc}")
                self._live_lanes -= 1
                lane = None
            finally:
                if lane is not None or self._live_lanes == 0:
                    self._lanes.put_nowait(lane)
        result = await self._write(played)  # the lane plays its next scenario meanwhile
        self.on_result(result)
        return result

    def _network_of(self, lane: Lane, scenario: Scenario) -> contextlib.AbstractAsyncContextManager[Any]:
        """An ARP run holds its lab network for itself: lanes whose roles share hosts (compose's
        containers run every lane) share their ARP caches, which one run poisons, pins and restores."""
        if scenario.positioning != ARP or lane.network is None:
            return contextlib.nullcontext()
        return self._networks.setdefault(tuple(sorted(lane.network.items())), asyncio.Lock())

    def _unplayable(self, scenario: Scenario) -> _Played:
        verdict = Verdict("error", error=f"no lane left to run it ({'; '.join(self._lost)})")
        result = RunResult(scenario, verdict, 0.0, f"evidence/{scenario.id}")
        return _Played(result, _RunFiles(scenario.id))

    async def _write(self, played: _Played) -> RunResult:
        """The run's files written (`_write_run`) off the event loop, and the result that links them."""
        wire = await asyncio.to_thread(_write_run, self.out, played.files)
        relative = played.result.evidence_dir
        return dataclasses.replace(
            played.result,
            capture=f"{relative}/run.pcapng" if wire.written else None,
            capture_note=wire.note,
            diagram=f"{relative}/sequence.svg" if wire.drawn else None,
            no_diagram=wire.not_drawn,
        )

    async def _play(self, lane: Lane, scenario: Scenario) -> _Played:
        """The run played, its evidence taken and judged; its files are left for `_write`."""
        started = time.perf_counter()
        run = RunEvidence(attacked=scenario.attack is not None)
        outcome: dict[str, Any] | None = None
        not_here: str | None = None
        pre_lines: dict[str, list[str]] = {}
        wire = _Wire()
        connections = Connections()
        playing = _CONNECTIONS.set(connections)
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    outcome = await STACKS[scenario.stack].play(
                        _LaneRun(lane, scenario, wire, pre_lines, self.capture), scenario
                    )
                    run.client_outcome = outcome["outcome"]
            except TimeoutError:
                run.lab_error = f"the scenario did not finish within {self.timeout:g} s"
            except NotRunHere as exc:
                not_here = str(exc)
            except CannotPlay as exc:
                run.lab_error = str(exc)
            except (ControlError, OSError) as exc:
                dead = await self.backend.dead_roles(lane, settle=1.0)
                run.lab_error = (
                    f"a role died: {'; '.join(dead)}" if dead else f"a role failed to answer: {exc}"
                )
            except Exception as exc:  # a bug in the runner: this run is an error, the others go on
                run.lab_error = f"the runner failed: {type(exc).__name__}: {exc}"
            frames, lab_keylog, taken = await asyncio.gather(  # a dead role took its evidence with it
                _take_capture(lane, wire), _take_lab_keylogs(lane), _take_all_evidence(lane)
            )
        finally:
            _CONNECTIONS.reset(playing)
            connections.close()
        run.events = taken.events
        if taken.missing and run.lab_error is None:  # evidence that is not there must not look like "nothing"
            run.lab_error = f"evidence could not be taken: {'; '.join(taken.missing)}"
        if taken.invalid and run.lab_error is None:  # nor evidence that does not say what it should
            run.lab_error = f"evidence does not validate: {'; '.join(map(str, taken.invalid[:3]))}"
        duration = (time.perf_counter() - started) * 1000
        keylogs = {role: log for role, log in (outcome or {}).get("keylogs", {}).items() if log}
        pre_events = {
            role: parse_lines(role, lines, EVERY_PROTECTION)[0] for role, lines in pre_lines.items()
        }
        try:
            verdict = (
                Verdict(NOT_RUN_HERE, message=not_here)
                if not_here is not None and run.lab_error is None
                else STACKS[scenario.stack].decide(run, self.truth)
            )
        except Exception as exc:  # evidence the rules cannot read: never a verdict by accident
            verdict = Verdict("error", error=f"the evidence could not be judged: {type(exc).__name__}: {exc}")
        if verdict.verdict == NOT_RUN_HERE:
            wire.note, frames = "nothing ran here, so nothing was captured", None
        relative = f"evidence/{scenario.id}"
        written = tuple(role for role, lines in taken.lines.items() if lines)
        result = RunResult(
            scenario,
            verdict,
            duration,
            relative,
            run.events,
            pre_events,
            outcome,
            written,
            lab_keylog=f"{relative}/lab.keylog" if lab_keylog else None,
        )
        places = Places(lane.attacker_ports, tuple(wire.direct), lane.network)
        return _Played(
            result, _RunFiles(scenario.id, taken.lines, pre_lines, keylogs, lab_keylog, frames, places, wire)
        )


class _LaneRun:
    """One run on one lane: the steps every stack's `play` is made of (`lab.stacks.LaneRun`)."""

    def __init__(
        self, lane: Lane, scenario: Scenario, wire: _Wire, pre_lines: dict[str, list[str]], capture: bool
    ) -> None:
        self.lane, self.scenario, self.wire, self.pre_lines, self.capture = (
            lane,
            scenario,
            wire,
            pre_lines,
            capture,
        )

    def service(self, role: str, name: str) -> Address:
        address = self.lane.services.get(role, {}).get(name)
        if address is None:
            raise ControlError(f"this lane's {role} serves no {name!r}")
        return address

    async def call(self, role: str, cmd: str, *, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
        return await _call(self.lane, role, cmd, timeout=timeout, **params)

    async def fresh(self, configure: Mapping[str, Any], *, attack: bool) -> None:
        """Every role reset and made ready, the three at once, each role's own steps in order."""

        async def attacker() -> None:
            await self.call("attacker", "reset")
            await self._capture()
            if attack:
                await self.call("attacker", "attack", id=self.scenario.attack)

        async def server() -> None:
            await self.call("server", "reset")
            await self.call("server", "configure", **configure)

        await asyncio.gather(attacker(), server(), self.call("client", "reset"))

    async def _capture(self) -> None:
        """The attacker capturing the lane's connections from now on, or why not in `wire`."""
        if not self.capture:
            self.wire.note = "capturing was turned off (--no-capture)"
            return
        answer = await self.call(
            "attacker",
            "capture",
            interface="lo" if self.lane.network is None else "eth0",
            ports=sorted(self.lane.ports),
            arp=self.scenario.positioning == ARP,
        )
        self.wire.began, self.wire.note = bool(answer.get("capturing")), answer.get("why")

    async def set_aside(self) -> None:
        taken = await _take_all_evidence(self.lane)
        if taken.missing or taken.invalid:
            why = "; ".join([*taken.missing, *map(str, taken.invalid)])
            raise ControlError(f"the evidence before the attack could not be taken: {why}")
        self.pre_lines.update(taken.lines)

    def went_direct(self, began: float, ended: float) -> None:
        self.wire.direct.append((began, ended))

    async def through_arp(
        self,
        ports: list[int],
        play: Callable[[Address], Awaitable[dict[str, Any]]],
        *,
        to: int | None = None,
    ) -> dict[str, Any]:
        """`play` with the client dialling the server's own address (at the first of `ports`, which
        are all redirected); the attacker is on the path only if its poisoning of both caches took
        (docs/arp.md)."""
        network, transparent = self.lane.network, self.lane.transparent
        if network is None or transparent is None:
            raise ControlError("this lane's roles share one host: ARP positioning needs a lab network")
        await self.call("client", "arp_begin", server=network["server"], static_arp=self.scenario.static_arp)
        positioned = await self.call(
            "attacker",
            "position",
            client=network["client"],
            server=network["server"],
            redirects=[[port, to or transparent] for port in ports],
        )
        try:
            if positioned.get("positioned"):
                await self.call("client", "arp_during", wait=ARP_TAKES)
                outcome = await play(Address(network["server"], ports[0]))
            else:
                outcome = {"outcome": "not_positioned", "message": positioned.get("error", "")}
            await self.call("attacker", "idle")
        finally:
            await self.call("attacker", "unposition")
            await self.call("client", "arp_end")
        await self.call("server", "idle")
        return outcome


async def _call(lane: Lane, role: str, cmd: str, *, timeout: float = 60.0, **params: Any) -> dict[str, Any]:
    """A control request to one of the lane's roles, on the run's kept connections."""
    address = lane.controls[role]
    return await _CONNECTIONS.get().request(
        address.host, address.port, cmd, params, secret=lane.secret, timeout=timeout
    )


_CONNECTIONS: Final = contextvars.ContextVar[Connections]("_CONNECTIONS")
"""The connections of the run being played: `_play` sets them for its own task and those it starts."""


@dataclass
class _Wire:
    """A run's capture: whether it began, when the client went straight to the server, whether it
    was written, whether its diagram was drawn (or why not)."""

    began: bool = False
    note: str | None = None
    """Why there is no capture, or what the capture lacks."""
    direct: list[tuple[float, float]] = field(default_factory=list)
    written: bool = False
    drawn: bool = False
    not_drawn: str | None = None


@dataclass(frozen=True)
class _RunFiles:
    """What a run leaves in its evidence folder, taken from its roles, to be written by `_write_run`."""

    scenario_id: str
    lines: dict[str, list[str]] = field(default_factory=dict)
    pre_lines: dict[str, list[str]] = field(default_factory=dict)
    """The pin session's evidence, written under pre/."""
    keylogs: dict[str, str] = field(default_factory=dict)
    """Each role's TLS key log (NSS format)."""
    lab_keylog: str = ""
    frames: list[Frame] | None = None
    """The run's capture; None when there is none (`wire` says why)."""
    places: Places | None = None
    wire: _Wire = field(default_factory=lambda: _Wire())


@dataclass(frozen=True)
class _Played:
    result: RunResult
    """Its verdict, and no capture or diagram yet: `_write` links those once written."""
    files: _RunFiles


def _write_run(out: Path, run: _RunFiles) -> _Wire:
    """The run's evidence folder, made afresh (0700) in the report's, with every file of the run; the
    capture's state once written (whether the pcapng was written and the diagram drawn, or why not).
    Run in a worker thread: the files' system calls, reading the capture back and drawing it took some
    4 ms a run on the event loop that serves every lane (docs/benchmarks.md)."""
    evidence = out / "evidence"
    files.own_folder(evidence)
    destination = evidence / run.scenario_id
    shutil.rmtree(destination, ignore_errors=True)
    files.make_fresh_folder(destination)
    _write_evidence(destination, run.lines)
    if run.pre_lines:
        files.make_fresh_folder(destination / "pre")
        _write_evidence(destination / "pre", run.pre_lines)
    for role, keylog in run.keylogs.items():
        files.write_private(destination / f"{role}.keylog", keylog)
    wire = dataclasses.replace(run.wire)
    if run.frames is not None and run.places is not None:
        tls_keylog = "".join(log if log.endswith("\n") else log + "\n" for log in run.keylogs.values())
        _write_wire(destination, run.frames, run.places, wire, tls_keylog)
    if run.lab_keylog:
        files.write_private(destination / "lab.keylog", run.lab_keylog)
    return wire


def _write_wire(destination: Path, frames: list[Frame], places: Places, wire: _Wire, tls_keylog: str) -> None:
    """The run's pcapng, and its sequence diagram drawn from it."""
    try:
        with files.private_by_name(destination / "run.pcapng") as fresh:
            write_pcapng(fresh, frames, tls_keylog=tls_keylog)
    except OSError as exc:  # a full disk: the run and its verdict stand, without their capture
        wire.note = f"the capture could not be written: {exc}"
        return
    wire.written = True
    try:
        svg = sequence_diagram(read_capture(frames), places)
    except Exception as exc:  # a bug in the drawer: the run, its capture and its verdict stand
        wire.not_drawn = f"the diagram could not be drawn: {type(exc).__name__}: {exc}"
        return
    files.write_private(destination / "sequence.svg", svg)
    wire.drawn = True


async def _take_capture(lane: Lane, wire: _Wire) -> list[Frame] | None:
    """The run's frames from the attacker; None, and why in `wire`, when there are none."""
    if not wire.began:
        wire.note = wire.note or "the run ended before its capture began"
        return None
    try:
        answer = await _call(lane, "attacker", "capture_take", timeout=EVIDENCE_TIMEOUT)
        frames = [Frame(float(at), base64.b64decode(data, validate=True)) for at, data in answer["frames"]]
        lacks = (
            [f"{answer['dropped']} frames past the capture's size cap were not kept"]
            if answer["dropped"]
            else []
        )
        if answer.get("lost"):
            lacks.append(f"{answer['lost']} frames were dropped by the kernel before the capture read them")
        if answer.get("failed"):
            lacks.append(str(answer["failed"]))
        wire.note = "; ".join(lacks) or None
        return frames
    except (ControlError, OSError, TimeoutError) as exc:
        wire.note = f"the capture could not be taken: {exc or 'timed out'}"
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        wire.note = f"the attacker's capture does not read: {type(exc).__name__}: {exc}"
    return None


async def _take_lab_keylogs(lane: Lane) -> str:
    """The keys the client and the server logged for the run's lab-channel sessions; a role that does
    not answer gives none (its evidence says the rest)."""
    answers = await asyncio.gather(
        *(_call(lane, role, "lab_keylog", timeout=EVIDENCE_TIMEOUT) for role in ("client", "server")),
        return_exceptions=True,
    )
    return "".join(str(answer.get("lab_keylog", "")) for answer in answers if isinstance(answer, dict))


@dataclass
class TakenEvidence:
    """Every role's evidence lines as the role gave them, the events they validate to, and what failed."""

    lines: dict[str, list[str]] = field(default_factory=dict)
    events: dict[str, list[Event]] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    """For each role that did not give its evidence, why."""
    invalid: list[EvidenceError] = field(default_factory=list)


async def _take_all_evidence(lane: Lane) -> TakenEvidence:
    """Every role's evidence, cleared on the role."""
    taken = TakenEvidence()
    answers = await asyncio.gather(
        *(_call(lane, role, "evidence", take=True, timeout=EVIDENCE_TIMEOUT) for role in ROLES),
        return_exceptions=True,
    )
    for role, answer in zip(ROLES, answers, strict=True):
        if isinstance(answer, ControlError | OSError | TimeoutError):
            taken.missing.append(f"{role}: {answer or 'timed out'}")
            answer = {}
        elif isinstance(answer, BaseException):
            raise answer
        lines = answer.get("lines", [])
        if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
            taken.missing.append(f"{role}: its answer holds no evidence lines")
            lines = []
        taken.lines[role] = lines
        taken.events[role], invalid = parse_lines(role, lines, EVERY_PROTECTION)
        taken.invalid += invalid
    return taken


def _write_evidence(directory: Path, lines: dict[str, list[str]]) -> None:
    """The lines as the roles wrote them, valid or not: what the verdict was computed from. They hold
    the customer's password (what the client sent, what the attacker read): private."""
    for role, role_lines in lines.items():
        files.write_private(directory / f"{role}.jsonl", "".join(f"{line}\n" for line in role_lines))
