"""From a calibrated probability to what a CRM shows: a 1–99 score, a grade, revenue at risk.

The score is the calibrated probability in percent, clipped to 1–99, so that "a score of 30" means
"about 30 % likely" for every model and every retrain. Grades cut the score at fixed, documented
thresholds:

=====  ===========  ==============================================
grade  score        meaning
=====  ===========  ==============================================
A      50–99        more likely than not
B      25–49        about one in two to one in four
C      10–24        about one in four to one in ten
D      1–9          under one in ten
=====  ===========  ==============================================

Churn risk also gets expected revenue at risk: probability × annualised MRR (MRR × 12).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GRADE_THRESHOLDS: tuple[tuple[str, int], ...] = (("A", 50), ("B", 25), ("C", 10), ("D", 1))


def score_from_probability(p: np.ndarray) -> np.ndarray:
    """Calibrated probability → integer score 1–99."""
    return np.clip(np.rint(100 * np.asarray(p, dtype=float)), 1, 99).astype(int)


def grade_from_score(score: np.ndarray) -> np.ndarray:
    """Score → grade A–D by :data:`GRADE_THRESHOLDS`."""
    score = np.asarray(score)
    grades = np.full(score.shape, "D", dtype=object)
    for grade, least in reversed(GRADE_THRESHOLDS):
        grades[score >= least] = grade
    return grades


def score_frame(
    p: np.ndarray, mrr: np.ndarray | None = None, index: pd.Index | None = None
) -> pd.DataFrame:
    """Probability, score and grade per entity; with ``mrr``, expected annual revenue at risk."""
    p = np.asarray(p, dtype=float)
    score = score_from_probability(p)
    out = pd.DataFrame(
        {"probability": p, "score": score, "grade": grade_from_score(score)}, index=index
    )
    if mrr is not None:
        out["revenue_at_risk"] = p * 12.0 * np.nan_to_num(np.asarray(mrr, dtype=float))
    return out


def add_revenue_at_risk(
    evaluation: pd.DataFrame, rows: pd.DataFrame, value_column: str | None
) -> None:
    """``evaluation["revenue_at_risk"]`` from its ``p_model`` and the monthly value in
    ``rows[value_column]`` (same index), when the table has that column."""
    if value_column and value_column in rows.columns:
        scored = score_frame(evaluation["p_model"], rows[value_column], evaluation.index)
        evaluation["revenue_at_risk"] = scored["revenue_at_risk"]
