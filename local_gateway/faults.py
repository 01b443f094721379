"""Fault injection for the local Management API: a test facility, off unless asked for.

With ``--fault-injection`` (``StackOptions.fault_injection``) the gateway
serves ``/_local/faults`` and answers ``POST @connections/{id}`` from these
rules before it looks at the connection, the way API Gateway's throttling
answers before anything else:

- ``PUT /_local/faults`` with ``{"rules": [rule, ...]}`` replaces the rules;
- ``DELETE /_local/faults`` removes them (the counters stay);
- ``GET /_local/faults`` shows the rules, what is left of each, and how many
  posts each status answered.

A rule: ``{"status": 429, "count": 3, "per_connection": true, "connections": ["id", ...],
"fraction": 1.0, "seed": 0}``. ``status`` is 429 (``LimitExceededException``),
410 (``GoneException``) or a 5xx; ``connections`` limits it to those ids (all
when absent); ``count`` is how many matching posts it answers, in total or per
connection (unlimited when absent); ``fraction`` answers that share of matching
posts (a seeded random draw). The first rule that matches a post answers it.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

logger = logging.getLogger("local_gateway")

#: The error type API Gateway names in ``x-amzn-ErrorType`` for each injectable status.
ERROR_TYPES = {
    410: "GoneException",
    429: "LimitExceededException",
    500: "InternalServerErrorException",
    502: "BadGatewayException",
    503: "ServiceUnavailableException",
    504: "GatewayTimeoutException",
}


class RuleError(ValueError):
    """A rule the facility cannot apply; the message says which field."""


@dataclass
class FaultRule:
    status: int
    connections: frozenset[str] | None = None
    count: int | None = None
    per_connection: bool = False
    fraction: float = 1.0
    seed: int = 0
    _used: Counter[str] = field(default_factory=Counter)
    _random: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self._random.seed(self.seed)

    @classmethod
    def parse(cls, raw: Any) -> FaultRule:
        if not isinstance(raw, dict):
            raise RuleError("a rule must be a JSON object")
        unknown = set(raw) - {"status", "connections", "count", "per_connection", "fraction", "seed"}
        if unknown:
            raise RuleError(f"unknown field(s) {sorted(unknown)}")
        status = raw.get("status")
        if status not in ERROR_TYPES:
            raise RuleError(f"status must be one of {sorted(ERROR_TYPES)}")
        connections = raw.get("connections")
        if connections is not None and (
            not isinstance(connections, list) or not all(isinstance(c, str) for c in connections)
        ):
            raise RuleError("connections must be a list of connection ids")
        count = raw.get("count")
        if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 0):
            raise RuleError("count must be a whole number >= 0")
        fraction = raw.get("fraction", 1.0)
        if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 <= fraction <= 1:
            raise RuleError("fraction must be between 0 and 1")
        seed = raw.get("seed", 0)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise RuleError("seed must be a whole number")
        return cls(
            status=int(status),
            connections=frozenset(connections) if connections is not None else None,
            count=count,
            per_connection=bool(raw.get("per_connection", False)),
            fraction=float(fraction),
            seed=seed,
        )

    def take(self, connection_id: str) -> bool:
        """Whether this rule answers this post (and, if so, count it)."""
        if self.connections is not None and connection_id not in self.connections:
            return False
        key = connection_id if self.per_connection else ""
        if self.count is not None and self._used[key] >= self.count:
            return False
        if self.fraction < 1.0 and self._random.random() >= self.fraction:
            return False
        self._used[key] += 1
        return True

    def describe(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "connections": sorted(self.connections) if self.connections is not None else None,
            "count": self.count,
            "per_connection": self.per_connection,
            "fraction": self.fraction,
            "answered": sum(self._used.values()),
        }


class ManagementFaults:
    """The active rules and what they answered; used from the gateway's event loop only."""

    def __init__(self) -> None:
        self.rules: list[FaultRule] = []
        self.answered: Counter[int] = Counter()

    def replace(self, raw: Any) -> None:
        if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
            raise RuleError('expected {"rules": [...]}')
        self.rules = [FaultRule.parse(r) for r in raw["rules"]]

    def clear(self) -> None:
        self.rules = []

    def status_for(self, connection_id: str) -> int | None:
        """The status to answer this post with, or None to serve it normally."""
        for rule in self.rules:
            if rule.take(connection_id):
                self.answered[rule.status] += 1
                return rule.status
        return None

    def describe(self) -> dict[str, Any]:
        return {
            "rules": [r.describe() for r in self.rules],
            "answered": {str(k): v for k, v in sorted(self.answered.items())},
        }


class FaultRulesApi:
    """``GET|PUT|DELETE /_local/faults``: show, replace or clear the rules."""

    def __init__(self, faults: ManagementFaults) -> None:
        self.faults = faults

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/_local/faults", self.show)
        router.add_put("/_local/faults", self.replace)
        router.add_delete("/_local/faults", self.clear)

    async def show(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.describe())

    async def replace(self, request: web.Request) -> web.Response:
        try:
            self.faults.replace(await request.json())
        except (ValueError, RuleError) as exc:
            return web.json_response({"message": str(exc)}, status=400)
        logger.info("%-12s %s", "faults", json.dumps(self.faults.describe()["rules"]))
        return web.json_response(self.faults.describe())

    async def clear(self, request: web.Request) -> web.Response:
        self.faults.clear()
        logger.info("%-12s cleared", "faults")
        return web.json_response(self.faults.describe())
