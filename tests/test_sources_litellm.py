"""LiteLLM budget alerts: the pure parser, and the route in the real app (in process).

Bodies named ``litellm_*.json`` other than the two documented examples were captured
from LiteLLM 1.110.2's own alerting code (tests/fixtures/litellm_kit.py).
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from receiver.alerts import render
from receiver.errors import InvalidEvent
from receiver.events import load_json
from receiver.model import EventType, Forecast, Severity
from receiver.outbox import Route, rows_for
from receiver.sources.litellm import event_id_of, is_webhook_test, parse_litellm
from receiver.state import Policy, transition
from tests.fixtures.sources_kit import app_client, fixture_json, snapshot, task_of

TOKEN = "litellm-shared-token-0123456789"


def alert(event: str = "threshold_crossed", **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = fixture_json("litellm_threshold_crossed.json")
    doc["event"] = event
    doc.update(over)
    return doc


def loaded(doc: Any) -> Any:
    """``doc`` as the route reads it: through JSON, numbers as Decimal."""
    return load_json(json.dumps(doc).encode())


def parse(doc: Any, entity: Any = "key") -> Any:
    return parse_litellm(loaded(doc), entity=entity, event_id="e-1", now=1000.0)


# --- the parser (pure) -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "kind", "spent", "budget", "threshold"),
    [
        (alert("budget_crossed", spend=100.5), EventType.REACHED, "100.5", "100.0", None),
        (alert("threshold_crossed"), EventType.THRESHOLD, "85.0", "100.0", "0.85"),
        (alert("threshold_crossed", spend=96.789), EventType.THRESHOLD, "96.789", "100.0", "0.96"),
        (
            alert("soft_budget_crossed", spend=51, soft_budget=50),
            EventType.THRESHOLD,
            "51",
            "100.0",
            "0.5",
        ),
        (
            alert("soft_budget_crossed", max_budget=None, soft_budget=50),
            EventType.SPEND,
            "85.0",
            None,
            None,
        ),
        (alert("threshold_crossed", max_budget=None), EventType.SPEND, "85.0", None, None),
    ],
)
def test_events_map_to_budget_events(
    doc: dict[str, Any], kind: EventType, spent: str, budget: str | None, threshold: str | None
) -> None:
    """budget_crossed halts; threshold and soft budget crossings warn; spend is USD, exact."""
    event = parse(doc)
    assert event is not None
    assert (event.type, event.spent, event.budget, event.threshold) == (
        kind, Decimal(spent), None if budget is None else Decimal(budget),
        None if threshold is None else Decimal(threshold),
    )  # fmt: skip
    assert event.currency == "USD" and event.source == "litellm" and event.occurred_at == 1000.0


def test_documented_payload_parses() -> None:
    """The payload LiteLLM documents (budget_crossed, no alias) -> a hashed key task, halt."""
    doc = fixture_json("litellm_budget_crossed.json")
    event = parse(doc)
    assert event is not None and event.type is EventType.REACHED
    expected = hashlib.sha256(doc["token"].encode()).hexdigest()[:16]
    assert event.task_id == f"litellm:key:{expected}"
    assert doc["token"] not in event.task_id


@pytest.mark.parametrize(
    ("entity", "over", "task_id", "name"),
    [
        ("key", {}, "litellm:key:research-agent", "research-agent"),
        ("team", {"event_group": "team"}, "litellm:team:research", "research"),
        ("team", {"event_group": "team", "team_alias": None}, "litellm:team:team-123", None),
        ("user", {"event_group": "internal_user"}, "litellm:user:u-1", "ada@example.com"),
        ("user", {"event_group": "user"}, "litellm:user:u-1", "ada@example.com"),
        (
            "customer",
            {"event_group": "customer", "customer_id": "acme"},
            "litellm:customer:acme",
            None,
        ),
        (
            "customer",
            {"event_group": "end_user", "customer_id": "acme"},
            "litellm:customer:acme",
            None,
        ),
        ("key", {"event_group": None}, "litellm:key:research-agent", "research-agent"),
    ],
)
def test_entity_picks_the_task(
    entity: str, over: dict[str, Any], task_id: str, name: str | None
) -> None:
    """RECEIVER_LITELLM_ENTITY decides which id names the task; event_group must agree."""
    event = parse(alert(**over), entity)
    assert event is not None
    assert (event.task_id, event.task_name) == (task_id, name)


@pytest.mark.parametrize(
    "doc",
    [
        alert(event_group="team"),  # a team alert while tracking keys
        alert(event_group="proxy"),
        alert("key_created"),
        alert("internal_user_created"),
        alert("something_new"),
    ],
)
def test_other_events_are_ignored(doc: dict[str, Any]) -> None:
    assert parse(doc) is None


@pytest.mark.parametrize(
    ("doc", "code"),
    [
        ([], "invalid_event"),
        ({"spend": 1}, "missing_field"),
        (alert(spend=None), "invalid_money"),
        (alert(spend=-1), "invalid_money"),
        (alert(spend="NaN"), "invalid_money"),
        (alert(max_budget="lots"), "invalid_money"),
        (alert(key_alias=None, token=None), "missing_field"),
        (alert(key_alias=None, token="x" * 500), "invalid_event"),
    ],
)
def test_invalid_payloads_are_refused(doc: Any, code: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse(doc)
    assert caught.value.code == code


def test_event_id_is_a_hash_of_the_body() -> None:
    doc = alert()
    body = json.dumps(doc).encode()
    assert event_id_of(body, doc) == event_id_of(body, doc)
    assert event_id_of(body, doc) != event_id_of(body + b" ", doc)
    assert event_id_of(body, doc).startswith("litellm:sha256:")


def test_each_spend_tracked_body_is_its_own_event() -> None:
    """LiteLLM sends one spend_tracked per request, with no id and no retry: two equal
    bodies are two requests, so they get two ids."""
    doc = fixture_json("litellm_spend_tracked.json")
    body = json.dumps(doc).encode()
    first, second = event_id_of(body, doc), event_id_of(body, doc)
    assert first != second and first.startswith("litellm:request:")


def test_spend_tracked_is_one_requests_cost() -> None:
    """spend_tracked carries one request's response_cost: an increment, never a total."""
    event = parse(fixture_json("litellm_spend_tracked.json"), "customer")
    assert event is not None
    assert (event.type, event.task_id, event.task_name) == (
        EventType.SPEND, "litellm:customer:acme", None,
    )  # fmt: skip
    assert (event.amount, event.spent, event.budget) == (Decimal("0.025"), None, Decimal("0.04"))


@pytest.mark.parametrize(
    "name", ["litellm_projected_limit_exceeded.json", "litellm_projection_relabelled.json"]
)
def test_a_projection_is_a_forecast_even_when_relabelled(name: str) -> None:
    """LiteLLM puts the soft budget in max_budget and relabels the projection budget_crossed
    once spend passes it: still a forecast, with no budget, spend or threshold to apply."""
    event = parse(fixture_json(name))
    assert event is not None and event.type is EventType.FORECAST
    assert event.task_id == "litellm:key:research-agent"
    assert (event.budget, event.spent, event.amount, event.threshold) == (None, None, None, None)
    spent = Decimal(str(fixture_json(name)["spend"]))
    assert event.forecast == Forecast(
        Decimal("56.0"), Decimal("130.5"), exceeds_on="2026-11-28", spent=spent, soft=True
    )


@pytest.mark.parametrize(
    ("over", "exceeds_on"),
    [
        ({}, "2026-11-28"),
        ({"projected_exceeded_date": None, "projected_exceeded_data": "2026-11-29"}, "2026-11-29"),
        ({"projected_exceeded_date": "28. November 2026 — Freitag"}, "28. November 2026 — Freitag"),
        ({"projected_exceeded_date": "x" * 5000}, "x" * 200),
        ({"projected_exceeded_date": "2026-11-28\n\u0000"}, None),
        ({"projected_exceeded_date": 20261128}, None),
    ],
)
def test_a_forecasts_date_is_sender_text_kept_short_and_printable(
    over: dict[str, Any], exceeds_on: str | None
) -> None:
    event = parse(fixture_json("litellm_projected_limit_exceeded.json") | over)
    assert event is not None and event.forecast is not None
    assert event.forecast.exceeds_on == exceeds_on


@pytest.mark.parametrize(
    "over",
    [{"projected_spend": -1}, {"projected_spend": "NaN"}, {"projected_spend": "1e400"},
     {"spend": None}, {"max_budget": "lots"}],
)  # fmt: skip
def test_a_forecast_with_bad_money_is_refused(over: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse(fixture_json("litellm_projected_limit_exceeded.json") | over)
    assert caught.value.code == "invalid_money"


def test_a_forecasts_text_reaches_the_alert_escaped() -> None:
    """The sender's date is untrusted text: in the alert it cannot form links or layout."""
    doc = fixture_json("litellm_projected_limit_exceeded.json")
    event = parse(doc | {"projected_exceeded_date": "[click](https://evil.example) *now*"})
    result = transition(None, event, Policy(), 1000.0)
    [row] = rows_for(result.task, result.effects, event, [Route("c", frozenset(Severity))], 1.0)
    message = render(row.payload)
    assert "Forecast" in message.title and "soft budget" in message.title
    assert r"\[click\](https://evil.example) \*now\*" in message.body
    assert "soft budget of 56.0 USD" in message.body and "130.5 USD" in message.body


def test_soft_budget_crossed_carries_the_soft_budget() -> None:
    """The soft budget is a warning line beside the real max_budget, which stays the budget."""
    event = parse(fixture_json("litellm_soft_budget_crossed.json"))
    assert event is not None
    assert (event.type, event.budget, event.spent) == (
        EventType.THRESHOLD, Decimal("100.0"), Decimal("51.0"),
    )  # fmt: skip
    assert (event.threshold, event.soft_budget) == (Decimal("0.5"), Decimal("50.0"))
    bare = parse(fixture_json("litellm_soft_budget_crossed.json") | {"max_budget": None})
    assert bare is not None
    assert (bare.type, bare.budget, bare.soft_budget) == (EventType.SPEND, None, Decimal("50.0"))


def test_litellms_webhook_test_is_recognised() -> None:
    """The /health/services?service=webhook alert, and nothing a real budget sends."""
    assert is_webhook_test(loaded(fixture_json("litellm_webhook_test.json")))
    for doc in (
        fixture_json("litellm_budget_crossed.json"),
        alert("budget_crossed", spend=1, max_budget=0),
        alert("budget_crossed", spend=1, max_budget=0, event_group="user",
              event_message="User Budget: Budget Crossed"),
        alert("budget_crossed", spend=1, max_budget=5, event_message="User Budget: x"),
        [],
    ):  # fmt: skip
        assert not is_webhook_test(loaded(doc))


# --- the route, in the real app ------------------------------------------------------------


def test_route_is_404_when_not_configured(tmp_path: Path) -> None:
    with app_client(tmp_path) as client:
        response = client.post("/webhooks/litellm", json=alert())
        assert response.status_code == 404


def test_accepted_and_duplicate_are_both_exactly_200(tmp_path: Path) -> None:
    """LiteLLM counts only 200 as delivered: accepted 200, the same body again 200 duplicate."""
    with app_client(tmp_path, litellm_token=TOKEN) as client:
        body = json.dumps(alert()).encode()
        headers = {"content-type": "application/json"}
        first = client.post(f"/webhooks/litellm?token={TOKEN}", content=body, headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "accepted" and first.json()["state"] == "warning"
        again = client.post(f"/webhooks/litellm?token={TOKEN}", content=body, headers=headers)
        assert again.status_code == 200 and again.json()["status"] == "duplicate"
        view = task_of(client, "litellm:key:research-agent")
        assert view is not None
        assert (view["spent"], view["budget"], view["currency"]) == ("85.0", "100.0", "USD")
        assert view["thresholds_alerted"][-1] == "0.85" and view["source"] == "litellm"

        crossed = client.post(
            "/webhooks/litellm",
            json=alert("budget_crossed", spend=100.2),
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        assert crossed.status_code == 200 and crossed.json()["state"] == "halted"
        ignored = client.post(f"/webhooks/litellm?token={TOKEN}", json=alert("key_created"))
        assert ignored.status_code == 200 and ignored.json()["status"] == "ignored"


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/webhooks/litellm", {}, 401),
        ("/webhooks/litellm?token=wrong-token-0123456789", {}, 401),
        ("/webhooks/litellm", {"authorization": "Bearer wrong-token-0123456789"}, 401),
        ("/webhooks/litellm", {"authorization": f"Basic {TOKEN}"}, 401),
        (f"/webhooks/litellm?token={TOKEN}", {"content-type": "text/plain"}, 415),
    ],
)
def test_refusals_change_nothing(
    tmp_path: Path, path: str, headers: dict[str, str], status: int
) -> None:
    with app_client(tmp_path, litellm_token=TOKEN) as client:
        before = snapshot(client)
        body = json.dumps(alert("budget_crossed", spend=500)).encode()
        response = client.post(
            path, content=body, headers={"content-type": "application/json", **headers}
        )
        assert response.status_code == status, response.text
        assert "error" in response.json()
        assert snapshot(client) == before


def test_invalid_payload_is_422(tmp_path: Path) -> None:
    with app_client(tmp_path, litellm_token=TOKEN) as client:
        response = client.post(f"/webhooks/litellm?token={TOKEN}", json=alert(spend=-3))
        assert response.status_code == 422 and response.json()["error"] == "invalid_money"
        assert snapshot(client) == []


def test_tiny_request_costs_add_up_exactly(tmp_path: Path) -> None:
    """LiteLLM writes a tiny response_cost in exponent form (1e-07): counted exactly."""
    with app_client(tmp_path, litellm_token=TOKEN, litellm_entity="customer") as client:
        doc = fixture_json("litellm_spend_tracked.json") | {"spend": 1e-07}
        for _ in range(3):
            answer = client.post(f"/webhooks/litellm?token={TOKEN}", json=doc)
            assert answer.status_code == 200 and answer.json()["status"] == "accepted"
        view = task_of(client, "litellm:customer:acme")
        assert view is not None and view["spent"] == "0.0000003"


def test_two_equal_spend_tracked_bodies_count_twice(tmp_path: Path) -> None:
    """Two requests of 0.025 against a customer budget of 0.04: both count, and it halts."""
    with app_client(tmp_path, litellm_token=TOKEN, litellm_entity="customer") as client:
        body = json.dumps(fixture_json("litellm_spend_tracked.json")).encode()
        headers = {"content-type": "application/json"}
        answers = [
            client.post(f"/webhooks/litellm?token={TOKEN}", content=body, headers=headers)
            for _ in range(2)
        ]
        assert [a.status_code for a in answers] == [200, 200]
        assert [a.json()["status"] for a in answers] == ["accepted", "accepted"]
        assert [a.json()["state"] for a in answers] == ["warning", "halted"]
        view = task_of(client, "litellm:customer:acme")
        assert view is not None and (view["spent"], view["budget"]) == ("0.050", "0.04")


def test_a_relabelled_projection_moves_no_budget_and_halts_nothing(tmp_path: Path) -> None:
    """A key with a real budget of 100 past its soft budget; LiteLLM's projection against
    the soft budget of 56, relabelled budget_crossed, is answered and changes nothing."""
    with app_client(tmp_path, litellm_token=TOKEN) as client:
        path = f"/webhooks/litellm?token={TOKEN}"
        soft = client.post(path, json=fixture_json("litellm_soft_budget_crossed.json"))
        assert soft.status_code == 200 and soft.json()["state"] == "warning"
        before = task_of(client, "litellm:key:research-agent")
        projection = client.post(path, json=fixture_json("litellm_projection_relabelled.json"))
        assert projection.status_code == 200, projection.text
        assert projection.json()["status"] == "accepted"
        after = task_of(client, "litellm:key:research-agent")
        assert before is not None and after is not None
        assert (after["budget"], after["spent"], after["state"], after["allowed"]) == (
            "100.0", "51.0", "warning", True,
        )  # fmt: skip
        assert after["thresholds_alerted"] == before["thresholds_alerted"]


def test_litellms_webhook_test_is_answered_and_changes_nothing(tmp_path: Path) -> None:
    with app_client(tmp_path, litellm_token=TOKEN) as client:
        response = client.post(
            f"/webhooks/litellm?token={TOKEN}", json=fixture_json("litellm_webhook_test.json")
        )
        assert response.status_code == 200 and response.json()["status"] == "ignored"
        assert snapshot(client) == []
