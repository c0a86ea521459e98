"""Checks the feature-store tests share (a plain module beside them: pytest puts this folder on
the import path)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def same_values(a: pd.Series, b: pd.Series) -> bool:
    """Equal values, exactly: floats bit for bit with NaN equal to NaN, others with every
    missing marker (None, NaN, <NA>) equal to every other."""
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        return np.allclose(
            a.to_numpy(dtype=float, na_value=np.nan),
            b.to_numpy(dtype=float, na_value=np.nan),
            rtol=0,
            atol=0,
            equal_nan=True,
        )
    return (
        a.astype(object).where(a.notna(), None).tolist()
        == b.astype(object).where(b.notna(), None).tolist()
    )
