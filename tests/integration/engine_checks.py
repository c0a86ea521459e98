"""Feature tables compared with the pandas pipeline's frozen output (both engines' tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pandas_features"
TABLES = {
    "lead_features": "lead_id",
    "account_features": "account_id",
    "content_features": "content_id",
    "lead_labels": "lead_id",
    "account_labels": "account_id",
}
TOLERANCE = 1e-9


def differences(got: pd.DataFrame, want: pd.DataFrame, key: str) -> list[str]:
    """How ``got`` differs from ``want`` row for row (after ordering both by key and time):
    shape, columns, and per column the rows whose values differ (floats beyond 1e-9)."""
    if list(got.columns) != list(want.columns):
        return [f"columns {list(got.columns)} != {list(want.columns)}"]
    if len(got) != len(want):
        return [f"{len(got)} rows != {len(want)}"]
    order = [key, "event_timestamp"]
    got = got.sort_values(order).reset_index(drop=True)
    want = want.sort_values(order).reset_index(drop=True)
    out = []
    for col in want.columns:
        a, b = got[col], want[col]
        if b.dtype.kind == "f":
            x, y = a.to_numpy(np.float64), b.to_numpy(np.float64)
            same = (np.abs(x - y) <= TOLERANCE) | (np.isnan(x) & np.isnan(y))
        else:
            x, y = a.astype(object).to_numpy(), b.astype(object).to_numpy()
            missing_x, missing_y = a.isna().to_numpy(), b.isna().to_numpy()
            equal = [
                not (mx or my) and bool(p == q)
                for p, q, mx, my in zip(x, y, missing_x, missing_y, strict=True)
            ]
            same = (missing_x & missing_y) | np.array(equal, dtype=bool)
        if not same.all():
            first = int(np.flatnonzero(~same)[0])
            out.append(
                f"{col}: {int((~same).sum())} rows differ, first {got.loc[first, key]} at "
                f"{got.loc[first, 'event_timestamp']}: {a.iloc[first]!r} != {b.iloc[first]!r}"
            )
    return out


def fixture_differences(features_dir: Path) -> dict[str, list[str]]:
    """Per table, how the tables in ``features_dir`` differ from the frozen pandas output (and
    their stored types from the fixture's); empty lists when they are the same."""
    out = {}
    for name, key in TABLES.items():
        got = pd.read_parquet(features_dir / f"{name}.parquet")
        want = pd.read_parquet(FIXTURE / f"{name}.parquet")
        found = differences(got, want, key)
        types = [
            f"{c}: {got[c].dtype} != {want[c].dtype}"
            for c in want.columns
            if c in got and str(got[c].dtype) != str(want[c].dtype)
        ]
        out[name] = found + types
    return out
