"""The OpenAPI 3.0 description of every route, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from . import __version__
from .verify import SPELLINGS

MONEY = {"type": "string", "pattern": r"^-?\d+(\.\d+)?$", "example": "80.00"}
NULLABLE_MONEY = {**MONEY, "nullable": True}
TEXT = {"type": "string", "nullable": True}
TIME = {"type": "string", "format": "date-time", "nullable": True}
STATES = ["active", "warning", "halting", "halted", "completed"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed input (JSON, query)",
        401: "Missing or wrong signature or token",
        403: "Token without the right, or this API is off",
        404: "Unknown task, delivery or route",
        408: "The body did not arrive in time (RECEIVER_BODY_TIMEOUT_SECONDS)",
        409: "The task or delivery is not in a state that allows this",
        413: "Body too large",
        415: "Not JSON",
        422: "Not a valid event or request",
        503: "Storage unavailable, or the connection limit reached: retry later",
    }
    return {str(c): _json(_ref("Error"), text[c]) for c in codes}


def _query(name: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "schema": schema}


READ: list[dict[str, list[str]]] = [{"bearer": []}]
LIMIT = {
    "name": "limit",
    "in": "query",
    "schema": {"type": "integer", "minimum": 1, "maximum": 500},
}
TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _webhook(summary: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "description": "Standard Webhooks: headers webhook-id, webhook-timestamp and "
            "webhook-signature (v1,<base64 HMAC-SHA256>), or the same scheme under the svix "
            "names svix-id, svix-timestamp, svix-signature (one spelling per request).",
            "parameters": [
                {"name": h, "in": "header", "required": False, "schema": {"type": "string"}}
                for spelling in SPELLINGS
                for h in spelling
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("CanonicalEvent")}},
            },
            "responses": {
                "202": _json(_ref("Accepted"), "Stored durably"),
                "200": _json(_ref("Accepted"), "Duplicate (webhook-id seen) or ignored type"),
                **_errors(400, 401, 408, 413, 415, 422, 503),
            },
        }
    }


def _source(summary: str, auth: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "description": f"Off (404) until configured. Authenticated by {auth}.",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}},
            "responses": {
                "200": _json(_ref("Accepted"), "Recorded, duplicate or ignored"),
                "202": _json(_ref("Accepted"), "Recorded"),
                **_errors(400, 401, 403, 404, 408, 413, 415, 422, 503),
                "502": _json(_ref("Error"), "A certificate or key server could not be reached"),
            },
        }
    }


SOURCES = {
    "/webhooks/litellm": _source(
        "LiteLLM proxy budget alerts", "RECEIVER_LITELLM_TOKEN (Bearer or ?token=)"
    ),
    "/webhooks/aws-budgets": _source(
        "AWS Budgets through Amazon SNS", "the SNS message signature and a topic allow-list"
    ),
    "/webhooks/gcp-billing": _source(
        "GCP budget notifications through Pub/Sub push",
        "the push's OIDC token or RECEIVER_GCP_TOKEN",
    ),
}


def spec() -> dict[str, Any]:
    task_views = {
        "200": _json(_ref("Task"), "The task"),
        **_errors(401, 403, 404, 503),
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "budget-receiver", "version": __version__},
        "paths": {
            "/webhooks/budget": _webhook("Canonical budget event"),
            "/webhooks/budget-tracking": _webhook("Alias of /webhooks/budget"),
            "/v1/tasks": {
                "get": {
                    "summary": "List tasks",
                    "security": READ,
                    "parameters": [
                        _query("state", type="string", enum=STATES),
                        _query("after", type="string"),
                        LIMIT,
                    ],
                    "responses": {
                        "200": _json(_ref("TaskPage"), "A page of tasks, by task id"),
                        **_errors(400, 401, 403, 503),
                    },
                }
            },
            "/v1/tasks/{task_id}": {
                "get": {"summary": "One task", "security": READ, "parameters": [TASK_ID],
                        "responses": task_views},
            },
            "/v1/tasks/{task_id}/events": {
                "get": {
                    "summary": "The task's timeline",
                    "security": READ,
                    "parameters": [
                        TASK_ID,
                        _query("after", type="integer", minimum=0),
                        LIMIT,
                    ],
                    "responses": {
                        "200": _json(_ref("EventPage"), "Events, oldest first"),
                        **_errors(400, 401, 403, 404, 503),
                    },
                }
            },
            "/v1/tasks/{task_id}/authorize": {
                "post": {
                    "summary": "May the task spend (amount) more?",
                    "security": READ,
                    "parameters": [TASK_ID],
                    "requestBody": {"content": {"application/json": {"schema": {
                        "type": "object", "properties": {"amount": MONEY}}}}},
                    "responses": {
                        "200": _json(_ref("Gate"), "Allowed"),
                        "402": _json(_ref("Gate"), "Not allowed, with the reason"),
                        **_errors(400, 401, 403, 404, 408, 413, 422, 503),
                    },
                }
            },
            "/v1/tasks/{task_id}/resume": {
                "post": {
                    "summary": "Resume a halted task with a new budget (admin)",
                    "security": READ,
                    "parameters": [TASK_ID],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["budget", "reason"],
                        "properties": {"budget": MONEY, "reason": {"type": "string"},
                                       "actor": {"type": "string"}}}}}},
                    "responses": {
                        **task_views,
                        **_errors(400, 401, 403, 404, 408, 409, 413, 422, 503),
                    },
                }
            },
            "/v1/deliveries": {
                "get": {
                    "summary": "Outbox rows: alerts and halt calls",
                    "security": READ,
                    "parameters": [
                        _query("status", type="string", enum=["pending", "delivered", "dead"]),
                        _query("after", type="integer", minimum=0),
                        LIMIT,
                    ],
                    "responses": {
                        "200": _json(_ref("DeliveryPage"), "A page of deliveries, by id"),
                        **_errors(400, 401, 403, 503),
                    },
                }
            },
            "/v1/deliveries/{delivery_id}/retry": {
                "post": {
                    "summary": "Replay a dead delivery (admin)",
                    "security": READ,
                    "parameters": [{"name": "delivery_id", "in": "path", "required": True,
                                    "schema": {"type": "integer", "minimum": 0}}],
                    "responses": {
                        "200": _json(_ref("Delivery"), "Pending again, due now"),
                        **_errors(401, 403, 404, 409, 503),
                    },
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {
                "200": _json({"type": "object"}, "Alive")}}},
            "/readyz": {"get": {"summary": "Readiness: store write, dispatcher", "responses": {
                "200": _json({"type": "object"}, "Ready"), **_errors(503)}}},
            "/metrics": {"get": {"summary": "Prometheus text", "responses": {
                "200": {"description": "Metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}}},
                **_errors(401, 403, 503)}}},
            **SOURCES,
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
        },
    }  # fmt: skip


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {"error": {"type": "string"}, "detail": {"type": "string"}},
    },
    "Accepted": {
        "type": "object",
        "required": ["status", "event_id"],
        "properties": {
            "status": {"type": "string", "enum": ["accepted", "duplicate", "ignored"]},
            "event_id": {"type": "string"},
            "task_id": {"type": "string"},
            "state": {"type": "string", "nullable": True},
        },
    },
    "CanonicalEvent": {
        "type": "object",
        "description": "An envelope {type, timestamp, data} or a flat body naming `event`.",
        "properties": {
            "type": {"type": "string", "example": "task.spend"},
            "timestamp": {"type": "string", "format": "date-time"},
            "data": {
                "type": "object",
                "properties": {
                    "task_id": {"type": "string"},
                    "task_name": {"type": "string"},
                    "agent_id": {"type": "string"},
                    "budget": MONEY,
                    "spent": MONEY,
                    "amount": MONEY,
                    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
                    "threshold": {"type": "number", "minimum": 0, "maximum": 1},
                },
            },
        },
    },
    "Task": {
        "type": "object",
        "required": ["task_id", "state", "spent", "allowed"],
        "properties": {
            "task_id": {"type": "string"},
            "task_name": TEXT,
            "agent_id": TEXT,
            "source": {"type": "string"},
            "state": {"type": "string", "enum": STATES},
            "budget": NULLABLE_MONEY,
            "spent": MONEY,
            "remaining": NULLABLE_MONEY,
            "currency": TEXT,
            "used_fraction": NULLABLE_MONEY,
            "allowed": {"type": "boolean"},
            "thresholds_alerted": {"type": "array", "items": MONEY},
            "halted_at": TIME,
            "created_at": TIME,
            "updated_at": TIME,
        },
    },
    "TaskPage": {
        "type": "object",
        "required": ["tasks", "next"],
        "properties": {
            "tasks": {"type": "array", "items": _ref("Task")},
            "next": {"type": "string", "nullable": True},
        },
    },
    "Event": {
        "type": "object",
        "required": ["seq", "event_id", "type"],
        "properties": {
            "seq": {"type": "integer"},
            "event_id": {"type": "string"},
            "source": {"type": "string"},
            "type": {"type": "string"},
            "received_at": TIME,
            "occurred_at": TIME,
            "payload": {"type": "object"},
        },
    },
    "EventPage": {
        "type": "object",
        "required": ["events", "next"],
        "properties": {
            "events": {"type": "array", "items": _ref("Event")},
            "next": {"type": "integer", "nullable": True},
        },
    },
    "Gate": {
        "type": "object",
        "required": ["allowed", "reason", "task"],
        "properties": {
            "allowed": {"type": "boolean"},
            "reason": {"type": "string"},
            "error": {"type": "string"},
            "task": _ref("Task"),
        },
    },
    "Delivery": {
        "type": "object",
        "required": ["id", "kind", "channel", "task_id", "status", "attempts"],
        "properties": {
            "id": {"type": "integer"},
            "kind": {"type": "string", "enum": ["alert", "halt"]},
            "channel": {"type": "string"},
            "task_id": {"type": "string"},
            "status": {"type": "string", "enum": ["pending", "delivered", "dead"]},
            "attempts": {"type": "integer"},
            "next_at": TIME,
            "created_at": TIME,
            "delivered_at": TIME,
            "last_error": TEXT,
            "payload": {"type": "object"},
        },
    },
    "DeliveryPage": {
        "type": "object",
        "required": ["deliveries", "next"],
        "properties": {
            "deliveries": {"type": "array", "items": _ref("Delivery")},
            "next": {"type": "integer", "nullable": True},
        },
    },
}
