"""Lead conversion on the simulated CRM: quality against the planted truth, baselines, behaviour.

Size: seed 31, 20,000 leads, 2,000 accounts, 18 months → about 330k weekly lead snapshots
(test period ≈ 82k snapshots, ≈ 3.2k conversions), purged protocol (training.protocol).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crm.contract import HIGH_INTENT_TYPES
from crm.settings import Settings
from simulator import SimulationConfig, simulate, write_simulation
from training.pipeline import SPECS, TrainingResult
from training.snapshots import train_time_split

pytestmark = pytest.mark.model

CONFIG = SimulationConfig(seed=31, accounts=2_000, leads=20_000, months=18)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from features import store

    path = tmp_path_factory.mktemp("lead-crm")
    write_simulation(simulate(CONFIG), path)
    settings = Settings(data_dir=path)
    store.build(settings)
    store.apply(settings)
    return path


@pytest.fixture(scope="module")
def result(data_dir: Path) -> TrainingResult:
    from features.training import training_set

    frame = training_set(Settings(data_dir=data_dir), "lead_conversion")
    truth = pd.read_parquet(data_dir / "truth" / "lead_conversion.parquet")
    return train_time_split(frame, SPECS["lead_conversion"], truth=truth)


def test_lead_auc_is_within_004_of_the_oracle_under_the_purged_protocol(
    result: TrainingResult,
) -> None:
    # The purged protocol (labels closed by the cutoff, parts a label window apart) measured a
    # gap of 0.037 here where the leaky split of before measured 0.033 (README, Models).
    m = result.metrics
    assert result.protocol.startswith("purged_as_of")
    assert m["model"]["roc_auc"] >= m["oracle"]["roc_auc"] - 0.04


def test_lead_model_is_calibrated_and_scored_on_every_truth_row(result: TrainingResult) -> None:
    m = result.metrics
    assert "model_on_oracle_rows" not in m
    assert m["oracle"]["rows"] == m["model"]["rows"] > 50_000
    assert m["model"]["ece"] <= 0.02  # 10 quantile bins
    assert 0.8 <= m["model"]["calibration_slope"] <= 1.2


def test_lead_champion_is_no_worse_than_the_best_baseline(result: TrainingResult) -> None:
    m = result.metrics
    best = max(m["logistic"]["roc_auc"], m["rules"]["roc_auc"])
    assert m["model"]["roc_auc"] >= best - 0.005
    assert result.candidate["keeps_directions"] is True
    assert result.selection["reason"]


def test_more_high_intent_touches_never_lower_the_score(
    result: TrainingResult,
) -> None:
    # given held-out leads, and the same leads with one more high-intent touch of each kind
    # this week (so every window and total that counts it goes up, recency becomes 0)
    rows = result.holdout[result.features].sample(3_000, random_state=0)
    more = rows.copy()
    added = 0
    for kind in HIGH_INTENT_TYPES:
        for window in ("30d", "90d"):
            col = f"touches_{kind}_{window}"
            if col in more.columns:
                more[col] = more[col] + 1
        added += 1
    for col in ("touches_7d", "touches_14d", "touches_30d", "touches_90d"):
        more[col] = more[col] + added
    more["touch_velocity_14d"] = more["touch_velocity_14d"] + added
    more["days_since_last_touch"] = 0.0
    more["days_since_last_high_intent"] = 0.0
    before = result.model.predict_proba(rows)[:, 1]
    after = result.model.predict_proba(more)[:, 1]
    # then the conversion probability rises on average and drops for no lead
    assert after.mean() > before.mean()
    assert np.all(after >= before - 1e-12)


def test_lead_score_is_invariant_to_lead_ids(result: TrainingResult) -> None:
    rows = result.holdout.sample(500, random_state=1)
    renamed = rows.assign(lead_id=[f"X{i}" for i in range(len(rows))])
    assert "lead_id" not in result.features
    assert result.model.predict_proba(renamed)[:, 1] == pytest.approx(
        result.model.predict_proba(rows)[:, 1]
    )
