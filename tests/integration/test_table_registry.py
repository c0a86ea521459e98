"""A bring-your-own table model in the registry: its own name, a gate on the same folds, scores.

A seeded export of 1,400 leads stands in for a CRM file, small enough that nested
cross-validation over the small grid takes seconds.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
from typer.testing import CliRunner

from training.pipeline import SPECS, ModelSpec
from training.registry import champion_version, client_for, load_version
from training.selection import candidate_from_record
from training.table import feature_frame, prepare_table
from training.table_candidates import build
from training.tables import table_model_name, train_cross_validated, train_table
from training.tracking import log_training_run

pytestmark = pytest.mark.integration


def export(rows: int = 1400, seed: int = 5) -> pd.DataFrame:
    """Leads with visits, minutes on site (as text, some blank) and a source ("Select" = none)."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(4, rows).astype(float)
    minutes = rng.gamma(2.0, 300.0, rows)
    source = rng.choice(
        ["Google", "Referral", "Olark Chat", "Select"], rows, p=[0.4, 0.2, 0.3, 0.1]
    )
    effect = pd.Series(source).map(
        {"Google": 0.0, "Referral": 1.2, "Olark Chat": -0.8, "Select": -0.3}
    )
    margin = -1.6 + 0.15 * visits + 0.0015 * minutes + effect.to_numpy() + rng.normal(0, 0.5, rows)
    converted = rng.random(rows) < expit(margin)
    text = pd.Series(minutes.round(1).astype(str)).mask(rng.random(rows) < 0.03, " ")
    return pd.DataFrame(
        {
            "Lead ID": [f"X{i:05d}" for i in range(rows)],
            "Visits": visits,
            "Minutes on site": text,
            "Source": source,
            "Converted": np.where(converted, "Yes", "No"),
        }
    )


def _spec(name: str = "table_leads_export") -> ModelSpec:
    return dataclasses.replace(
        SPECS["lead_conversion"],
        name=name,
        kind="lead_conversion",
        entity_key="Lead ID",
        feature_service="table:leads_export.csv",
    )


def _train(tmp_path: Path, *extra: str) -> dict:
    from crm_intel.cli import app

    path = tmp_path / "leads_export.csv"
    if not path.exists():
        export().to_csv(path, index=False)
    done = CliRunner().invoke(
        app,
        [
            "train",
            "lead",
            "--table",
            str(path),
            "--id",
            "Lead ID",
            "--label",
            "Converted",
            "--grid",
            "small",
            "--json",
            *extra,
        ],
    )
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_default_names_come_from_the_file_and_native_names_are_refused() -> None:
    assert (
        table_model_name(Path("/x/WA_Fn-UseC_-Telco churn.csv")) == "table_wa_fn_usec_telco_churn"
    )
    assert table_model_name(Path("leads.csv"), "my_leads") == "my_leads"
    for native in ("lead_conversion", "churn_risk"):
        with pytest.raises(ValueError, match="native model"):
            table_model_name(Path("leads.csv"), native)
    with pytest.raises(ValueError, match="cannot be trained as 'lead_conversion'"):
        train_cross_validated(
            prepare_table(export(), "Lead ID", "Converted").frame,
            dataclasses.replace(SPECS["lead_conversion"], entity_key="Lead ID"),
        )


def test_a_table_model_registers_under_its_name_is_gated_on_the_same_folds_and_scores(
    tmp_path: Path,
) -> None:
    from crm_intel.cli import app

    uri = os.environ["MLFLOW_TRACKING_URI"]
    # when the same export is trained twice through the CLI, with no time to spare
    first = _train(tmp_path, "--time-limit", "0")
    second = _train(tmp_path, "--time-limit", "0")
    # then the search ran the first candidate of each family and said what it left out
    selection = first["selection"]
    assert first["protocol"] == "nested_cv_5x3"
    assert (selection["candidates_tried"], selection["candidates_planned"]) == (2, 3)
    assert any(
        n.startswith("time limit 0 s: the search stopped after 2 of 3 candidates")
        and "not tried: lightgbm(" in n
        for n in first["notes"]
    )
    # and the figures are outer-fold means of the candidate each fold's inner search chose
    outer = selection["outer_folds"]
    assert first["roc_auc"] == pytest.approx(np.mean([f["outer_roc_auc"] for f in outer]))
    for fold in outer:
        inner = fold["inner_roc_auc"]
        assert set(inner) == set(selection["scores"])
        assert inner[fold["chosen"]] >= max(inner.values()) - 0.001
    assert first["candidate"] in selection["scores"]
    # and both versions sit under the table's own name, never under the service's models
    assert first["model"] == second["model"] == "table_leads_export"
    assert first["promotion"]["promoted"] is True
    assert [m.name for m in client_for(uri).search_registered_models()] == ["table_leads_export"]
    assert champion_version(uri, "lead_conversion") is None
    # and the second is gated against the first: the champion's configuration refitted on the
    # challenger's own outer folds, which we refit here by hand
    decision = second["promotion"]
    assert decision["champion_version"] == "1"
    assert "refitted as the challenger was" in decision["reason"]
    champion = load_version(uri, "table_leads_export", "1")
    record = json.loads(champion.metadata["tags"]["candidate"])
    table = prepare_table(export(), "Lead ID", "Converted")
    X, y = table.frame[table.features], table.frame["label"].to_numpy()
    by_hand = []
    for fit_idx, hold_idx in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
        model = build(candidate_from_record(record), {}, (), 0).fit(X.iloc[fit_idx], y[fit_idx])
        by_hand.append(roc_auc_score(y[hold_idx], model.predict_proba(X.iloc[hold_idx])[:, 1]))
    assert decision["champion_roc_auc"] == pytest.approx(float(np.mean(by_hand)), abs=1e-12)
    assert decision["challenger_roc_auc"] == pytest.approx(second["roc_auc"])
    assert decision["promoted"] is (
        decision["challenger_roc_auc"] >= decision["champion_roc_auc"] + decision["margin"]
    )

    # when the champion scores a file shaped like the export (its rows in another order)
    rows = export().sample(frac=1.0, random_state=1).drop(columns="Converted")
    rows.to_csv(tmp_path / "to_score.csv", index=False)
    out = tmp_path / "scores.csv"
    args = [
        "score",
        "table",
        "--name",
        "table_leads_export",
        "--table",
        str(tmp_path / "to_score.csv"),
    ]
    done = CliRunner().invoke(app, [*args, "--out", str(out), "--json"])
    assert done.exit_code == 0, done.output
    scores = pd.read_csv(out)
    # then every row is scored by the champion, keyed by the id the model was trained with
    current = load_version(
        uri, "table_leads_export", champion_version(uri, "table_leads_export").version
    )
    assert json.loads(done.stdout.strip().splitlines()[-1])["model_version"] == current.version
    assert scores["Lead ID"].tolist() == rows["Lead ID"].tolist()
    features = feature_frame(rows, list(current.model.feature_names_in_))
    expected = current.model.predict_proba(features)[:, 1]
    np.testing.assert_allclose(scores["probability"].to_numpy(), expected, rtol=1e-9)
    assert scores["score"].between(1, 99).all()
    assert set(scores["grade"]) <= {"A", "B", "C", "D"}
    reasons = json.loads(scores["reasons"][0])
    assert len(reasons) == 3
    assert {r["feature"] for r in reasons} == {"Visits", "Minutes on site", "Source"}
    assert all(r["label"] in scores["reasons_text"][0] for r in reasons)

    # and a file without a feature the model needs is refused, naming it
    rows.drop(columns="Source").to_csv(tmp_path / "short.csv", index=False)
    args[-1] = str(tmp_path / "short.csv")
    done = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "short_scores.csv")])
    assert done.exit_code == 2
    assert "lacks 1 feature(s) the model was trained on: Source" in done.output


def test_a_champion_registered_without_a_candidate_tag_is_refitted_from_its_settings() -> None:
    uri = os.environ["MLFLOW_TRACKING_URI"]
    frame = prepare_table(export(), "Lead ID", "Converted").frame
    # given a table champion from before candidates were recorded (no candidate tag)
    older = train_cross_validated(frame, _spec(), {"num_leaves": 4})
    log_training_run(dataclasses.replace(older, candidate={}), uri, 0.002)
    assert "candidate" not in load_version(uri, "table_leads_export", "1").metadata["tags"]
    # when a new run of the same table is registered
    newer = train_cross_validated(frame, _spec())
    decision = log_training_run(newer, uri, 0.002)["decision"]
    # then the champion's own settings are refitted on the challenger's folds
    assert "refitted as the challenger was (lightgbm)" in decision["reason"]
    assert decision["champion_roc_auc"] == pytest.approx(older.metrics["model"]["roc_auc"])
    # and a configuration refitted on its own folds gives back exactly its figure
    assert newer.reevaluate is not None
    assert newer.reevaluate(newer.candidate) == pytest.approx(
        newer.metrics["model"]["roc_auc"], abs=1e-12
    )


def test_a_table_with_a_timestamp_is_refitted_on_its_own_split() -> None:
    raw = export(rows=2000).assign(
        Created=pd.date_range("2024-01-01", periods=2000, freq="6h", tz="UTC").astype(str)
    )
    table = prepare_table(raw, "Lead ID", "Converted", timestamp="Created")
    result = train_table(table.frame, _spec(), has_timestamp=True)
    assert result.protocol == "time_split"
    assert result.candidate["name"] == "lightgbm"
    assert result.reevaluate is not None
    assert result.reevaluate(result.candidate) == pytest.approx(
        result.metrics["model"]["roc_auc"], abs=1e-12
    )
