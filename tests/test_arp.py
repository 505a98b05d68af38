"""ARP positioning's parts on their own: the kernel's ARP cache read, the detector fed snapshots, the
frames the poisoner sends and the ones that restore. In the lab's namespaces (root only): a real
poisoning, its restore, the static entry that holds, and the detector watching a real cache."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.l2 import ARP, Ether

from lab import events
from lab.arp.neighbours import parse_arp_table
from lab.arp.netns import LabNetwork
from lab.arp.poison import Host, forged_replies, true_replies
from lab.arp.watch import ArpWatch
from lab.checker.backends import Lane
from lab.checker.backends.local import LocalBackend
from lab.control import request
from lab.events import Event
from lab.evidence import parse_lines
from lab.stacks import EVERY_PROTECTION
from lab.stacks.lab_channel import decide
from lab.state import StateDir
from lab.verdict import GroundTruth, RunEvidence, Verdict
from tests.conftest import need_root

pytestmark = [pytest.mark.loopback, pytest.mark.root]

CLIENT, SERVER = Host("10.203.0.2", "02:00:00:00:00:02"), Host("10.203.0.3", "02:00:00:00:00:03")
ATTACKER_MAC = "02:00:00:00:00:04"

TABLE = """IP address       HW type     Flags       HW address            Mask     Device
10.203.0.3       0x1         0x2         02:00:00:00:00:03     *        eth0
10.203.0.9       0x1         0x0         00:00:00:00:00:00     *        eth0
10.203.0.4       0x1         0x6         02:00:00:00:00:04     *        eth0
garbage
"""


def test_the_arp_table_gives_complete_entries_and_says_which_are_permanent() -> None:
    entries = parse_arp_table(TABLE)
    assert sorted(entries) == ["10.203.0.3", "10.203.0.4"]  # .9 is a question still unanswered
    assert entries["10.203.0.3"].mac == SERVER.mac and not entries["10.203.0.3"].permanent
    assert entries["10.203.0.4"].permanent and entries["10.203.0.4"].device == "eth0"


def test_the_detector_sees_an_address_move_and_two_addresses_share_a_mac() -> None:
    watch = ArpWatch()
    assert watch.observe({SERVER.ip: SERVER.mac, "10.203.0.4": ATTACKER_MAC}, at=1.0) == []
    found = watch.observe({SERVER.ip: ATTACKER_MAC, "10.203.0.4": ATTACKER_MAC}, at=2.0)
    assert [(d.kind, d.ip, d.mac, d.before, d.at) for d in found] == [
        ("moved", SERVER.ip, ATTACKER_MAC, SERVER.mac, 2.0),
        ("shared", SERVER.ip, ATTACKER_MAC, "10.203.0.4", 2.0),
    ]
    assert watch.observe({SERVER.ip: ATTACKER_MAC, "10.203.0.4": ATTACKER_MAC}, at=3.0) == []  # once
    restored = watch.observe({SERVER.ip: SERVER.mac, "10.203.0.4": ATTACKER_MAC}, at=4.0)
    assert [(d.kind, d.mac, d.before) for d in restored] == [("moved", SERVER.mac, ATTACKER_MAC)]


def test_a_cache_that_only_learns_raises_nothing() -> None:
    watch = ArpWatch()
    assert watch.observe({}, at=1.0) == []
    assert watch.observe({SERVER.ip: SERVER.mac}, at=2.0) == []  # a first answer is no move


def test_the_forged_replies_put_the_attacker_at_each_victims_peer_gratuitously() -> None:
    to_server, to_client = forged_replies(CLIENT, SERVER, ATTACKER_MAC)
    for frame, victim, other in ((to_client, CLIENT, SERVER), (to_server, SERVER, CLIENT)):
        assert frame[Ether].dst == victim.mac and frame[Ether].src == ATTACKER_MAC
        assert frame[ARP].op == 2
        assert (frame[ARP].psrc, frame[ARP].hwsrc) == (other.ip, ATTACKER_MAC)
        # gratuitous: Linux takes it within its locktime, as it does no other reply
        assert (frame[ARP].pdst, frame[ARP].hwdst) == (frame[ARP].psrc, frame[ARP].hwsrc)


def test_the_true_replies_give_each_victim_its_peers_real_mac() -> None:
    to_client, to_server = true_replies(CLIENT, SERVER, ATTACKER_MAC)
    assert (to_client[ARP].psrc, to_client[ARP].hwsrc) == (SERVER.ip, SERVER.mac)
    assert (to_server[ARP].psrc, to_server[ARP].hwsrc) == (CLIENT.ip, CLIENT.mac)
    assert bytes(to_client) != bytes(forged_replies(CLIENT, SERVER, ATTACKER_MAC)[1])


# In the lab's namespaces: real caches, real frames ---------------------------------------------------


@pytest.fixture(scope="module")
def lanes(
    state_template: StateDir, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[asyncio.Runner, Lane]]:
    """One lane of roles, each in a network namespace of its own on one bridge (root only: CI runs as
    root, and ./run-tests then requires these tests to run)."""
    need_root()
    backend = LocalBackend(state_template, tmp_path_factory.mktemp("arp") / "lanes", namespaces=True)
    with asyncio.Runner() as loop:  # the roles' processes belong to the loop that started them
        [started] = loop.run(backend.start(1))
        try:
            yield loop, started
        finally:
            loop.run(backend.stop())


@pytest.fixture
def lane(lanes: tuple[asyncio.Runner, Lane]) -> Lane:
    """The module's lane, every role reset (caches restored and pins gone with the last test's end)."""
    _, started = lanes
    for role in started.controls:
        call(started, role, "reset")
    return started


def call(lane: Lane, role: str, cmd: str, **params: Any) -> dict[str, Any]:
    address = lane.controls[role]
    return asyncio.run(request(address.host, address.port, cmd, params, secret=lane.secret, timeout=30))


def taken(lane: Lane, role: str) -> list[Event]:
    return parse_lines(role, call(lane, role, "evidence", take=True)["lines"], EVERY_PROTECTION)[0]


def macs_of(lane: Lane) -> dict[str, str]:
    """Each role's MAC on the lab network, as the interfaces say."""
    assert lane.network is not None
    network = LabNetwork.for_lane(lane.number)
    return {
        role: subprocess.run(
            network.exec(role, ["cat", "/sys/class/net/eth0/address"]), capture_output=True, text=True
        ).stdout.strip()
        for role in lane.network
    }


def nat_rules(lane: Lane) -> str:
    """The attacker's nat table, as iptables lists it."""
    network = LabNetwork.for_lane(lane.number)
    listed = subprocess.run(
        network.exec("attacker", ["iptables", "-t", "nat", "-S", "PREROUTING"]),
        capture_output=True,
        text=True,
    )
    return listed.stdout


def poisoned_run(on: Lane, redirects: tuple[tuple[int, int], ...] = (), **begin: Any) -> str:
    """One run through ARP positioning, step by step: the client warms its cache (or not) and watches,
    the attacker poisons (gratuitous replies: they take within Linux's locktime, the second after the
    warming echo), the client looks, the attacker restores, the client looks again. The attacker's nat
    rules, as they were during the run."""
    assert on.network is not None
    client, server = on.network["client"], on.network["server"]
    call(on, "client", "arp_begin", server=server, **begin)
    positioned = call(
        on, "attacker", "position", client=client, server=server, interval=0.1, redirects=list(redirects)
    )
    assert positioned["positioned"], positioned
    time.sleep(0.3)
    call(on, "client", "arp_during")
    during = nat_rules(on)
    call(on, "attacker", "unposition")
    call(on, "client", "arp_end")
    return during


def test_poisoning_moves_the_clients_entry_to_the_attacker_and_restoring_moves_it_back(
    lane: Lane,
) -> None:
    on = lane
    assert on.network is not None
    server, macs = on.network["server"], macs_of(on)
    redirect = (
        on.services["server"]["service"].port,
        4444,
    )  # the lab channel's port, to a transparent listener
    during = poisoned_run(on, redirects=(redirect,))
    assert f"--dport {redirect[0]} -j REDIRECT --to-ports 4444" in during
    assert "REDIRECT" not in nat_rules(on)  # taken away with the poisoning
    seen = taken(on, "client")
    entries = {e.moment: e.mac for e in seen if isinstance(e, events.ArpEntry)}
    assert entries == {"before": macs["server"], "during": macs["attacker"], "after": macs["server"]}
    hops = {e.moment: e.ttl for e in seen if isinstance(e, events.HopsMeasured)}
    assert hops == {"before": 64, "during": 63, "after": 64}  # the attacker's forwarding costs a hop
    detected = [(e.kind, e.ip, e.mac, e.before) for e in seen if isinstance(e, events.ArpDetected)]
    assert ("moved", server, macs["attacker"], macs["server"]) in detected
    assert ("shared", server, macs["attacker"], on.network["attacker"]) in detected
    sent = taken(on, "attacker")
    [poisoning] = [e for e in sent if isinstance(e, events.ArpPoisoning)]
    assert (poisoning.client_mac, poisoning.server_mac) == (macs["client"], macs["server"])
    [replies] = [e for e in sent if isinstance(e, events.ArpReplies)]
    assert replies.count >= 4 and replies.count % 2 == 0 and replies.ended == "stopped"
    assert replies.restored >= 4 and replies.first is not None and replies.last is not None


def test_a_static_entry_holds_under_the_poisoning_and_is_learnt_again_afterwards(
    lane: Lane,
) -> None:
    on = lane
    assert on.network is not None
    server, macs = on.network["server"], macs_of(on)
    poisoned_run(on, static_arp=True)
    seen = taken(on, "client")
    assert [(e.ip, e.mac) for e in seen if isinstance(e, events.ArpPinned)] == [(server, macs["server"])]
    entries = {e.moment: (e.mac, e.permanent) for e in seen if isinstance(e, events.ArpEntry)}
    assert entries["during"] == (macs["server"], True)  # the forged replies moved nothing
    assert entries["after"] == (macs["server"], True)  # held to the end of the run ...
    cache = subprocess.run(
        LabNetwork.for_lane(on.number).exec("client", ["ip", "neigh", "show", server]),
        capture_output=True,
        text=True,
    )
    assert "PERMANENT" not in cache.stdout  # ... and then taken away: the next run starts unpinned
    assert not [e for e in seen if isinstance(e, events.ArpDetected) and e.kind == "moved"]
    # The client's packets go straight to the server, but the server's cache is still poisoned: its
    # answers come back through the attacker, one hop more. static_arp on one side halves the path.
    hops = {e.moment: e.ttl for e in seen if isinstance(e, events.HopsMeasured)}
    assert hops == {"before": 64, "during": 63, "after": 64}


def judged(lane: Lane, **seen: list[Event]) -> Verdict:
    """The verdict the checker gives the run whose evidence is `seen` (by role; a role not in it, its
    evidence taken now)."""
    run = RunEvidence({role: seen[role] if role in seen else taken(lane, role) for role in lane.controls})
    return decide(run, GroundTruth(password="not read by anyone", server_key=""))


def test_a_cold_cache_has_no_entry_for_the_poisoning_to_move(lane: Lane) -> None:
    poisoned_run(lane, warm=False)
    seen = taken(lane, "client")
    entries = {e.moment: e.mac for e in seen if isinstance(e, events.ArpEntry)}
    assert (entries["before"], entries["during"]) == (None, None)  # Linux takes no unsolicited reply
    verdict = judged(lane, client=seen)  # the lab failed to get the attacker in: no protection did
    assert (verdict.verdict, verdict.blocked_by) == ("error", None)
    assert verdict.error is not None and verdict.error.startswith("the ARP poisoning did not take")
    assert "a cold cache (the client never talked)" in verdict.error


def test_an_attacker_that_cannot_find_a_victim_says_so_and_sets_nothing_up(
    lane: Lane,
) -> None:
    on = lane
    assert on.network is not None
    absent = on.network["server"].rsplit(".", 1)[0] + ".200"
    answer = call(on, "attacker", "position", client=absent, server=on.network["server"])
    assert answer["positioned"] is False and f"nobody on eth0 answers for {absent}" in answer["error"]
    attacker = taken(on, "attacker")
    [failed] = [e for e in attacker if isinstance(e, events.PositioningFailed)]
    assert failed.positioning == "arp" and absent in failed.error
    verdict = judged(on, attacker=attacker)
    assert verdict.verdict == "error" and absent in (verdict.error or "")


def in_attacker(lane: Lane, code: str, *, drop: str | None = None) -> str:
    """`code` run by Python in the lane's attacker namespace (with capability `drop` taken away), as
    the attacker role would run it; what it printed."""
    confined = ["setpriv", f"--bounding-set=-{drop}", f"--inh-caps=-{drop}"] if drop else []
    argv = LabNetwork.for_lane(lane.number).exec("attacker", [*confined, sys.executable, "-c", code])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize(
    ("drop", "redirects", "said"),
    [
        ("net_raw", [], "the attacker cannot send raw frames: it needs NET_RAW"),
        ("net_admin", [(4433, 8443)], "(redirecting to mitmproxy needs NET_ADMIN)"),
    ],
)
def test_an_attacker_without_a_capability_says_what_it_needs_and_leaves_nothing_set_up(
    lane: Lane, drop: str, redirects: list[tuple[int, int]], said: str
) -> None:
    """Without NET_RAW no forged reply can be sent; without NET_ADMIN no redirect to mitmproxy (nor
    the forwarding into it) can be set."""
    assert lane.network is not None
    client, server = lane.network["client"], lane.network["server"]
    printed = in_attacker(
        lane,
        "import asyncio\n"
        "from lab.arp.attacker import ArpPositioning\n"
        "from lab.arp.poison import PositioningError\n"
        f"positioning = ArpPositioning(print, 'eth0', {client!r}, {server!r}, {redirects!r})\n"
        "try:\n"
        "    asyncio.run(positioning.start())\n"
        "except PositioningError as exc:\n"
        "    print(exc)\n",
        drop=drop,
    )
    assert printed.strip().endswith(said), printed
    assert "REDIRECT" not in nat_rules(lane)


@pytest.mark.parametrize(
    ("bound", "ended"), [("max_replies=6", "max_replies"), ("max_seconds=0.3", "max_seconds")]
)
def test_the_poisoning_loop_ends_at_its_bounds(lane: Lane, bound: str, ended: str) -> None:
    assert lane.network is not None
    client, server = lane.network["client"], lane.network["server"]
    said = in_attacker(
        lane,
        "import time\n"
        "from lab.arp.poison import ArpPoisoner, resolve\n"
        f"client, server = resolve('eth0', {client!r}), resolve('eth0', {server!r})\n"
        f"poisoner = ArpPoisoner('eth0', client, server, interval=0.05, {bound})\n"
        "poisoner.start()\n"
        "time.sleep(1.5)\n"
        "sent = poisoner.stop()\n"
        "poisoner.restore()\n"
        "print(sent.replies, sent.ended)\n",
    )
    replies, why = said.split()
    assert why == ended and (int(replies) == 6 if ended == "max_replies" else 2 <= int(replies) <= 20)


def test_a_second_check_cannot_take_a_lab_network_another_holds(lane: Lane) -> None:
    """Making a lane's network takes a leftover one down first: never one that a live check holds."""
    code = (
        "from lab.arp.netns import LabNetwork\n"
        "from lab.arp.poison import PositioningError\n"
        "try:\n"
        f"    LabNetwork.for_lane({lane.number}).create()\n"
        "except PositioningError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
    )
    assert "is in use by another check on this host" in done.stdout, done.stdout + done.stderr
    assert call(lane, "client", "status") == {"ok": True}  # and the lane is still there
