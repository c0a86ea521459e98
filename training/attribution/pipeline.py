"""Loading journeys from a data directory or a path file, and writing the credit table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from crm.io import atomic_file, read_table
from training.attribution.credit import Attribution
from training.attribution.evaluate import tvd_table
from training.attribution.intervals import DEFAULT_LEVEL
from training.attribution.journeys import (
    DEFAULT_LOOKBACK_DAYS,
    Journeys,
    journeys_from_interactions,
    read_paths,
)
from training.attribution.recommend import recommendation
from training.attribution.spend import Marketing


def load_journeys(
    raw_dir: Path | str | None = None,
    paths: Path | str | None = None,
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
) -> Journeys:
    """Journeys from an aggregated path file when given, else from the raw contract tables.

    Raises:
        ValueError: neither source given.
        FileNotFoundError: a missing file or table.
    """
    if paths is not None:
        return read_paths(paths)
    if raw_dir is None:
        raise ValueError("give a path file or a data directory")
    raw_dir = Path(raw_dir)
    interactions = read_table(
        raw_dir,
        "interactions",
        ["interaction_id", "occurred_at", "lead_id", "channel", "content_id"],
    )
    leads = read_table(raw_dir, "leads", ["lead_id", "converted_at"])
    opportunities = read_table(
        raw_dir, "opportunities", ["opportunity_id", "lead_id", "amount", "won"]
    )
    return journeys_from_interactions(interactions, leads, opportunities, lookback_days)


def load_marketing(raw_dir: Path | str) -> Marketing | None:
    """Campaigns, lead interactions and the content catalogue from the raw tables, for spend
    and content figures; None when one of them is absent."""
    raw_dir = Path(raw_dir)
    if not all(
        (raw_dir / f"{t}.parquet").exists() for t in ("campaigns", "interactions", "content")
    ):
        return None
    return Marketing(
        campaigns=read_table(
            raw_dir, "campaigns", ["campaign_id", "name", "channel", "cost", "start", "end"]
        ),
        interactions=read_table(
            raw_dir,
            "interactions",
            ["lead_id", "occurred_at", "channel", "content_id", "campaign_id"],
        ),
        content=read_table(raw_dir, "content", ["content_id", "title", "type"]),
    )


def write_credit_table(table: pd.DataFrame, out: Path | str) -> Path:
    """Write the credit table as CSV, or Parquet when ``out`` ends in ``.parquet``."""
    out = Path(out)
    with atomic_file(out) as tmp:
        if out.suffix.lower() == ".parquet":
            table.to_parquet(tmp, index=False)
        else:
            table.to_csv(tmp, index=False)
    return out


def run_summary(
    journeys: Journeys,
    results: Sequence[Attribution],
    truth: dict[str, pd.DataFrame] | None = None,
    intervals: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Totals of a run, the recommended model and why, the bootstrap intervals, and each
    model's TVD against truth when given (for ``--json``)."""
    summary: dict[str, Any] = {
        "source": journeys.source,
        "journeys": journeys.n_journeys,
        "weighted_journeys": journeys.total_journeys,
        "touches": journeys.n_touches,
        "conversions": journeys.total_conversions,
        "value": journeys.total_value,
        "channels": int(len(results[0].channels)) if results else 0,
        "content_items": int(len(results[0].content)) if results else 0,
        "models": [r.model for r in results],
        "dropped": dict(journeys.dropped),
        "credited": {
            r.model: {
                "conversions": float(r.channels["conversions"].sum()),
                "value": float(r.channels["value"].sum()),
            }
            for r in results
        },
    }
    advice = recommendation(results, intervals)
    if advice is not None:
        summary["recommended"] = advice
    if intervals is not None and not intervals.empty:
        summary["intervals"] = {
            "level": DEFAULT_LEVEL,
            "replicates": int(intervals["replicates"].max()),
            "note": "bootstrap over journeys: sampling spread, not model bias",
        }
    if truth is not None and results:
        table = tvd_table(results, truth)
        summary["tvd"] = dict(zip(table["model"], table["tvd"].round(4), strict=True))
        summary["value_tvd"] = dict(zip(table["model"], table["value_tvd"].round(4), strict=True))
        summary["best_model"] = str(table.sort_values("tvd")["model"].iloc[0])
    return summary
