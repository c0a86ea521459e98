"""``crm-intel value customers`` on CDNOW's sample: the table, the JSON and the page, and what a
bad purchases file gets."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from chromium import PLOTLY_CHARTS, SHOWN_TEXTS, chromium_page, needs_chromium
from typer.testing import CliRunner

from crm_intel.cli import app

pytestmark = pytest.mark.integration


def _value(*args: str) -> tuple[int, str, dict | None]:
    result = CliRunner().invoke(app, ["value", "customers", *args])
    lines = result.stdout.strip().splitlines()
    payload = json.loads(lines[-1]) if result.exit_code == 0 and lines else None
    return result.exit_code, result.output, payload


@pytest.fixture(scope="module")
def valued(cdnow_sample: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("value") / "customers.csv"
    code, output, payload = _value(
        "--purchases",
        str(cdnow_sample),
        "--calibration-end",
        "1997-09-30",
        "--holdout-end",
        "1998-06-30",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, output
    assert payload is not None
    return out, payload


def test_the_json_names_the_fitted_parameters_and_the_holdout_errors(valued) -> None:
    _, payload = valued
    assert set(payload["parameters"]) == {"r", "alpha", "a", "b", "p", "q", "v"}
    assert payload["customers"] == 2357
    assert payload["calibration_end"] == "1997-09-30"
    holdout = payload["holdout"]
    assert holdout["weeks"] == pytest.approx(39.0)
    assert set(holdout["mean_absolute_error"]) == {"model", "naive"}
    assert set(payload["summary_definitions"]) == {
        "unit",
        "frequency",
        "recency",
        "T",
        "monetary_value",
    }


def test_the_table_has_a_row_per_customer_and_sums_to_the_json(valued) -> None:
    out, payload = valued
    table = pd.read_csv(out, dtype={"customer_id": str})
    assert len(table) == payload["customers"] == table["customer_id"].nunique()
    assert table["p_alive"].between(0, 1).all()
    assert (table["lifetime_value"] >= 0).all()
    assert table["lifetime_value"].sum() == pytest.approx(payload["lifetime_value"], abs=0.01)
    assert table["holdout_purchases"].sum() == pytest.approx(
        payload["holdout"]["repeat_purchases"]["actual"]
    )
    # every customer has an RFM segment; the JSON's segments hold every customer and the value
    assert table["segment"].notna().all()
    segments = payload["segments"]
    assert sum(s["customers"] for s in segments.values()) == len(table)
    assert sum(s["lifetime_value"] for s in segments.values()) == pytest.approx(
        payload["lifetime_value"], abs=0.1
    )
    assert (
        table.groupby("segment")["lifetime_value"].mean()["champions"]
        > (table.groupby("segment")["lifetime_value"].mean()["lost"])
    )
    # a customer with no repeat purchase is less likely still buying than one with many
    assert (
        table.loc[table["frequency"] >= 5, "expected_purchases"].mean()
        > table.loc[table["frequency"] == 0, "expected_purchases"].mean()
    )


def test_the_page_has_its_charts_and_parameters(valued) -> None:
    _, payload = valued
    page = Path(payload["page"]).read_text(encoding="utf-8")
    for chart in ("cumulative", "by-frequency", "segments", "value-histogram"):
        assert f'id="{chart}"' in page
    assert f"r = {payload['parameters']['r']:.3f}" in page


@needs_chromium
def test_the_page_draws_every_chart_with_readable_text(valued, tmp_path: Path) -> None:
    pytest.importorskip("websockets", reason="the websockets package drives Chromium")
    _, payload = valued
    with chromium_page(tmp_path, 1400, 900) as page:
        # when the page is opened from disk at 1400 × 900
        page.open(Path(payload["page"]))
        charts = page.evaluate(PLOTLY_CHARTS)
        texts = page.evaluate(SHOWN_TEXTS)
        page.screenshot(tmp_path / "value.png")
        errors = page.errors()
    # then no console error, every chart drawn with data, no shown text under 11 px
    assert errors == []
    assert [c["id"] for c in charts] == [
        "cumulative",
        "by-frequency",
        "segments",
        "value-histogram",
    ]
    for chart in charts:
        assert chart["points"] and min(chart["points"]) > 0, chart
        assert chart["width"] > 400 and chart["height"] >= 300, chart
    smallest = min(texts, key=lambda t: t["px"])
    assert smallest["px"] >= 11, smallest
    chart_texts = {t["text"] for t in texts if t["svg"]}
    assert {"What happened", "Model (BG/NBD)", "Same rate as before"} <= chart_texts
    # every group of customers by purchases before the holdout has its label, the last "7+"
    assert {"0", "1", "6", "7+"} <= chart_texts


def test_a_bad_date_names_the_file_row_and_field_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "purchases.csv"
    bad.write_text(
        "customer_id,purchased_at,amount\nc1,2024-01-02,10\nc1,2024-02-30,12\nc2,2024-01-05,8\n"
    )
    out = tmp_path / "value.csv"
    code, output, _ = _value("--purchases", str(bad), "--out", str(out))
    assert code == 2
    assert "purchases.csv, row 2, column 'purchased_at'" in output
    assert "2024-02-30" in output
    assert not out.exists() and not out.with_suffix(".html").exists()


def test_without_purchases_it_says_what_to_give(tmp_path: Path) -> None:
    code, output, _ = _value("--out", str(tmp_path / "value.csv"))
    assert code == 2 and "--purchases" in output


# ----------------------------------------------------------------------------- value accounts
def _value_accounts(*args: str) -> tuple[int, str, dict | None]:
    result = CliRunner().invoke(app, ["value", "accounts", *args])
    lines = result.stdout.strip().splitlines()
    payload = json.loads(lines[-1]) if result.exit_code == 0 and lines else None
    return result.exit_code, result.output, payload


@pytest.mark.usefixtures("deployment_env")
def test_value_accounts_values_every_account_the_batch_scores(deployment, tmp_path: Path) -> None:
    from crm.settings import Settings
    from serving.batch import score_batch

    # given the demo deployment (features online, a churn champion)
    out = tmp_path / "accounts.csv"
    # when
    code, output, payload = _value_accounts("--out", str(out), "--json")
    # then every live account the nightly batch scores has a value, and only those
    assert code == 0, output
    settings = Settings(data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri)
    scores, champion = score_batch(settings, "churn_risk")
    scored = scores.loc[scores["status"] == "scored", "account_id"].astype(str)
    table = pd.read_csv(out, dtype={"account_id": str})
    assert sorted(table["account_id"]) == sorted(scored)
    assert payload["accounts"] == len(table) and payload["churn_model_version"] == champion.version
    # each range holds its expectation; value is margin × MRR over the months, discounted
    assert (table["remaining_months_low"] <= table["expected_remaining_months"]).all()
    assert (table["expected_remaining_months"] <= table["remaining_months_high"]).all()
    undiscounted = (
        payload["settings"]["gross_margin"] * table["mrr"] * table["expected_remaining_months"]
    )
    assert (table["lifetime_value"] <= undiscounted * 1.001).all()
    assert (table["lifetime_value"] >= undiscounted * 0.3).all()
    # the next renewal's probability is the churn model's, as the batch scores a renewal window
    assert table["p_next_renewal"].between(0, 1).all()
    assert 0 <= payload["persistence"] <= 1
    assert Path(payload["page"]).exists() and "truth" not in payload  # not simulated truth here


def test_value_accounts_without_a_churn_model_says_how_to_train_one(tmp_path: Path) -> None:
    code, output, _ = _value_accounts("--out", str(tmp_path / "a.csv"))
    assert code == 2
    assert "no champion for 'churn_risk'" in output and "crm-intel train" in output
