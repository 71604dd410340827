"""Several replicas on one PostgreSQL database, as behind a load balancer (issue 4).

Three `budget-receiver serve` processes share one fresh database, one platform (an
HttpSink answering the halt calls) and two apprise json:// alert channels (/a and
/b on another HttpSink). Client threads send signed events for the same tasks to
random replicas, some of them twice (the same webhook-id to two replicas at once,
as a sender retrying through a load balancer does). Spend comes as ``amount``
increments, so the sum is the same in any order, and about half the tasks go over
budget.

Sharing: the work is shared and nothing is done twice: every sum is exact, every
event is stored once, every task at its limit got exactly one halt call and is
halted, every alert went out exactly once per channel, and replaying each task's
stored timeline through the state machine owes exactly the alerts (with the spend
each reports) and the halt call that were made.

A slow channel: alerts that wait behind a slow channel for longer than their lease
keep it (their replica renews it) and are sent once.

A replica killed: one replica is SIGKILLed mid-run while it holds claims on halt
calls the platform is slow to answer. After the lease runs out the others make those
calls: every owed halt arrives (with the same Idempotency-Key), the tasks end halted,
every owed alert arrives at least once.

`pytest -s tests/test_replicas.py` prints the figures.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from receiver.events import parse_event
from receiver.model import AlertKind, BudgetEvent, EventType, Halt, Task
from receiver.state import Policy, transition
from receiver.verify import sign
from tests.daemon import SECRET, Daemon
from tests.servers import HttpSink, Recorded, Reply
from tests.waiting import poll

pytestmark = pytest.mark.slow

REPLICAS = 3
POOL_SIZE = 5  # per replica: 3 x 5 = 15 connections of the server's max_connections
CLIENT_THREADS = 8
THRESHOLDS = (Decimal("0.5"), Decimal("0.8"), Decimal("0.9"))
CHANNELS = ("/a", "/b")
LEASE_SECONDS = 3


# --- the cluster ---------------------------------------------------------------------


@dataclass
class Cluster:
    replicas: list[Daemon]
    platform: HttpSink  # RECEIVER_HALT_URL points here
    alerts: HttpSink  # the /a and /b json:// channels post here
    database_url: str
    senders: list[Sender] = field(default_factory=list)

    def sender(self) -> Sender:
        self.senders.append(Sender(self))
        return self.senders[-1]

    def live(self) -> list[Daemon]:
        return [d for d in self.replicas if d.proc is not None and d.proc.poll() is None]

    def any(self) -> Daemon:
        return random.choice(self.live())  # noqa: S311 - test load spreading, not crypto


@contextmanager
def cluster(tmp_path: Path, database_url: str, **extra: str) -> Iterator[Cluster]:
    """Three replicas on ``database_url``, started together (they race for the migration)."""
    with HttpSink() as platform, HttpSink() as alerts:
        channels = " ".join(f"json://127.0.0.1:{alerts.port}{path}" for path in CHANNELS)
        settings = {
            "RECEIVER_DATABASE_URL": database_url,
            "RECEIVER_DATABASE_POOL_SIZE": str(POOL_SIZE),
            "RECEIVER_NOTIFY_URLS": channels,
            "RECEIVER_HALT_URL": f"{platform.url}/tasks/{{task_id}}/halt",
            "RECEIVER_HALT_TOKEN": "platform-token-0123456789",
            "RECEIVER_RETRY_BASE_SECONDS": "0.05",
            "RECEIVER_RETRY_CAP_SECONDS": "0.5",
            "RECEIVER_LOG_LEVEL": "warning",
            "RECEIVER_LOG_FORMAT": "text",
            **extra,
        }
        replicas = []
        for n in range(REPLICAS):
            workdir = tmp_path / f"replica-{n}"
            workdir.mkdir()
            replicas.append(Daemon(workdir, settings))
        c: Cluster | None = None
        try:
            with ThreadPoolExecutor(REPLICAS) as pool:
                list(pool.map(lambda d: d.start(timeout=60), replicas))
            c = Cluster(replicas, platform, alerts, database_url)
            yield c
        finally:
            for sender in c.senders if c else ():
                sender.close()
            for daemon in replicas:
                daemon.stop()


# --- what the clients send -----------------------------------------------------------


@dataclass
class TaskPlan:
    task_id: str
    budget: Decimal
    amounts: list[Decimal]

    @property
    def total(self) -> Decimal:
        return sum(self.amounts, Decimal(0))

    @property
    def reaches_limit(self) -> bool:
        return self.total >= self.budget


def split(rng: random.Random, cents: int, parts: int) -> list[Decimal]:
    """``cents`` in ``parts`` random amounts of at least one cent each."""
    cuts = sorted(rng.sample(range(1, cents), parts - 1))
    return [Decimal(b - a) / 100 for a, b in zip([0, *cuts], [*cuts, cents], strict=True)]


def plan_tasks(rng: random.Random, prefix: str, count: int, spends: int) -> list[TaskPlan]:
    """``count`` tasks of ``spends`` increments each; even ones end at or over their budget."""
    plans = []
    for n in range(count):
        budget = Decimal(rng.choice((20, 50, 100, 250)))
        if n % 10 == 0:
            fraction = Decimal(1)  # exactly at the limit
        elif n % 2 == 0:
            fraction = Decimal(str(rng.uniform(1.01, 1.6)))
        else:
            fraction = Decimal(str(rng.uniform(0.2, 0.99)))
        amounts = split(rng, int(budget * 100 * fraction), spends)
        plans.append(TaskPlan(f"{prefix}-{n:03d}", budget, amounts))
    return plans


def created(plan: TaskPlan) -> dict[str, Any]:
    data = {"task_id": plan.task_id, "budget": str(plan.budget), "currency": "USD"}
    return {"type": "task.created", "data": {**data, "agent_id": "agent-replicas"}}


def spend(task_id: str, amount: Decimal) -> dict[str, Any]:
    return {"type": "task.spend", "data": {"task_id": task_id, "amount": str(amount)}}


@dataclass(frozen=True)
class Send:
    """One signed webhook; the same ``msg_id`` may be sent more than once."""

    msg_id: str
    task_id: str
    body: bytes
    timestamp: int
    replica: int


def signed(doc: dict[str, Any], replicas: Sequence[int]) -> list[Send]:
    """One message, sent to each of ``replicas`` (two: a redelivery via another replica)."""
    msg_id = f"msg_{uuid.uuid4().hex}"
    body = json.dumps(doc).encode()
    task_id = doc["data"]["task_id"]
    return [Send(msg_id, task_id, body, int(time.time()), r) for r in replicas]


def shuffled_units(
    rng: random.Random, docs: list[dict[str, Any]], dup_rate: float, replicas: int = REPLICAS
) -> list[Send]:
    """Each doc to a random replica; ``dup_rate`` of them to two, back to back (so at once)."""
    units = []
    for doc in docs:
        if rng.random() < dup_rate:
            units.append(signed(doc, rng.sample(range(replicas), 2)))
        else:
            units.append(signed(doc, [rng.randrange(replicas)]))
    rng.shuffle(units)
    return [send for unit in units for send in unit]


class Sender:
    """Client threads. A send that finds its replica dead goes to the next one, with the
    same webhook-id and signature: what a load balancer and a retrying sender do."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._local = threading.local()
        self._lock = threading.Lock()
        self.statuses: dict[str, list[int]] = defaultdict(list)
        self.by_task: dict[str, set[str]] = defaultdict(set)
        self.requests = 0
        self.failovers = 0
        self._clients: list[httpx.Client] = []

    def close(self) -> None:
        for client in self._clients:
            client.close()

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = httpx.Client(timeout=30)
            with self._lock:
                self._clients.append(client)
        return client

    def post(self, send: Send) -> None:
        headers = sign(SECRET, send.msg_id, send.timestamp, send.body)
        headers["content-type"] = "application/json"
        replicas = self.cluster.replicas
        for attempt in range(30):
            daemon = replicas[(send.replica + attempt) % len(replicas)]
            try:
                response = self._client().post(
                    daemon.url + "/webhooks/budget", content=send.body, headers=headers
                )
            except httpx.TransportError:
                with self._lock:
                    self.failovers += 1
                continue
            if response.status_code == 503:  # storage busy: try again
                time.sleep(0.1)  # a retrying sender's pause, not a wait for something
                continue
            with self._lock:
                self.requests += 1
                self.statuses[send.msg_id].append(response.status_code)
                self.by_task[send.task_id].add(send.msg_id)
            return
        raise AssertionError(f"no replica took {send.msg_id}")

    def send_all(self, sends: Sequence[Send], threads: int = CLIENT_THREADS) -> None:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(self.post, sends))


# --- waiting and reading back --------------------------------------------------------


def wait_drained(c: Cluster, timeout: float = 45.0) -> float:
    """Seconds until no delivery is pending (asked of any live replica).

    Then nothing more goes out, and everything that went out has arrived: a settled row
    is never claimed again; a replica sends a row only while it holds the row's lease
    (so before another could claim it and settle it), and the sinks record a request
    before they answer it (so before its sender can settle on that answer). The figures
    can be read at once, with no "room" for a wrong second delivery to wait out."""
    started = time.monotonic()
    poll(
        lambda: c.any().api("GET", "/v1/deliveries", params={"status": "pending"}),
        lambda r: r.status_code == 200 and not r.json()["deliveries"],
        what="the outbox to drain",
        timeout=timeout,
        interval=0.1,
    )
    return time.monotonic() - started


def get(c: Cluster, path: str, **params: str) -> Any:
    response = c.any().api("GET", path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


_TITLE = re.compile(
    r"^(?:Budget warning: (?P<w>\S+) passed (?P<pct>\d+)% of its budget"
    r"|Task halted: (?P<h>\S+) reached"
    r"|Spend after halt: (?P<s>\S+) is still spending"
    r"|ACTION NEEDED: could not halt (?P<f>\S+):)"
)
_SPENT = re.compile(r"Spent:\W*([0-9.]+) USD")

# What an alert is, for comparing: ('50%', spent) ... ('halted', spent), ('after', spent).
Owed = tuple[str, Decimal]


def read_alert(request: Recorded) -> tuple[str, Owed]:
    """(task id, (kind, spend it reports)) of one alert received on a json:// channel."""
    doc = request.json
    m = _TITLE.match(doc["title"])
    assert m is not None, f"unexpected alert: {doc['title']}"
    spent = _SPENT.search(doc["message"])
    assert spent is not None, doc["message"]
    amount = Decimal(spent[1])
    if m["w"]:
        return m["w"], (f"{m['pct']}%", amount)
    if m["h"]:
        return m["h"], ("halted", amount)
    if m["s"]:
        return m["s"], ("after", amount)
    return m["f"], ("failed", amount)


def pct(threshold: Decimal) -> str:
    return f"{threshold * 100:.0f}%"


POLICY = Policy(thresholds=THRESHOLDS, halt_calls_out=True)  # the daemon's defaults
_KINDS = {AlertKind.HALTED: "halted", AlertKind.SPEND_AFTER_HALT: "after"}


def replay(task_id: str, events: list[dict[str, Any]]) -> tuple[list[Owed], list[Decimal]]:
    """What the state machine owes for a task's stored timeline, applied in its order:
    the alerts (kind, spend at the time) and the spend each halt call reports."""
    task: Task | None = None
    alerts: list[Owed] = []
    halts: list[Decimal] = []
    for e in events:
        if e["source"] == "budget":
            event = parse_event(
                e["payload"], event_id=e["event_id"], source="budget", fallback_time=0
            )
        else:  # written by the receiver: task.halt_confirmed
            event = BudgetEvent(e["event_id"], e["source"], EventType(e["type"]), task_id, 0)
        assert event is not None and event.task_id == task_id
        result = transition(task, event, POLICY, 0.0)
        task = result.task
        for effect in result.effects:
            if isinstance(effect, Halt):
                halts.append(task.spent)
            elif effect.threshold is not None:
                alerts.append((pct(effect.threshold), task.spent))
            else:
                alerts.append((_KINDS.get(effect.kind, "failed"), task.spent))
    return sorted(alerts), halts


@dataclass
class Figures:
    halts: int = 0
    halted_tasks: int = 0
    alerts: dict[str, int] = field(default_factory=dict)
    repeats: int = 0  # alerts or halt calls made more than once (allowed after a SIGKILL)


def check(c: Cluster, plans: list[TaskPlan], sender: Sender, *, exactly_once: bool) -> Figures:
    """Everything the replicas owed, against what they did. ``exactly_once``: nobody died,
    so nothing may have been done twice; otherwise at least once (the outbox's promise)."""
    figures = Figures()
    # Every message: stored once; at most one 202 however many replicas it was sent to.
    for msg_id, statuses in sender.statuses.items():
        assert set(statuses) <= {200, 202}, (msg_id, statuses)
        assert statuses.count(202) == 1 if exactly_once else statuses.count(202) <= 1, statuses
    assert not get(c, "/v1/deliveries", status="dead")["deliveries"]

    halts: dict[str, list[Recorded]] = defaultdict(list)
    for request in c.platform.requests:
        halts[request.path.removeprefix("/tasks/").removesuffix("/halt")].append(request)
    alerts: dict[str, dict[str, list[Owed]]] = {ch: defaultdict(list) for ch in CHANNELS}
    for channel in CHANNELS:
        received = c.alerts.requests_to(channel)
        for request in received:
            task_id, alert = read_alert(request)
            alerts[channel][task_id].append(alert)
        figures.alerts[channel] = len(received)
    known = {p.task_id for p in plans}
    assert set(halts) <= known and all(set(a) <= known for a in alerts.values())

    for plan in plans:
        t = plan.task_id
        view = get(c, f"/v1/tasks/{t}")
        assert Decimal(view["spent"]) == plan.total, (view, plan.total)
        events = get(c, f"/v1/tasks/{t}/events", limit="500")["events"]
        stored = [e["event_id"] for e in events if e["source"] == "budget"]
        assert sorted(stored) == sorted(sender.by_task[t]), f"{t}: events lost or doubled"
        calls = halts.get(t, [])
        # The state machine, run over the timeline in its stored order, owes exactly
        # what the channels and the platform got (each once, or at least once).
        owed, owed_halts = replay(t, events)
        assert [Decimal(r.json["spent"]) for r in calls[:1]] == owed_halts, (t, owed_halts)
        for channel in CHANNELS:
            got = sorted(alerts[channel][t])
            figures.repeats += len(got) - len(set(got))
            if exactly_once:
                assert got == owed, (t, channel, got, owed)
            else:
                assert sorted(set(got)) == owed, (t, channel, got, owed)
        # The same, told without the state machine: the facts of the contract.
        kinds = {ch: Counter(kind for kind, _ in alerts[ch][t]) for ch in CHANNELS}
        used = plan.total / plan.budget
        passed = [th for th in THRESHOLDS if th <= used]
        if plan.reaches_limit:
            assert view["state"] == "halted" and view["allowed"] is False, view
            assert calls, f"{t} reached its limit and was never halted"
            assert len({r.headers["idempotency-key"] for r in calls}) == 1, t
            assert len(calls) == 1 or not exactly_once, f"{t}: {len(calls)} halt calls"
            confirmed = [e for e in events if e["type"] == "task.halt_confirmed"]
            assert len(confirmed) == 1, (t, confirmed)
            # Spend applied after the limit (the halt call carries the spend at the limit)
            # owes one spend-after-halt alert per quiet period; otherwise none.
            after = plan.total > Decimal(calls[0].json["spent"])
            for kind in kinds.values():
                assert kind["halted"] >= 1 and (kind["after"] >= 1) is after, (t, kinds)
            figures.repeats += len(calls) - 1
            figures.halts += len(calls)
            figures.halted_tasks += 1
        else:
            assert not calls, f"{t} is under budget but was halted"
            assert view["state"] == ("warning" if passed else "active"), view
            assert [Decimal(x) for x in view["thresholds_alerted"]] == passed, view
            for kind in kinds.values():
                assert kind["halted"] == kind["after"] == 0, (t, kinds)
                # Each alert is for the highest threshold its event crossed, so the highest
                # one the task passed is always among them, and none above it.
                warned = {k for k in kind if k.endswith("%")}
                assert warned <= {pct(th) for th in passed}, (t, kinds)
                assert not passed or pct(passed[-1]) in warned, (t, kinds)
    return figures


def halt_owners(database_url: str) -> list[tuple[str, str | None]]:
    """(task_id, lease_owner) of every halt call not yet settled, straight from the outbox."""

    async def query() -> list[tuple[str, str | None]]:
        conn = await asyncpg.connect(database_url, timeout=10)
        try:
            rows = await conn.fetch(
                "SELECT task_id, lease_owner FROM outbox WHERE kind = 'halt' AND status = 'pending'"
            )
        finally:
            await conn.close()
        return [(r["task_id"], r["lease_owner"]) for r in rows]

    return asyncio.run(query())


def clean_logs(replicas: Sequence[Daemon]) -> int:
    """No tracebacks; returns how many results were dropped because a lease ran out."""
    lost = 0
    for daemon in replicas:
        log = daemon.log()
        assert "Traceback" not in log, log[-4000:]
        lost += log.count("lease lost before its result was recorded")
    return lost


# --- the tests -----------------------------------------------------------------------


def test_replicas_share_the_work_and_do_nothing_twice(tmp_path: Path, postgres_url: str) -> None:
    rng = random.Random(4)  # noqa: S311 - reproducible test data
    plans = plan_tasks(rng, "r", count=50, spends=16)
    late = {p.task_id for p in plans[-10:]}  # created while their spend is already arriving
    with cluster(tmp_path, postgres_url) as c:
        sender = c.sender()
        early = shuffled_units(rng, [created(p) for p in plans if p.task_id not in late], 0.2)
        docs = [spend(p.task_id, a) for p in plans for a in p.amounts]
        docs += [created(p) for p in plans if p.task_id in late]
        stream = shuffled_units(rng, docs, 0.15)
        started = time.monotonic()
        sender.send_all(early)
        sender.send_all(stream)
        sent = time.monotonic() - started
        drain = wait_drained(c)
        figures = check(c, plans, sender, exactly_once=True)
        lost = clean_logs(c.replicas)

    events = len(sender.statuses)
    print(
        f"\n[replicas] {REPLICAS} replicas, pool {POOL_SIZE} each, {CLIENT_THREADS} client threads: "
        f"{events} events for {len(plans)} tasks in {sender.requests} requests "
        f"({sender.requests - events} a webhook-id again, to another replica)\n"
        f"[replicas] ingest {sent:.2f} s: {sender.requests / sent:.0f} requests/s, "
        f"{events / sent:.0f} events/s; outbox drained {drain:.2f} s after the last 202\n"
        f"[replicas] {figures.halted_tasks} tasks halted with {figures.halts} halt calls; "
        f"alerts /a={figures.alerts['/a']} /b={figures.alerts['/b']}; "
        f"repeats {figures.repeats}; leases lost {lost}"
    )


def test_a_slow_channel_s_backlog_is_sent_once(tmp_path: Path, postgres_url: str) -> None:
    """Alerts queue behind a channel that takes 0.25 s a message, longer in all than the
    lease: each is sent once, and none waits out its lease, for the replica holding the
    queued rows keeps renewing their leases (without that, a row that waited too long is
    left for whoever claims it next: with renewal switched off, about ten of these forty
    are)."""
    plans = [TaskPlan(f"s-{n:03d}", Decimal(100), [Decimal(60)]) for n in range(40)]
    lease = {"RECEIVER_LEASE_SECONDS": str(LEASE_SECONDS), "RECEIVER_LOG_LEVEL": "info"}
    with cluster(tmp_path, postgres_url, **lease) as c:
        c.alerts.script("/a", *[Reply.hanging(0.25)] * 100)
        sender = c.sender()
        rng = random.Random(5)  # noqa: S311 - reproducible test data
        sender.send_all(shuffled_units(rng, [created(p) for p in plans], 0))
        started = time.monotonic()
        sender.send_all(shuffled_units(rng, [spend(p.task_id, p.amounts[0]) for p in plans], 0))
        drain = wait_drained(c, timeout=60)
        figures = check(c, plans, sender, exactly_once=True)
        lost = clean_logs(c.replicas)
        waited = sum(d.log().count("waited out its lease") for d in c.replicas)
        logs = "\n".join(d.log()[-2000:] for d in c.replicas)
    print(
        f"\n[replicas/slow] {len(plans)} alerts through a channel taking 0.25 s each, lease "
        f"{LEASE_SECONDS} s: all sent once in {drain:.2f} s (alerts /a={figures.alerts['/a']} "
        f"/b={figures.alerts['/b']}); {waited} waited out a lease and were claimed again; "
        f"leases lost {lost}; wall {time.monotonic() - started:.2f} s"
    )
    # Every replica is alive, so every queued row's lease is renewed (each lease/3 = 1 s,
    # by a dispatcher loop that runs at least once a second), and a row is only given up
    # with less than a quarter of its lease (0.75 s) left: none is.
    assert waited == 0, f"{waited} alerts waited out a lease their replica should renew\n{logs}"


def test_a_killed_replica_s_claims_are_finished_by_the_others(
    tmp_path: Path, postgres_url: str
) -> None:
    rng = random.Random(44)  # noqa: S311 - reproducible test data
    plans = plan_tasks(rng, "k", count=30, spends=10)
    # Eight tasks the platform is slow to halt: their first halt call hangs past the kill.
    # Each gets to 90 % of its budget anywhere, then steps over it on the victim.
    hung = [p for p in plans if p.reaches_limit][:8]
    for p in hung:
        p.amounts = [*split(rng, int(p.budget * 90), 9), p.budget * Decimal("0.25")]
    with cluster(tmp_path, postgres_url, RECEIVER_LEASE_SECONDS=str(LEASE_SECONDS)) as c:
        victim = c.replicas[0]
        assert victim.proc is not None
        for p in hung:
            c.platform.script(f"/tasks/{p.task_id}/halt", Reply.hanging(120))
        sender = c.sender()
        started = time.monotonic()
        sender.send_all(shuffled_units(rng, [created(p) for p in plans], 0.1))
        below = [spend(p.task_id, a) for p in hung for a in p.amounts[:-1]]
        rest = [spend(p.task_id, a) for p in plans if p not in hung for a in p.amounts]
        rng.shuffle(rest)
        third = len(rest) // 3
        sender.send_all(shuffled_units(rng, below + rest[:third], 0.1))
        stream = shuffled_units(rng, rest[third:], 0.1)

        # The hung tasks step over their limit on the victim, which claims their halt calls.
        sender.send_all([s for p in hung for s in signed(spend(p.task_id, p.amounts[-1]), [0])])
        for p in hung:  # every one is now claimed by some replica, its call hanging
            c.platform.wait_for(1, f"/tasks/{p.task_id}/halt", timeout=15)
        owners = halt_owners(c.database_url)
        held = {t for t, owner in owners if f":{victim.proc.pid}:" in (owner or "")}

        # The rest of the stream goes to every replica; the victim dies in the middle of it.
        before = sender.requests
        background = threading.Thread(target=sender.send_all, args=(stream,))
        background.start()
        poll(
            lambda: sender.requests - before,
            lambda sent: sent >= len(stream) // 3 or not background.is_alive(),
            what="a third of the stream to be sent",
            timeout=60,
            interval=0.01,
        )
        victim.kill()
        killed = time.monotonic()
        background.join(60)
        assert not background.is_alive(), "the client stream did not finish"

        # After the lease runs out the others make the calls the victim held, with its key.
        takeover = []
        for p in hung:
            first, second = c.platform.wait_for(2, f"/tasks/{p.task_id}/halt", timeout=30)[:2]
            assert first.headers["idempotency-key"] == second.headers["idempotency-key"]
            if p.task_id in held:
                assert second.at_monotonic - first.at_monotonic >= LEASE_SECONDS - 0.5
                takeover.append(second.at_monotonic - killed)
        drain = wait_drained(c)
        total = time.monotonic() - started
        figures = check(c, plans, sender, exactly_once=False)
        lost = clean_logs(c.live())

    assert held, f"the victim held none of the hanging halt calls when it was killed: {owners}"
    print(
        f"\n[replicas/kill] lease {LEASE_SECONDS} s; the killed replica held {len(held)} of "
        f"{len(hung)} hanging halt calls; the others made them "
        f"{min(takeover):.2f}-{max(takeover):.2f} s after the kill\n"
        f"[replicas/kill] {len(sender.statuses)} events for {len(plans)} tasks in "
        f"{sender.requests} requests; {sender.failovers} sends failed over to another replica\n"
        f"[replicas/kill] {figures.halted_tasks} tasks halted with {figures.halts} halt calls; "
        f"alerts /a={figures.alerts['/a']} /b={figures.alerts['/b']}; repeats {figures.repeats} "
        f"(at least once after a SIGKILL); leases lost {lost}; drained {drain:.2f} s; "
        f"wall {total:.2f} s"
    )
    assert max(takeover) <= LEASE_SECONDS + 5.0, takeover
