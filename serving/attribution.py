"""Attribution for the API: credit for journeys sent in a request, or the latest run's credit.

Journeys in a request are aggregated paths (channels in order, conversions, value, non-converting
count) run through :mod:`training.attribution`. A stored run is read from
``<data_dir>/attribution/`` or ``<data_dir>/attribution/<run>/`` (``credit.parquet`` in the
layout of :func:`training.attribution.models.credit_table` and ``run.json`` with
``period_start`` and ``period_end``); the newest run whose period covers the one asked for
answers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from crm.contract import CHANNELS
from training.attribution.journeys import paths_to_journeys
from training.attribution.models import credit_table, run_models


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
        }
        for r in rows.to_dict("records")
    ]


def credit_for_paths(paths: Sequence[dict[str, Any]], models: Sequence[str]) -> Credit:
    """Channel credit of each model for aggregated ``paths``.

    Args:
        paths: ``{"channels": [...], "conversions": n, "value": x, "nulls": m}`` per journey.

    Raises:
        training.attribution.errors.AttributionError: nothing to credit or bad input.
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
    table = credit_table(run_models(journeys, list(models)))
    return Credit("request", None, None, _channel_rows(table))


def latest_credit(
    attribution_dir: Path, start: date, end: date, models: Sequence[str] | None = None
) -> Credit:
    """The newest stored run whose period covers ``start``–``end``.

    Raises:
        NoAttributionRun: no run covers the period.
    """
    runs = []
    for meta_path in [attribution_dir / "run.json", *attribution_dir.glob("*/run.json")]:
        if not meta_path.exists():
            continue
        try:
            meta = json.loads(meta_path.read_text())
            run_start = date.fromisoformat(str(meta["period_start"])[:10])
            run_end = date.fromisoformat(str(meta["period_end"])[:10])
        except (ValueError, KeyError, OSError):
            continue
        if run_start <= start and end <= run_end and (meta_path.parent / "credit.parquet").exists():
            runs.append((meta_path.stat().st_mtime, meta_path.parent, run_start, run_end))
    if not runs:
        raise NoAttributionRun(
            f"no attribution run in {attribution_dir} covers {start}–{end}: run "
            "`crm-intel attribution run` for that period",
            f"no attribution run covers {start} to {end}",
        )
    _, folder, run_start, run_end = max(runs)
    table = pd.read_parquet(folder / "credit.parquet")
    if models:
        table = table[table["model"].isin(list(models))]
    return Credit("latest_run", folder.name, (run_start, run_end), _channel_rows(table))
