"""Attribution for the API: credit for journeys sent in a request, or the latest run's credit.

Journeys in a request are aggregated paths (channels in order, conversions, value, non-converting
count) run through :mod:`training.attribution`; the data-driven models credit them with the
registered champion of ``content_attribution`` and never fit on them. A stored run is read from
``<data_dir>/attribution/`` or ``<data_dir>/attribution/<run>/`` (``credit.parquet`` in the
layout of :func:`training.attribution.models.credit_table` and ``run.json`` with
``period_start`` and ``period_end``); the newest run of exactly the period asked for answers,
and any other period gets an answer naming the periods there are.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from crm.contract import CHANNELS
from training.attribution.data_driven import ConversionModel, with_channels
from training.attribution.journeys import paths_to_journeys
from training.attribution.models import LEARNED_MODELS, ModelOptions, credit_table, run_models

log = logging.getLogger("crm_intel.serving")


class NoAttributionRun(LookupError):
    """No stored attribution run covers the period asked for.

    ``str()`` is the detail for the log (it names the folder); :attr:`public` is for a client.
    """

    def __init__(self, detail: str, public: str):
        super().__init__(detail)
        self.public = public


@dataclass(frozen=True)
class Credit:
    source: str
    run: str | None
    period: tuple[date, date] | None
    channels: list[dict[str, Any]]
    credited_by: str | None = None


def _channel_rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    rows = table[table["level"] == "channel"]
    return [
        {
            "model": str(r["model"]),
            "channel": str(r["channel"]),
            "conversions": float(r["conversions"]),
            "value": float(r["value"]),
            "share": float(r["share"]),
            "value_share": float(r["value_share"]),
            **_interval(r),
        }
        for r in rows.to_dict("records")
    ]


def _interval(row: dict[str, Any]) -> dict[str, Any]:
    """The share's bootstrap interval from a credit table row (all None when it has none)."""
    low, high = row.get("share_low"), row.get("share_high")
    if low is None or high is None or pd.isna(low) or pd.isna(high):
        return {"share_low": None, "share_high": None, "includes_zero": None}
    return {
        "share_low": float(low),
        "share_high": float(high),
        "includes_zero": bool(row.get("includes_zero")),
    }


class AttributionChampion:
    """The registered conversion model the service credits request journeys with: the champion
    of ``content_attribution``, reloaded when the alias moves (checked at most every
    ``refresh_seconds``)."""

    def __init__(self, tracking_uri: str, refresh_seconds: float = 30.0):
        self.tracking_uri = tracking_uri
        self.refresh_seconds = refresh_seconds
        self._checked = -math.inf
        self._held: tuple[str, ConversionModel] | None = None
        self._lock = threading.Lock()

    def get(self) -> tuple[str, ConversionModel] | None:
        """``(version, model)`` of the champion, or None when none is registered."""
        from training.attribution.tracking import MODEL_NAME, load_conversion_model
        from training.registry import champion_version

        with self._lock:
            now = time.monotonic()
            if now - self._checked < self.refresh_seconds:
                return self._held
            self._checked = now
            try:
                current = champion_version(self.tracking_uri, MODEL_NAME)
                if current is None:
                    self._held = None
                elif self._held is None or self._held[0] != str(current.version):
                    version = str(current.version)
                    self._held = (version, load_conversion_model(self.tracking_uri, version))
            except Exception:  # the registry unreachable: keep crediting with what is held
                held = "none" if self._held is None else f"v{self._held[0]}"
                log.warning("cannot read the attribution champion; keeping %s", held, exc_info=True)
            return self._held


def credit_for_paths(
    paths: Sequence[dict[str, Any]],
    models: Sequence[str],
    champion: tuple[str, ConversionModel] | None = None,
) -> Credit:
    """Channel credit of each model for aggregated ``paths``.

    The data-driven models credit with ``champion`` (the registered conversion model's version
    and model) and fit nothing: a model fitted on a request's few journeys would say little.

    Args:
        paths: ``{"channels": [...], "conversions": n, "value": x, "nulls": m}`` per journey.

    Raises:
        training.attribution.errors.AttributionError: nothing to credit or bad input.
        NoAttributionModel: a data-driven model asked for and no champion registered, or one
            that needs touch times.
    """
    frame = pd.DataFrame(
        {
            "path": [" > ".join(p["channels"]) for p in paths],
            "total_conversions": [float(p.get("conversions", 1.0)) for p in paths],
            "total_conversion_value": [float(p.get("value", 0.0)) for p in paths],
            "total_null": [float(p.get("nulls", 0.0)) for p in paths],
        }
    )
    journeys = paths_to_journeys(frame, channels=CHANNELS, source="request")
    options = ModelOptions()
    credited_by = None
    if any(m in LEARNED_MODELS for m in models):
        if champion is None:
            raise NoAttributionModel("no registered attribution model holds champion")
        version, model = champion
        if model.timed and model.candidate.feature_set == "sequence":
            raise NoAttributionModel(
                f"the champion (v{version}) reads touch times, which journeys in a request lack"
            )
        journeys = with_channels(journeys, model.channels)
        options = ModelOptions(conversion_model=model)
        credited_by = f"content_attribution v{version}"
    table = credit_table(run_models(journeys, list(models), options))
    return Credit("request", None, None, _channel_rows(table), credited_by)


class NoAttributionModel(LookupError):
    """The data-driven models need a registered conversion model the service does not have."""


def _runs(attribution_dir: Path) -> list[tuple[float, Path, date, date]]:
    """Every stored run with a readable period: (modified, folder, first day, last day)."""
    runs = []
    for meta_path in [attribution_dir / "run.json", *attribution_dir.glob("*/run.json")]:
        if not meta_path.exists() or not (meta_path.parent / "credit.parquet").exists():
            continue
        try:
            meta = json.loads(meta_path.read_text())
            run_start = date.fromisoformat(str(meta["period_start"])[:10])
            run_end = date.fromisoformat(str(meta["period_end"])[:10])
        except (ValueError, KeyError, OSError):
            continue
        runs.append((meta_path.stat().st_mtime, meta_path.parent, run_start, run_end))
    return runs


def period_credit(
    attribution_dir: Path, start: date, end: date, models: Sequence[str] | None = None
) -> Credit:
    """The credit of exactly ``start``–``end``: the newest stored run of that period.

    A run of a longer period is not cut down (its credit is over all of it) and no period is
    pieced together from others: asked for any other period, the answer names those there are.

    Raises:
        NoAttributionRun: no run is of that period; ``public`` lists the periods there are.
    """
    runs = _runs(attribution_dir)
    exact = [r for r in runs if (r[2], r[3]) == (start, end)]
    if not exact:
        periods = sorted({(r[2], r[3]) for r in runs})
        there = (
            "; the runs there are cover " + ", ".join(f"{a} to {b}" for a, b in periods)
            if periods
            else "; there is no attribution run yet"
        )
        raise NoAttributionRun(
            f"no attribution run in {attribution_dir} is of {start} to {end}{there}",
            f"no attribution run is of {start} to {end}{there}",
        )
    _, folder, run_start, run_end = max(exact)
    table = pd.read_parquet(folder / "credit.parquet")
    if models:
        table = table[table["model"].isin(list(models))]
    return Credit("latest_run", folder.name, (run_start, run_end), _channel_rows(table))
