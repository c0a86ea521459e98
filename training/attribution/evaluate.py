"""Checking attribution against the simulator's counterfactual truth.

The simulator knows, for every channel and content item, how many conversions would be lost if
its touches were removed with every other random draw held fixed; normalised over channels these
are the *true shares*. A model is scored by the total variation distance (TVD) between its
shares and the true ones: half the summed absolute differences, 0 when identical, 1 when
disjoint. Channels missing on one side count with share 0.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from training.attribution.credit import Attribution
from training.attribution.journeys import NO_CONTENT

TRUTH_TABLES = {"channel": "attribution_channels", "content": "attribution_content"}


def total_variation_distance(estimated: pd.Series, truth: pd.Series) -> float:
    """Half the L1 distance between two share vectors indexed by name (each normalised first)."""
    names = estimated.index.union(truth.index)
    p = estimated.reindex(names, fill_value=0.0).astype(float).clip(lower=0.0)
    q = truth.reindex(names, fill_value=0.0).astype(float).clip(lower=0.0)
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("both share vectors need a positive total")
    return float(0.5 * np.abs(p / p.sum() - q / q.sum()).sum())


def read_truth(truth_dir: Path | str) -> dict[str, pd.DataFrame] | None:
    """The simulator's attribution truth tables from ``truth_dir``, or None when absent."""
    truth_dir = Path(truth_dir)
    paths = {level: truth_dir / f"{name}.parquet" for level, name in TRUTH_TABLES.items()}
    if not paths["channel"].exists():
        return None
    return {level: pd.read_parquet(path) for level, path in paths.items() if path.exists()}


def tvd_table(results: Iterable[Attribution], truth: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per model, TVD of channel shares (and of value shares and content shares) against truth.

    Args:
        results: model results.
        truth: ``{"channel": attribution_channels, "content": attribution_content}`` as written
            by the simulator (columns ``share`` and ``value_share``).

    Returns:
        One row per model: ``model``, ``tvd`` (channel conversion shares), ``value_tvd``
        (channel revenue shares) and ``content_tvd`` (content conversion shares, with credit to
        touches without content left out since the truth has no such item).
    """
    true_channels = truth["channel"].set_index(truth["channel"]["channel"].astype(str))
    true_content = truth.get("content")
    rows = []
    for result in results:
        estimated = result.by_channel
        row = {
            "model": result.model,
            "tvd": total_variation_distance(estimated["share"], true_channels["share"]),
            "value_tvd": _safe_tvd(estimated["value"], true_channels["value_share"]),
            "content_tvd": np.nan,
        }
        if true_content is not None and not result.content.empty:
            content = result.content[result.content["content_id"] != NO_CONTENT]
            row["content_tvd"] = _safe_tvd(
                content.set_index(content["content_id"].astype(str))["conversions"],
                true_content.set_index(true_content["content_id"].astype(str))["share"],
            )
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "tvd", "value_tvd", "content_tvd"])


def _safe_tvd(estimated: pd.Series, truth: pd.Series) -> float:
    try:
        return total_variation_distance(estimated, truth)
    except ValueError:
        return float("nan")
