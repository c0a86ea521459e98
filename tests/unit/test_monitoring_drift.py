"""monitoring.drift: Evidently's PSI flags the columns that moved and only those; alerts say so."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from monitoring.drift import (
    CURRENT_WINDOW,
    EVIDENTLY_QUIET_ENV,
    TABLE_COLUMNS,
    drift_alerts,
    feature_drift,
    score_drift,
)

pytestmark = pytest.mark.unit

N = 2_000
SOURCES = ["webinar", "paid_search", "organic", "referral"]


def _window(n: int, seed: int, *, shifted: bool) -> pd.DataFrame:
    """Leads of one window; ``shifted`` triples paid search touches and moves the source mix.

    Every other column is drawn from the same distribution in both windows, from a fresh sample.
    """
    rng = np.random.default_rng(seed)
    paid = rng.poisson(1.5, n).astype("float32")
    return pd.DataFrame(
        {
            "touches_paid_search_30d": paid * 3 if shifted else paid,
            "touches_email_open_30d": rng.poisson(4.0, n).astype("float32"),
            "days_since_last_touch": rng.exponential(20.0, n),
            "source": pd.array(
                rng.choice(SOURCES, n, p=[0.1, 0.6, 0.2, 0.1] if shifted else [0.4, 0.2, 0.2, 0.2]),
                dtype="string",
            ),
            "seniority": pd.array(rng.choice(["manager", "director", "vp", None], n), "string"),
            "account_is_customer": np.ones(n),
            "email_reply_rate_90d": np.full(n, np.nan),
        }
    )


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    # given a training window and a latest period where paid search touches tripled and the
    # source mix moved towards paid search
    reference = _window(N, seed=1, shifted=False)
    current = _window(N, seed=2, shifted=True)
    # when
    return feature_drift(reference, current, categorical=["seniority"]).set_index("feature")


def test_the_table_has_one_row_per_column_in_order(table: pd.DataFrame) -> None:
    assert list(table.reset_index().columns) == list(TABLE_COLUMNS)
    assert list(table.index) == list(_window(5, seed=0, shifted=False).columns)
    assert (table["method"] == "psi").all()
    assert (table["threshold"] == 0.2).all()
    assert (table["reference_rows"] == N).all() and (table["current_rows"] == N).all()


def test_a_shifted_column_is_flagged_and_unchanged_ones_are_not(table: pd.DataFrame) -> None:
    paid = table.loc["touches_paid_search_30d"]
    assert paid["kind"] == "numeric"
    assert paid["drifted"]
    assert paid["score"] > 1.0
    assert paid["current_mean"] == pytest.approx(3 * paid["reference_mean"], rel=0.1)
    for unchanged in ("touches_email_open_30d", "days_since_last_touch", "seniority"):
        assert not table.loc[unchanged, "drifted"], unchanged
        assert table.loc[unchanged, "score"] < 0.05, unchanged


def test_a_categorical_shift_is_flagged(table: pd.DataFrame) -> None:
    source = table.loc["source"]
    assert source["kind"] == "categorical"
    assert source["drifted"]
    assert math.isnan(source["reference_mean"]) and math.isnan(source["current_mean"])
    assert table.loc["seniority", "kind"] == "categorical"
    # the seniority column's missing values are counted, not compared
    assert 0 < table.loc["seniority", "reference_missing"] < N


def test_categorical_psi_equals_psi_over_the_categories() -> None:
    # Categories are PSI's bins by definition, so an independent PSI can be computed here;
    # Evidently does not expose its numeric bins, so numeric columns are checked qualitatively.
    reference = pd.DataFrame({"source": ["webinar"] * 50 + ["organic"] * 30 + ["referral"] * 20})
    current = pd.DataFrame({"source": ["webinar"] * 20 + ["organic"] * 30 + ["referral"] * 50})
    ref_share = np.array([0.5, 0.3, 0.2])
    cur_share = np.array([0.2, 0.3, 0.5])
    expected = float(np.sum((ref_share - cur_share) * np.log(ref_share / cur_share)))
    # when
    row = feature_drift(reference, current).iloc[0]
    # then
    assert row["score"] == pytest.approx(expected)  # 0.5498
    assert row["drifted"]


def test_a_column_constant_in_both_windows_is_not_drifted(table: pd.DataFrame) -> None:
    constant = table.loc["account_is_customer"]
    assert constant["kind"] == "constant"
    assert constant["score"] == 0.0
    assert not constant["drifted"]


def test_a_column_without_values_in_both_windows_is_empty_and_not_drifted(
    table: pd.DataFrame,
) -> None:
    empty = table.loc["email_reply_rate_90d"]
    assert empty["kind"] == "empty"
    assert math.isnan(empty["score"])
    assert not empty["drifted"]
    assert empty["reference_missing"] == N and empty["current_missing"] == N


def test_a_column_that_lost_all_its_values_has_drifted() -> None:
    # given a feature the latest period no longer fills
    reference = pd.DataFrame({"touches_7d": [1.0, 2.0, 3.0, 4.0]})
    current = pd.DataFrame({"touches_7d": [np.nan, np.nan]})
    # when
    table = feature_drift(reference, current)
    # then
    row = table.iloc[0]
    assert row["kind"] == "empty" and row["drifted"] and math.isnan(row["score"])
    assert row["reference_mean"] == pytest.approx(2.5) and math.isnan(row["current_mean"])
    assert drift_alerts(table)[0]["message"] == (
        "touches in the last 7 days has no values in the latest period (2 rows), "
        "though it had values in the training window"
    )


def test_an_empty_window_is_refused_by_name() -> None:
    frame = _window(10, seed=0, shifted=False)
    with pytest.raises(ValueError, match="current window .* has no rows"):
        feature_drift(frame, frame.iloc[:0])
    with pytest.raises(ValueError, match="reference window .* has no rows"):
        feature_drift(frame.iloc[:0], frame)
    with pytest.raises(ValueError, match="current window .* has no column 'source'"):
        feature_drift(frame, frame.drop(columns="source"))
    assert "latest period" in CURRENT_WINDOW


def test_score_drift_flags_moved_probabilities_only() -> None:
    rng = np.random.default_rng(3)
    training = rng.beta(2, 5, N)
    # when the latest period's scores come from the same distribution, then from a higher one
    same = score_drift(training, rng.beta(2, 5, N)).iloc[0]
    higher = score_drift(training, rng.beta(4, 3, N), name="lead_score").iloc[0]
    # then
    assert not same["drifted"] and same["score"] < 0.05
    assert higher["drifted"] and higher["feature"] == "lead_score" and higher["score"] > 0.2
    with pytest.raises(ValueError, match="one score per row"):
        score_drift(np.c_[training, 1 - training], training)


def test_alerts_name_the_drifted_columns_in_plain_words(table: pd.DataFrame) -> None:
    alerts = drift_alerts(table.reset_index(), names={"source": "lead source"})
    assert [a["feature"] for a in alerts] == ["touches_paid_search_30d", "source"]
    paid = alerts[0]
    assert paid["kind"] == "feature_drift"
    assert paid["threshold"] == 0.2
    assert paid["score"] == pytest.approx(table.loc["touches_paid_search_30d", "score"])
    assert paid["message"] == (
        f"touches paid search in the last 30 days moved (PSI {paid['score']:.2f} ≥ 0.20) "
        "between the training window and the latest period"
    )
    assert alerts[1]["message"].startswith("lead source moved (PSI ")


def test_alert_message_for_a_given_row() -> None:
    row = {
        "feature": "score",
        "method": "psi",
        "score": 0.41,
        "threshold": 0.2,
        "drifted": True,
        "reference_rows": 100,
        "current_rows": 80,
        "reference_missing": 0,
        "current_missing": 0,
    }
    table = pd.DataFrame([row, {**row, "feature": "calm", "score": 0.01, "drifted": False}])
    alerts = drift_alerts(table, names={"score": "the lead score"}, kind="score_drift")
    assert alerts == [
        {
            "kind": "score_drift",
            "feature": "score",
            "method": "psi",
            "score": 0.41,
            "threshold": 0.2,
            "message": "the lead score moved (PSI 0.41 ≥ 0.20) between the training window "
            "and the latest period",
        }
    ]
    # a p-value method drifts below its threshold, and the message says so
    ks = {**row, "feature": "touches_7d", "method": "ks", "score": 0.001, "threshold": 0.05}
    assert drift_alerts(pd.DataFrame([ks]))[0]["message"] == (
        "touches in the last 7 days moved (ks p-value 1.0e-03 < 0.05) between the training "
        "window and the latest period"
    )


def test_evidently_sends_no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    # given a process where any connection or child process fails
    monkeypatch.delenv("DO_NOT_TRACK", raising=False)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a connection or a child process was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)
    # when drift is measured
    feature_drift(_window(200, seed=4, shifted=False), _window(200, seed=5, shifted=True))
    # then the switch Evidently's usage reporting reads is off
    from evidently.telemetry import event_logger

    assert os.environ["DO_NOT_TRACK"] == EVIDENTLY_QUIET_ENV["DO_NOT_TRACK"]
    assert not event_logger.is_enabled()


def test_importing_the_module_neither_loads_evidently_nor_sets_anything() -> None:
    code = (
        "import os, sys; before = dict(os.environ); import monitoring.drift; "
        "assert 'evidently' not in sys.modules; assert dict(os.environ) == before"
    )
    env = {k: v for k, v in os.environ.items() if k not in EVIDENTLY_QUIET_ENV}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
