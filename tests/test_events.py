"""Parsing canonical (source ``budget``) webhook bodies into BudgetEvent."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.errors import InvalidEvent, RequestRejected
from receiver.events import load_json, parse_event
from receiver.model import BudgetEvent, EventType

D = Decimal
FALLBACK = 1_764_324_000.0


def parse(doc: Any) -> BudgetEvent | None:
    return parse_event(doc, event_id="msg_1", source="budget", fallback_time=FALLBACK)


def parse_body(body: bytes | str) -> BudgetEvent | None:
    return parse(load_json(body.encode() if isinstance(body, str) else body))


def must_parse(doc: Any) -> BudgetEvent:
    event = parse(doc)
    assert event is not None
    return event


def spend(**data: Any) -> dict[str, Any]:
    return {"type": "task.spend", "data": {"task_id": "t-42"} | data}


def rejected(doc: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as info:
        parse(doc)
    return info.value


DESIGN_EXAMPLE = b"""{"type": "task.spend", "timestamp": "2026-11-28T10:00:00Z",
 "data": {"task_id": "t-42", "task_name": "Purchase via AI Agent",
          "agent_id": "agent-7", "budget": "100.00", "spent": "80.00",
          "currency": "USD"}}"""


def test_envelope_form_is_parsed() -> None:
    """The Standard Webhooks envelope from the design becomes one normalised event."""
    event = parse_body(DESIGN_EXAMPLE)
    assert event == BudgetEvent(
        event_id="msg_1",
        source="budget",
        type=EventType.SPEND,
        task_id="t-42",
        occurred_at=datetime(2026, 11, 28, 10, tzinfo=UTC).timestamp(),
        task_name="Purchase via AI Agent",
        agent_id="agent-7",
        budget=D("100.00"),
        spent=D("80.00"),
        currency="USD",
        payload=json.loads(DESIGN_EXAMPLE, parse_float=Decimal),
    )


@pytest.mark.parametrize(
    ("doc", "type_"),
    [
        ({"event": "task_budget_reached", "task_id": "t-42"}, EventType.REACHED),
        ({"type": "task_budget_reached", "task_id": "t-42"}, EventType.REACHED),
        ({"event": "task.budget_reached", "task_id": "t-42"}, EventType.REACHED),
        ({"type": "task_budget_reached", "data": {"task_id": "t-42"}}, EventType.REACHED),
        ({"type": "task.budget_reached", "data": {"task_id": "t-42"}}, EventType.REACHED),
        ({"event": "task.spend", "task_id": "t-42", "spent": 5}, EventType.SPEND),
        ({"type": "task.completed", "task_id": "t-42"}, EventType.COMPLETED),
        (
            {"event": "task.created", "task_id": "t-42", "budget": 1, "currency": "EUR"},
            EventType.CREATED,
        ),
        (
            {"event": "task.budget_threshold", "task_id": "t-42", "threshold": "0.8"},
            EventType.THRESHOLD,
        ),
    ],
)
def test_flat_form_and_alias_are_the_same_event(doc: dict[str, Any], type_: EventType) -> None:
    """A flat body naming the event in `event` or `type`, and the alias, parse like the envelope."""
    event = must_parse(doc)
    assert event.type is type_
    assert event.task_id == "t-42"


def test_flat_form_carries_its_fields() -> None:
    """The seed article's flat body keeps every data field at the top level."""
    body = (
        '{"event": "task_budget_reached", "task_id": "t-42", "task_name": "Buy",'
        ' "agent_id": "agent-7", "budget": 100.00, "spent": 100.00, "currency": "USD",'
        ' "timestamp": 1764324001}'
    )
    event = parse_body(body)
    assert event is not None
    assert (event.type, event.task_name, event.agent_id) == (EventType.REACHED, "Buy", "agent-7")
    assert (event.budget, event.spent, event.currency) == (D("100.00"), D("100.00"), "USD")
    assert event.occurred_at == 1764324001.0


@pytest.mark.parametrize(
    "type_name",
    [
        "task.deleted",
        "ping",
        "TASK.SPEND",
        "",
        # internal types are written by the receiver only, never accepted from a webhook
        "task.resumed",
        "task.halt_confirmed",
        "task.halt_failed",
        # a forecast comes only from a source that can tell one (LiteLLM's projections)
        "task.forecast",
    ],
)
def test_unknown_type_is_ignored(type_name: str) -> None:
    """An unknown (or internal-only) type parses to None, which the API answers 200 ignored."""
    assert parse({"type": type_name, "data": {"task_id": "t-42", "budget": "1"}}) is None


def test_unknown_type_with_invalid_data_is_still_ignored() -> None:
    """An ignored type is not validated further, so a new upstream event never fails."""
    assert parse({"type": "task.new_thing", "data": "not an object"}) is None


@pytest.mark.parametrize(
    ("body", "field", "expected"),
    [
        ('{"type":"task.spend","data":{"task_id":"t","spent":80.00}}', "spent", D("80.00")),
        ('{"type":"task.spend","data":{"task_id":"t","spent":"80.00"}}', "spent", D("80.00")),
        ('{"type":"task.spend","data":{"task_id":"t","spent":80}}', "spent", D(80)),
        ('{"type":"task.spend","data":{"task_id":"t","amount":0.1}}', "amount", D("0.1")),
        (
            '{"type":"task.spend","data":{"task_id":"t","amount":0.300000000004}}',
            "amount",
            D("0.300000000004"),
        ),
        # Past 12 places (a float's noise): rounded, see tests/test_money_views.py.
        (
            '{"type":"task.spend","data":{"task_id":"t","amount":0.30000000000000004}}',
            "amount",
            D("0.3"),
        ),
        ('{"type":"task.spend","data":{"task_id":"t","amount":1e2}}', "amount", D(100)),
        ('{"type":"task.spend","data":{"task_id":"t","amount":" 7.5 "}}', "amount", D("7.5")),
        ('{"type":"task.spend","data":{"task_id":"t","amount":"-0"}}', "amount", D(0)),
        (
            '{"type":"task.created","data":{"task_id":"t","budget":123456789012.34,'
            '"currency":"USD"}}',
            "budget",
            D("123456789012.34"),
        ),
    ],
)
def test_money_is_exact_decimal_never_float(body: str, field: str, expected: Decimal) -> None:
    """Money from JSON numbers or strings is an exact Decimal, never a float."""
    event = parse_body(body)
    value = getattr(event, field)
    assert isinstance(value, Decimal)
    assert value == expected
    assert str(value) == str(expected)


def test_decimal_money_adds_up_exactly() -> None:
    """0.1 + 0.2 from JSON numbers is exactly 0.3, as money must be."""
    a = parse_body('{"type":"task.spend","data":{"task_id":"t","amount":0.1}}')
    b = parse_body('{"type":"task.spend","data":{"task_id":"t","amount":0.2}}')
    assert a is not None and b is not None
    assert a.amount is not None and b.amount is not None
    assert a.amount + b.amount == D("0.3")


def test_load_json_numbers_are_decimal_or_int() -> None:
    """load_json never produces a float: fractions become Decimal, integers int."""
    doc = load_json(b'{"a": 0.1, "b": 2, "c": [1.50, -3e-2]}')
    assert doc == {"a": D("0.1"), "b": 2, "c": [D("1.50"), D("-0.03")]}
    assert isinstance(doc["a"], Decimal)
    assert isinstance(doc["b"], int)


BAD_MONEY = [
    -1,
    "-1",
    "-0.01",
    D("-5"),
    "NaN",
    "nan",
    "sNaN",
    "Infinity",
    "-Infinity",
    "inf",
    D("NaN"),
    D("Infinity"),
    "abc",
    "1_000",
    "",
    "1,50",
    "0x10",
    True,
    False,
    [],
    {},
    [1],
    1.5,  # a float slipping in from elsewhere is refused, not trusted
    "1e400",
    10**25,
]


@pytest.mark.parametrize("field", ["budget", "spent", "amount"])
@pytest.mark.parametrize("value", BAD_MONEY, ids=repr)
def test_bad_money_is_rejected_naming_the_field(field: str, value: Any) -> None:
    """Negative, NaN, infinite, non-numeric or boolean money is a 422 that names the field."""
    data: dict[str, Any] = {"spent": "1"} if field == "budget" else {}
    data[field] = value
    error = rejected(spend(**data))
    assert error.code == "invalid_money"
    assert error.status == 422
    assert str(error).startswith(f"{field}:")


@pytest.mark.parametrize("value", [-0.1, "1.01", 2, "abc", True, "NaN"], ids=repr)
def test_bad_threshold_is_rejected_naming_the_field(value: Any) -> None:
    """A threshold outside 0..1 or not a number is a 422 that names the field."""
    doc = {"type": "task.budget_threshold", "data": {"task_id": "t", "threshold": value}}
    error = rejected(load_json(json.dumps(doc).encode()) if isinstance(value, float) else doc)
    assert str(error).startswith("threshold:")


@pytest.mark.parametrize("value", ["0", "0.8", 1, "1.0"])
def test_threshold_fraction_is_accepted(value: Any) -> None:
    """A threshold is a fraction from 0 to 1 inclusive."""
    doc = {"type": "task.budget_threshold", "data": {"task_id": "t", "threshold": value}}
    assert must_parse(doc).threshold == D(str(value))


@pytest.mark.parametrize("currency", ["usd", "Usd", "USDT", "US", "", " USD", "U$D", 840, None])
def test_bad_currency_is_rejected(currency: Any) -> None:
    """Currency must be three upper-case ISO 4217 letters; anything else is a 422."""
    doc = {"type": "task.created", "data": {"task_id": "t", "budget": "1", "currency": currency}}
    error = rejected(doc)
    assert "currency" in str(error)


def test_currency_may_ride_along_on_spend() -> None:
    """A spend event may carry its currency, which is kept as given."""
    assert must_parse(spend(spent="1", currency="EUR")).currency == "EUR"


@pytest.mark.parametrize(
    ("doc", "code", "field"),
    [
        ({"type": "task.spend", "data": {"spent": "1"}}, "missing_field", "task_id"),
        (
            {"type": "task.spend", "data": {"task_id": None, "spent": "1"}},
            "missing_field",
            "task_id",
        ),
        ({"event": "task_budget_reached"}, "missing_field", "task_id"),
        (
            {"type": "task.created", "data": {"task_id": "t", "currency": "USD"}},
            "missing_field",
            "budget",
        ),
        (
            {"type": "task.created", "data": {"task_id": "t", "budget": "100"}},
            "missing_field",
            "currency",
        ),
        ({"type": "task.spend", "data": {"task_id": "t"}}, "missing_field", "spent or amount"),
        (spend(spent="2", amount="1"), "ambiguous_spend", "spent and amount"),
        (
            {"type": "task.budget_threshold", "data": {"task_id": "t"}},
            "missing_field",
            "threshold",
        ),
        ({"data": {"task_id": "t"}}, "missing_field", "type"),
        ({"type": 7, "data": {"task_id": "t"}}, "missing_field", "type"),
        ({"type": None, "event": "task.spend"}, "missing_field", "type"),
        ({"type": "task.spend", "data": [1]}, "invalid_event", "data"),
        ({"type": "task.spend", "data": "x"}, "invalid_event", "data"),
        ({"type": "task.completed", "data": {"task_id": ""}}, "invalid_event", "task_id"),
        ({"type": "task.completed", "data": {"task_id": "  "}}, "invalid_event", "task_id"),
        ({"type": "task.completed", "data": {"task_id": 42}}, "invalid_event", "task_id"),
        ({"type": "task.completed", "data": {"task_id": "t" * 257}}, "invalid_event", "task_id"),
        ({"type": "task.completed", "data": {"task_id": "t\n1"}}, "invalid_event", "task_id"),
        (
            {"type": "task.completed", "data": {"task_id": "t", "task_name": ["x"]}},
            "invalid_event",
            "task_name",
        ),
        (
            {"type": "task.completed", "data": {"task_id": "t", "agent_id": "a\x00"}},
            "invalid_event",
            "agent_id",
        ),
    ],
)
def test_incomplete_or_ambiguous_events_are_rejected(
    doc: dict[str, Any], code: str, field: str
) -> None:
    """A known event missing what it needs, or with contradictory fields, is a 422 naming it."""
    error = rejected(doc)
    assert error.code == code
    assert str(error).startswith(f"{field}:")


@pytest.mark.parametrize("doc", [[], [{"type": "task.spend"}], "task.spend", 3, None])
def test_body_that_is_not_an_object_is_rejected(doc: Any) -> None:
    """A JSON body that is not an object is a 422, not a crash."""
    rejected(doc)


def test_task_id_at_the_length_limit_is_accepted() -> None:
    """Ids up to 256 printable characters, including non-ASCII, are fine."""
    assert must_parse({"event": "task.completed", "task_id": "ü" * 256}).task_id == "ü" * 256


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{",
        b"not json",
        b'{"type": "task.spend",}',
        b"{'type': 'task.spend'}",
        b"\xff\xfe\x00",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a": 1}{"b": 2}',
    ],
    ids=["empty", "open", "text", "trailing_comma", "single_quotes", "bad_utf8", "deep", "two"],
)
def test_malformed_json_is_a_400(body: bytes) -> None:
    """A body that is not JSON is refused with code malformed_json (400)."""
    with pytest.raises(RequestRejected) as info:
        load_json(body)
    assert info.value.code == "malformed_json"
    assert info.value.status == 400
    assert not isinstance(info.value, InvalidEvent)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_refused(literal: str) -> None:
    """JSON's non-standard NaN/Infinity literals never become numbers."""
    body = f'{{"type":"task.spend","data":{{"task_id":"t","spent":{literal}}}}}'.encode()
    with pytest.raises(RequestRejected) as info:
        load_json(body)
    assert info.value.code == "malformed_json"


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2026-11-28T10:00:00Z", datetime(2026, 11, 28, 10, tzinfo=UTC).timestamp()),
        ("2026-11-28T10:00:00.250Z", datetime(2026, 11, 28, 10, tzinfo=UTC).timestamp() + 0.25),
        ("2026-11-28T12:00:00+02:00", datetime(2026, 11, 28, 10, tzinfo=UTC).timestamp()),
        ("2026-11-28T05:00:00-05:00", datetime(2026, 11, 28, 10, tzinfo=UTC).timestamp()),
        ("2026-11-28T10:00:00+00:00", datetime(2026, 11, 28, 10, tzinfo=UTC).timestamp()),
        (1764324000, 1764324000.0),
        (D("1764324000.5"), 1764324000.5),
        (0, 0.0),
        (None, FALLBACK),
    ],
)
def test_timestamp_parsing(timestamp: Any, expected: float) -> None:
    """RFC 3339 times with a zone and unix seconds are accepted; none means the header time."""
    doc = spend(spent="1")
    if timestamp is not None:
        doc["timestamp"] = timestamp
    assert must_parse(doc).occurred_at == expected


def test_timestamp_inside_flat_data_is_used() -> None:
    """In a flat body the timestamp sits next to the data fields and is honoured."""
    event = must_parse({"event": "task.completed", "task_id": "t", "timestamp": 1700000000})
    assert event.occurred_at == 1700000000.0


@pytest.mark.parametrize(
    "timestamp",
    [
        "yesterday",
        "",
        "2026-11-28T10:00:00",  # no zone
        "2026-11-28",
        "2026-13-28T10:00:00Z",
        "1764324000",
        True,
        [2026],
        {"t": 1},
        -1,
        10**400,
        D("1e400"),
        D("NaN"),
        D("Infinity"),
        253_402_300_800,
        "9999-12-31T23:59:59-23:59",  # year 10000 in UTC: no view can show it
        "0001-01-01T00:00:00+23:59",  # year 0 in UTC
        "1969-12-31T23:59:59Z",  # before 1970, as for unix seconds
    ],
    ids=repr,
)
def test_bad_timestamp_is_rejected(timestamp: Any) -> None:
    """A timestamp that is not a zoned RFC 3339 time or sane unix seconds is a 422."""
    doc = spend(spent="1")
    doc["timestamp"] = timestamp
    error = rejected(doc)
    assert str(error).startswith("timestamp:")


def test_huge_json_timestamp_is_a_422_not_a_crash() -> None:
    """A huge numeric timestamp in the body is refused cleanly, end to end from bytes."""
    body = b'{"type":"task.spend","timestamp":' + b"9" * 400 + b',"data":{"task_id":"t","spent":1}}'
    with pytest.raises(InvalidEvent):
        parse_body(body)


def test_event_keeps_ids_source_and_raw_payload() -> None:
    """The parsed event carries the webhook-id, the source and the document as sent."""
    doc = spend(spent="3", extra={"anything": [1, 2]})
    event = parse_event(doc, event_id="msg_9", source="budget-tracking", fallback_time=1.0)
    assert event is not None
    assert (event.event_id, event.source, event.payload) == ("msg_9", "budget-tracking", doc)


# Any JSON-like document: parse_event returns an event, None, or raises InvalidEvent — never
# anything else, so odd input is a 4xx and never a 500.
json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=8) | st.decimals()
json_values = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
field_names = st.sampled_from(
    ["task_id", "task_name", "agent_id", "budget", "spent", "amount", "currency", "threshold"]
)
type_names = st.sampled_from(
    [
        "task.created",
        "task.spend",
        "task.budget_threshold",
        "task.budget_reached",
        "task_budget_reached",
        "task.completed",
        "other",
    ]
)


@settings(max_examples=300, deadline=None, database=None)
@given(
    type_name=type_names,
    data=st.dictionaries(field_names, json_values, max_size=8),
    timestamp=json_values,
    flat=st.booleans(),
)
def test_parse_event_raises_only_invalid_event(
    type_name: str, data: dict[str, Any], timestamp: Any, flat: bool
) -> None:
    """Whatever the fields hold, parsing gives an event, None, or an InvalidEvent."""
    doc: dict[str, Any] = (
        {"event": type_name, **data} if flat else {"type": type_name, "data": data}
    )
    doc["timestamp"] = timestamp
    try:
        event = parse(doc)
    except InvalidEvent:
        return
    if event is not None:
        for value in (event.budget, event.spent, event.amount, event.threshold):
            assert value is None or (
                isinstance(value, Decimal) and value.is_finite() and value >= 0
            )
