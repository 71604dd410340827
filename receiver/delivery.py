"""The delivery contract: a target takes one outbox row and says what became of it. Pure.

A target is an alert channel or the platform's halt call. Each answers every attempt
the same way (as Alertmanager's notifiers answer "retry or not"), and the dispatcher
does the rest (leases, retries with backoff, settling, follow-up events) once for all:

    done                  delivered: settle it (and record the target's follow-up)
    retry(after)          try again later, not before ``after`` seconds if the target said
    rejected              retrying will not help: dead at once (and the follow-up)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from .model import Delivery, EventType


class Verdict(StrEnum):
    DONE = "done"
    RETRY = "retry"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class Result:
    verdict: Verdict
    error: str | None = None  # why not done; never holds a secret
    retry_after: float | None = None  # seconds the target asked us to wait

    @classmethod
    def done(cls) -> Result:
        return cls(Verdict.DONE)

    @classmethod
    def retry(cls, error: str, after: float | None = None) -> Result:
        return cls(Verdict.RETRY, error, after)

    @classmethod
    def rejected(cls, error: str) -> Result:
        return cls(Verdict.REJECTED, error)


@dataclass(frozen=True, slots=True)
class FollowUps:
    """Events the receiver records about a target's rows: when one is done, when one is
    given up on (the halt call's confirmed / failed)."""

    done: EventType | None = None
    dead: EventType | None = None
    dead_hint: str = ""  # what a person must do when a row is dead, for the log


class Target(Protocol):
    """Where outbox rows of one channel id go."""

    @property
    def id(self) -> str:
        """The outbox rows' ``channel``."""

    @property
    def shown(self) -> str:
        """How logs name it: no secret."""

    @property
    def serial(self) -> bool:
        """True: one row at a time, in claim order (a chat channel); False: every row at
        once (halt calls, which nothing may delay)."""

    @property
    def follow_ups(self) -> FollowUps: ...

    async def send(self, row: Delivery) -> Result:
        """One attempt. Never raises for trouble at the target: that is a Result."""
