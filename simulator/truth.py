"""Reading the simulator's ground truth back: what the CLI and the notebooks compare models with."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_probability_truth(truth_dir: Path | str, table: str | None) -> pd.DataFrame | None:
    """The true probabilities of ``table`` (``lead_conversion`` or ``churn``) in ``truth_dir``.

    Returns:
        one row per (entity, weekly snapshot) with the exact probability, or None when the data
        did not come from the simulator (no truth table) or ``table`` is None.
    """
    if table is None:
        return None
    path = Path(truth_dir) / f"{table}.parquet"
    return pd.read_parquet(path) if path.exists() else None


def read_lifetime_truth(truth_dir: Path | str) -> pd.DataFrame | None:
    """Each live subscription's true expected remaining lifetime at the end of the simulation
    (``account_id``, ``as_of``, ``expected_remaining_months``; :mod:`simulator.lifetime_truth`),
    or None when it was not written (``simulate --lifetime-truth``) or the data is not simulated."""
    path = Path(truth_dir) / "lifetime.parquet"
    return pd.read_parquet(path) if path.exists() else None
