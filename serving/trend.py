"""Score trend, like Dynamics 365's: is an entity's score going up, down or nowhere?

The change is the score now minus the first score served for the entity since the start of the
(UTC) day ``trend_days`` days ago (from the score log, champion or challenger arm; shadow scores
were never seen). A
lead is ``improving`` when its score rose by ``trend_points`` or more, ``declining`` when it fell
by as much, else ``steady``. For churn risk the score is a risk, so the words follow the
business: an account whose risk fell by ``trend_points`` is ``improving``. An entity with no
earlier score in the window has no trend yet (``None``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, MutableMapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from serving.score_log import first_scores_since

TRENDS = ("improving", "declining", "steady")


def trend_label(entity: str, change: int, points: int) -> str:
    """``improving`` / ``declining`` / ``steady`` for a score change in points."""
    better = change if entity == "lead" else -change  # churn: a higher score is worse
    if better >= points:
        return "improving"
    if better <= -points:
        return "declining"
    return "steady"


def window_start(now: datetime, days: int) -> datetime:
    """The start of the UTC day ``days`` days before ``now``'s."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day - timedelta(days=days)


def _labelled(
    entity: str, scores_now: Mapping[str, int], firsts: Mapping[str, int], points: int
) -> dict[str, tuple[str, int]]:
    return {
        entity_id: (
            trend_label(entity, scores_now[entity_id] - first, points),
            scores_now[entity_id] - first,
        )
        for entity_id, first in firsts.items()
    }


def trends(
    engine: Engine,
    entity: str,
    scores_now: Mapping[str, int],
    now: datetime,
    days: int,
    points: int,
) -> dict[str, tuple[str, int]]:
    """Per id with an earlier score in the window: (trend, change in points)."""
    firsts = first_scores_since(engine, entity, list(scores_now), window_start(now, days), now)
    return _labelled(entity, scores_now, {k: v for k, (_, v) in firsts.items()}, points)


class TrendReferences:
    """The first served score of each entity in its trend window, read from the log once a day.

    The window starts at a day's boundary, so an entity's reference holds for the whole day once
    found: the service asks the log once per entity per day (per process), not once per
    request. An entity without one yet is asked again after ``retry_seconds`` (a first score may
    be logged meanwhile). At most ``max_entities`` are kept; beyond, the day's cache starts
    afresh.
    """

    def __init__(
        self, engine: Engine, days: int, retry_seconds: float = 60.0, max_entities: int = 500_000
    ):
        self.engine = engine
        self.days = days
        self.retry_seconds = retry_seconds
        self.max_entities = max_entities
        self._day: date | None = None
        self._found: dict[tuple[str, str], int] = {}
        self._missing: dict[tuple[str, str], float] = {}  # → when to ask again (monotonic)
        self._lock = threading.Lock()

    def trends(
        self, entity: str, scores_now: Mapping[str, int], now: datetime, points: int
    ) -> dict[str, tuple[str, int]]:
        """As :func:`trends`, with the references cached."""
        today = now.astimezone(UTC).date()
        clock = time.monotonic()
        with self._lock:
            if today != self._day or len(self._found) + len(self._missing) > self.max_entities:
                self._day, self._found, self._missing = today, {}, {}
            firsts = {}
            ask = []
            for entity_id in scores_now:
                key = (entity, entity_id)
                if key in self._found:
                    firsts[entity_id] = self._found[key]
                elif self._missing.get(key, 0.0) <= clock:
                    ask.append(entity_id)
        if ask:
            read = first_scores_since(self.engine, entity, ask, window_start(now, self.days), now)
            with self._lock:
                for entity_id in ask:
                    key = (entity, entity_id)
                    if entity_id in read:
                        firsts[entity_id] = self._found[key] = read[entity_id][1]
                        self._missing.pop(key, None)
                    else:
                        self._missing[key] = clock + self.retry_seconds
        return _labelled(entity, scores_now, firsts, points)


def add_trends(
    results: Sequence[MutableMapping[str, Any]],
    found: Mapping[str, tuple[str, int]],
    entity: str,
    key: str,
    names: Mapping[str, str],
) -> None:
    """Write ``trend`` and ``trend_change`` into each scored result and its CRM fields (None
    where there is no trend yet)."""
    for r in results:
        if r.get("status") != "scored":
            continue
        trend, change = found.get(str(r[key]), (None, None))
        r["trend"], r["trend_change"] = trend, change
        crm = r.get("crm_fields")
        if isinstance(crm, dict):
            crm[names[f"{entity}_trend"]] = trend
            crm[names[f"{entity}_trend_change"]] = change
