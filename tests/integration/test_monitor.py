"""``crm-intel monitor`` on a simulation whose paid-search volume triples from month 10.

The model is the back-test's: selected and fitted as of a cutoff before the drift, with labels
closed by then, and scored on the four weeks after it. The same model's scores, given by batch
runs as of each of those weeks and logged, are what the monitor's realised figures read: they
must tell the back-test's story, while the drift check flags the paid-search features.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import Result
from typer.testing import CliRunner

from crm.settings import Settings, forget_settings
from crm_intel.cli import app
from features import store
from features.training import training_set
from monitoring.monitor import Thresholds, monitor_model
from serving.batch import score_batch, trend_and_log
from simulator import ChannelVolumeDrift, SimulationConfig, simulate, write_simulation
from training.backtest import backtest_protocol
from training.pipeline import SPECS
from training.protocol import Protocol, scored_period_rows
from training.registry import Champion
from training.snapshots import evaluate_as_of

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DRIFT_MONTH = 10
# features with no path from paid-search touches: who the lead is, and the other channels
UNRELATED = (
    "seniority",
    "source",
    "country",
    "purchase_timeframe",
    "account_employee_band",
    "account_industry",
    "account_region",
    "touches_email_90d",
    "touches_social_90d",
    "touches_display_90d",
    "touches_event_90d",
    "touches_webinar_90d",
    "touches_referral_90d",
    "touches_partner_90d",
    "touches_sales_90d",
)


@pytest.fixture(scope="module")
def drifted(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("drifted")
    config = SimulationConfig(
        seed=7,
        accounts=400,
        leads=6000,
        months=15,
        drift=(ChannelVolumeDrift("paid_search", 3.0, from_month=DRIFT_MONTH),),
    )
    sim = simulate(config)
    write_simulation(sim, root / "data")
    settings = Settings(
        data_dir=root / "data", mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}"
    )
    store.build(settings)
    store.apply(settings)
    frame = training_set(settings, "lead_conversion")
    start = pd.Timestamp(config.start, tz="UTC")
    cutoff = start + pd.DateOffset(months=DRIFT_MONTH - 2)
    protocol = backtest_protocol(Protocol())  # the back-test's: the 28 days after the cutoff
    out = evaluate_as_of(frame, SPECS["lead_conversion"], cutoff, protocol)
    model = out["models"]["model"]
    backtest_auc = out["metrics"]["model"]["roc_auc"]
    ts = pd.to_datetime(frame["event_timestamp"], utc=True)
    weeks = sorted(ts[scored_period_rows(ts, cutoff, protocol)].unique())
    champion = Champion(
        model,
        "as-of-cutoff",
        {
            "feature_names": list(model.feature_names_in_),
            "tags": {"production_as_of": str(cutoff.date()), "roc_auc": str(backtest_auc)},
        },
    )
    logged = 0
    for week in weeks:
        scored, _ = score_batch(settings, "lead_conversion", champion=champion, as_of=week)
        logged += trend_and_log(
            settings, scored, "lead_conversion", champion, week.to_pydatetime(), f"as-of {week}"
        )
    report = monitor_model(settings, "lead_conversion", Thresholds(), champion=champion)
    return settings, report, backtest_auc, logged, len(weeks)


def test_paid_search_features_are_flagged_and_unrelated_ones_are_not(drifted):
    _, report, _, _, _ = drifted
    flagged = {row["feature"] for row in report["feature_drift"] if row["drifted"]}
    assert "touches_paid_search_90d" in flagged, flagged
    assert not flagged & set(UNRELATED), flagged & set(UNRELATED)
    kinds = {a["kind"] for a in report["alerts"]}
    assert "feature_drift" in kinds


def test_realised_auc_of_logged_as_of_scores_matches_the_backtest(drifted):
    _, report, backtest_auc, logged, weeks = drifted
    assert weeks == 4 and logged > 0
    (row,) = [r for r in report["realised"] if r["model_version"] == "as-of-cutoff"]
    assert row["arm"] == "champion" and row["positives"] > 0
    print(
        f"realised ROC AUC {row['roc_auc']:.4f} on {row['n']} ({row['positives']} positive); "
        f"back-test {backtest_auc:.4f}"
    )
    assert abs(row["roc_auc"] - backtest_auc) <= 0.02, (row, backtest_auc)


@pytest.mark.usefixtures("deployment_env")
def test_monitor_command_exits_1_exactly_when_a_threshold_is_crossed(
    tmp_path, monkeypatch, request
):
    request.addfinalizer(forget_settings)  # later tests read their own environment

    def run(psi: str) -> Result:
        monkeypatch.setenv("CRM_INTEL_MONITOR_FEATURE_PSI", psi)
        monkeypatch.setenv("CRM_INTEL_MONITOR_SCORE_PSI", psi)
        monkeypatch.setenv("CRM_INTEL_MONITOR_CALIBRATION_ERROR", "1")
        forget_settings()  # read the thresholds above, not an earlier command's
        out = tmp_path / f"monitor-{psi}.html"
        result = CliRunner().invoke(app, ["monitor", "--json", "--out", str(out)])
        assert out.read_text().count("<h2>") == 2  # a section per model, either way
        return result

    strict, lenient = run("0.000001"), run("1000")
    # every feature that moved at all crosses a near-zero threshold: alerts, exit 1
    assert strict.exit_code == 1, strict.output[-2000:]
    alerts = json.loads(strict.stdout.strip().splitlines()[-1])["alerts"]
    assert alerts and {a["kind"] for a in alerts} >= {"feature_drift"}
    assert "alert:" in strict.stderr
    # none crosses an unreachable one: exit 0, no alerts
    assert lenient.exit_code == 0, lenient.output[-2000:]
    assert json.loads(lenient.stdout.strip().splitlines()[-1])["alerts"] == []
