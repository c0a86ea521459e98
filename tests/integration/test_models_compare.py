"""``models compare`` on logged scores whose outcomes are known: shadow pairs, canary arms, and
too few outcomes to tell."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from crm.settings import Settings
from crm_intel.cli import app
from monitoring.compare import compare
from serving.release import arms
from serving.score_log import LoggedScore, append, open_log

pytestmark = [pytest.mark.integration]

T0 = datetime(2025, 2, 3, tzinfo=UTC)


def _crm(tmp_path: Path, n: int, seed: int) -> tuple[Settings, list[str], np.ndarray, np.ndarray]:
    """Leads with a hidden propensity; ``converted_at`` within the window for the converted."""
    rng = np.random.default_rng(seed)
    ids = [f"L{i:06d}" for i in range(n)]
    z = rng.normal(size=n)
    converted = rng.random(n) < 1 / (1 + np.exp(-(z * 2.0 - 2.5)))
    raw = tmp_path / "data" / "raw"
    features = tmp_path / "data" / "features"
    raw.mkdir(parents=True)
    features.mkdir(parents=True)
    at = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns, UTC]")
    at[converted] = pd.Timestamp(T0) + pd.Timedelta(days=30)
    pd.DataFrame({"lead_id": ids, "converted_at": at}).to_parquet(raw / "leads.parquet")
    as_of = pd.Timestamp(T0) + pd.Timedelta(days=200)
    pd.DataFrame({"lead_id": ids, "event_timestamp": [as_of] * n}).to_parquet(
        features / "lead_status.parquet"
    )
    settings = Settings(data_dir=tmp_path / "data")
    return settings, ids, z, converted


def _log(settings: Settings, rows: list[tuple[str, str, str, float]]) -> None:
    engine = open_log(settings.score_log_url())
    append(
        engine,
        [
            LoggedScore(
                T0, "api", f"r{i}", "lead", entity_id, "lead_conversion", version, None,
                None, arm, p, max(1, min(99, round(p * 100))), None, "[]",
            )
            for i, (entity_id, arm, version, p) in enumerate(rows)
        ],
    )  # fmt: skip


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def test_shadow_pairs_recommend_promoting_a_clearly_better_challenger(tmp_path):
    settings, ids, z, _ = _crm(tmp_path, 3000, seed=1)
    noise = np.random.default_rng(2).normal(size=len(ids))
    champion = _sigmoid(0.3 * z + noise - 2)  # a weak ranker
    challenger = _sigmoid(2.0 * z - 2.5)  # the truth's ranking
    _log(settings, [(i, "champion", "1", p) for i, p in zip(ids, champion, strict=True)])
    _log(settings, [(i, "shadow", "2", p) for i, p in zip(ids, challenger, strict=True)])
    result = compare(settings, "lead_conversion")
    assert result["mode"] == "shadow" and result["pairs"] == 3000
    assert result["difference"]["low"] > settings.promotion_margin
    assert result["recommendation"]["action"] == "promote"
    shadow = next(a for a in result["arms"] if a["arm"] == "shadow")
    assert shadow["versions"] == ["2"]
    low, high = shadow["roc_auc_interval"]["low"], shadow["roc_auc_interval"]["high"]
    assert low < shadow["roc_auc"] < high


def test_canary_arms_recommend_rejecting_a_clearly_worse_challenger(tmp_path):
    settings, ids, z, _ = _crm(tmp_path, 4000, seed=3)
    arm = arms("lead_conversion", ids, "canary", 0.3, has_challenger=True)
    noise = np.random.default_rng(4).normal(size=len(ids))
    good, bad = _sigmoid(2.0 * z - 2.5), _sigmoid(0.2 * z + noise - 2)
    rows = [
        (i, a, "2" if a == "challenger" else "1", (bad if a == "challenger" else good)[k])
        for k, (i, a) in enumerate(zip(ids, arm, strict=True))
    ]
    _log(settings, rows)
    result = compare(settings, "lead_conversion")
    assert result["mode"] == "canary"
    assert result["difference"]["high"] < 0
    assert result["recommendation"]["action"] == "reject"


def test_too_few_outcomes_keep_collecting_and_the_command_prints_it(tmp_path):
    settings, ids, z, _ = _crm(tmp_path, 60, seed=5)
    p = _sigmoid(z)
    _log(settings, [(i, "champion", "1", q) for i, q in zip(ids[:30], p, strict=False)])
    _log(settings, [(i, "challenger", "2", q) for i, q in zip(ids[30:], p[30:], strict=True)])
    result = CliRunner().invoke(
        app, ["models", "compare", "lead", "--json", "--data-dir", str(settings.data_dir)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["recommendation"]["action"] == "keep collecting"
    assert report["mode"] == "canary"


def test_scores_whose_window_is_open_wait_for_their_outcome(tmp_path):
    settings, ids, _, _ = _crm(tmp_path, 50, seed=6)
    engine = open_log(settings.score_log_url())
    late = T0 + timedelta(days=150)  # its 90-day window closes after the data's as-of time
    append(
        engine,
        [
            LoggedScore(late, "api", "r", "lead", i, "lead_conversion", "1", None, None,
                        "champion", 0.5, 50, None, "[]")
            for i in ids
        ],
    )  # fmt: skip
    result = compare(settings, "lead_conversion")
    assert result["arms"] == [] and result["awaiting_outcome"] == 50
