"""Feature and score drift between the training window and the latest period, by Evidently.

Each column of the reference window (the rows the model was trained on) is compared with the
same column of the current window (the latest period) by Evidently's ``ValueDrift`` metric, one
metric per column in a single ``Report``. The score and the verdict are Evidently's, read from
the run's public ``Snapshot.dict()``: nothing here recomputes a drift statistic.

The drift rule: by default the method is the Population Stability Index (PSI) and a column has
drifted when PSI ≥ 0.2, the common convention (below 0.1 stable, 0.1 to 0.2 a moderate shift,
0.2 and above a significant one). Evidently's own PSI default is 0.1, so the threshold is always
passed explicitly. For PSI, Evidently bins a numeric column that has more than 20 distinct
reference values into Sturges bins spanning both windows, and any other column by its values;
missing values are left out of both windows (their counts are in the table).

Evidently is imported on first use, not with this module: it takes ~3 s to import, and the
packages above this one import ``monitoring`` without always measuring drift.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

DRIFT_METHOD = "psi"
DRIFT_THRESHOLD = 0.2
REFERENCE_WINDOW = "reference window (the model's training window)"
CURRENT_WINDOW = "current window (the latest period)"

NUMERIC = "numeric"
CATEGORICAL = "categorical"
CONSTANT = "constant"  # one value, the same, in both windows: scored, never drifted
EMPTY = "empty"  # no value in at least one window: not scored (Evidently needs values)

TABLE_COLUMNS: tuple[str, ...] = (
    "feature",
    "kind",
    "method",
    "score",
    "threshold",
    "drifted",
    "reference_mean",
    "current_mean",
    "reference_rows",
    "current_rows",
    "reference_missing",
    "current_missing",
)

# Evidently 0.7 reports usage (through iterative-telemetry, to a server of its own) only from
# its UI service and its collector, never from Report.run, and only while DO_NOT_TRACK is unset
# (any value turns it off); EVIDENTLY_DISABLE_TELEMETRY=1 is the switch of its legacy modules.
# Both are set before every use, so before Evidently is first imported, and nothing Evidently
# does in this process sends anything (serving.runtime.QUIET_ENV sets DO_NOT_TRACK likewise).
EVIDENTLY_QUIET_ENV: dict[str, str] = {"DO_NOT_TRACK": "true", "EVIDENTLY_DISABLE_TELEMETRY": "1"}

_TABLE_DTYPES = {
    **dict.fromkeys(("score", "threshold", "reference_mean", "current_mean"), "float64"),
    **dict.fromkeys(("reference_rows", "current_rows"), "int64"),
    **dict.fromkeys(("reference_missing", "current_missing"), "int64"),
    "drifted": "bool",
}
_METHOD_WORDS = {"psi": "PSI"}
_WINDOW_DAYS = re.compile(r"_(\d+)d$")


def feature_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    method: str = DRIFT_METHOD,
    threshold: float = DRIFT_THRESHOLD,
    categorical: Sequence[str] = (),
) -> pd.DataFrame:
    """How far each column moved between the reference window and the current window.

    Args:
        reference: Rows of the model's training window.
        current: Rows of the latest period, same columns.
        columns: Columns to compare (default: every column of ``reference``).
        method: Evidently's drift method for every column. PSI (and ``"jensenshannon"``)
            applies to numeric and categorical columns alike; numeric-only methods such as
            ``"wasserstein"`` or ``"ks"`` need ``columns`` without categorical ones, or
            Evidently refuses.
        threshold: Evidently's threshold for ``method``; with PSI a column has drifted when
            its score is ≥ ``threshold``.
        categorical: Columns compared as categories even when numeric; text, category and
            boolean columns always are.

    Returns:
        One row per column, in ``columns`` order (see ``TABLE_COLUMNS``): ``kind`` is numeric,
        categorical, constant (one value, the same in both windows) or empty (no value in one
        or both windows: no score; drifted when only one window has values); ``score`` and
        ``drifted`` are Evidently's; the means are of the non-missing values of numeric
        columns (NaN for categorical ones); ``*_rows`` count a window's rows and ``*_missing``
        those without a value.

    Raises:
        ValueError: A window has no rows, or lacks one of ``columns``.
    """
    names = list(reference.columns if columns is None else columns)
    for frame, window in ((reference, REFERENCE_WINDOW), (current, CURRENT_WINDOW)):
        if len(frame) == 0:
            raise ValueError(f"the {window} has no rows: drift needs rows in both windows")
        absent = [name for name in names if name not in frame.columns]
        if absent:
            raise ValueError(f"the {window} has no column {', '.join(map(repr, absent))}")
    as_category = {
        name
        for name in names
        if name in set(categorical) or not (_numeric(reference[name]) and _numeric(current[name]))
    }
    ref = {name: _normalized(reference[name], name in as_category) for name in names}
    cur = {name: _normalized(current[name], name in as_category) for name in names}
    kinds = {name: _kind(ref[name], cur[name], name in as_category) for name in names}
    scored = [name for name in names if kinds[name] != EMPTY]
    verdicts = _evidently_value_drift(
        pd.DataFrame({name: ref[name] for name in scored}),
        pd.DataFrame({name: cur[name] for name in scored}),
        categorical=[name for name in scored if name in as_category],
        method=method,
        threshold=threshold,
    )
    rows = []
    for name in names:
        # a column with values in one window only has no score, and has drifted
        one_sided = (ref[name].count() == 0) != (cur[name].count() == 0)
        score, drifted = verdicts.get(name, (math.nan, one_sided))
        numeric = name not in as_category
        rows.append(
            {
                "feature": name,
                "kind": kinds[name],
                "method": method,
                "score": score,
                "threshold": threshold,
                "drifted": drifted,
                "reference_mean": ref[name].mean() if numeric else math.nan,
                "current_mean": cur[name].mean() if numeric else math.nan,
                "reference_rows": len(reference),
                "current_rows": len(current),
                "reference_missing": len(reference) - ref[name].count(),
                "current_missing": len(current) - cur[name].count(),
            }
        )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS)).astype(_TABLE_DTYPES)


def score_drift(
    reference_scores: ArrayLike,
    current_scores: ArrayLike,
    *,
    name: str = "score",
    method: str = DRIFT_METHOD,
    threshold: float = DRIFT_THRESHOLD,
) -> pd.DataFrame:
    """How far the model's output probabilities moved: :func:`feature_drift` on one column.

    Args:
        reference_scores: One probability per row of the training window.
        current_scores: One probability per row of the latest period.
        name: The ``feature`` the table names the score by.
        method: As in :func:`feature_drift`.
        threshold: As in :func:`feature_drift`.

    Raises:
        ValueError: Scores are not one per row, or a window has none.
    """
    windows = {}
    for scores, window in ((reference_scores, REFERENCE_WINDOW), (current_scores, CURRENT_WINDOW)):
        values = np.asarray(scores, dtype="float64")
        if values.ndim != 1:
            raise ValueError(f"the {window} needs one score per row, got shape {values.shape}")
        windows[window] = pd.DataFrame({name: values})
    return feature_drift(
        windows[REFERENCE_WINDOW], windows[CURRENT_WINDOW], method=method, threshold=threshold
    )


def drift_alerts(
    table: pd.DataFrame,
    *,
    names: Mapping[str, str] | None = None,
    kind: str = "feature_drift",
) -> list[dict[str, Any]]:
    """One alert per drifted row of a :func:`feature_drift` or :func:`score_drift` table.

    Args:
        table: A drift table.
        names: Plain words for a column (``{"touches_paid_search_30d": "paid search touches
            in the last 30 days"}``); others are spelled from their name.
        kind: The alerts' kind (``"score_drift"`` for a score table).

    Returns:
        Dicts with ``kind``, ``feature``, ``method``, ``score``, ``threshold`` and a
        ``message`` in plain words, in the table's order.

    Examples:
        >>> row = {"feature": "touches_paid_search_30d", "method": "psi", "score": 0.41,
        ...        "threshold": 0.2, "drifted": True, "reference_missing": 0,
        ...        "reference_rows": 10, "current_missing": 0, "current_rows": 10}
        >>> alert = drift_alerts(pd.DataFrame([row]))[0]
        >>> print(alert["message"])  # doctest: +NORMALIZE_WHITESPACE
        touches paid search in the last 30 days moved (PSI 0.41 ≥ 0.20) between the training
        window and the latest period
    """
    alerts = []
    for row in table[table["drifted"]].itertuples(index=False):
        feature = str(row.feature)
        name = (names or {}).get(feature) or _plain_name(feature)
        alerts.append(
            {
                "kind": kind,
                "feature": feature,
                "method": str(row.method),
                "score": float(row.score),
                "threshold": float(row.threshold),
                "message": _message(name, row),
            }
        )
    return alerts


def _message(name: str, row: Any) -> str:
    if row.current_missing == row.current_rows:
        return (
            f"{name} has no values in the latest period ({row.current_rows} rows), "
            "though it had values in the training window"
        )
    if row.reference_missing == row.reference_rows:
        return f"{name} has values in the latest period, though it had none in the training window"
    # The row drifted by Evidently's verdict: a distance (PSI, wasserstein) is then at or above
    # its threshold, a p-value (ks, chisquare) below it.
    distance = row.score >= row.threshold
    words = _METHOD_WORDS.get(str(row.method), str(row.method)) + ("" if distance else " p-value")
    sign = "≥" if distance else "<"
    return (
        f"{name} moved ({words} {_number(row.score)} {sign} {_number(row.threshold)}) "
        "between the training window and the latest period"
    )


def _number(value: float) -> str:
    return f"{value:.2f}" if value == 0 or abs(value) >= 0.01 else f"{value:.1e}"


def _plain_name(feature: str) -> str:
    match = _WINDOW_DAYS.search(feature)
    stem = feature[: match.start()] if match else feature
    words = stem.replace("_", " ").strip()
    return f"{words} in the last {match.group(1)} days" if match else words


def _numeric(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _normalized(column: pd.Series, as_category: bool) -> pd.Series:
    """Categories as strings (so both windows spell a category alike), numbers as float64 with
    infinities missing; missing values stay missing (Evidently leaves them out)."""
    if as_category:
        return column.astype("string").reset_index(drop=True)
    return column.astype("float64").replace([np.inf, -np.inf], np.nan).reset_index(drop=True)


def _kind(reference: pd.Series, current: pd.Series, as_category: bool) -> str:
    if reference.count() == 0 or current.count() == 0:
        return EMPTY
    if pd.concat([reference, current]).nunique() == 1:
        return CONSTANT
    return CATEGORICAL if as_category else NUMERIC


def _evidently_value_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    categorical: Sequence[str],
    method: str,
    threshold: float,
) -> dict[str, tuple[float, bool]]:
    """Column → (drift score, drifted) from one Evidently report of a ``ValueDrift`` per column.

    Every column has at least one value in each window; the windows may differ in length.
    """
    if reference.columns.empty:
        return {}
    os.environ.update(EVIDENTLY_QUIET_ENV)
    with warnings.catch_warnings():
        # Evidently 0.7's import warns of its own use of numpy.core and of litestar's old API:
        # nothing our callers can act on.
        warnings.simplefilter("ignore", DeprecationWarning)
        from evidently import DataDefinition, Dataset, Report
        from evidently.metrics import ValueDrift

    definition = DataDefinition(
        numerical_columns=[name for name in reference.columns if name not in categorical],
        categorical_columns=list(categorical),
    )
    report = Report(
        [ValueDrift(column=name, method=method, threshold=threshold) for name in reference],
        include_tests=True,  # each ValueDrift's test carries Evidently's drifted/not verdict
    )
    run = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    ).dict()
    columns = {metric["id"]: metric["config"]["column"] for metric in run["metrics"]}
    scores = {metric["id"]: float(metric["value"]) for metric in run["metrics"]}
    verdicts = {test["metric_config"]["metric_id"]: test["status"] for test in run["tests"]}
    return {column: (scores[id_], verdicts[id_] == "FAIL") for id_, column in columns.items()}
