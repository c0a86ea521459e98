"""Models registered before the layout moved still load and score identically.

``tests/fixtures/legacy_models/<model>/model`` holds the MLflow model folders that the previous
layout logged (skops files name the module paths of their classes), with input rows and the
probabilities and SHAP contributions they gave then. Registering a folder as a model version
is what a registry migrated from that layout holds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.registry import CHAMPION, client_for, load_champion

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "legacy_models"


@pytest.mark.parametrize("name", ["lead_conversion", "churn_risk"])
def test_a_model_registered_by_the_previous_layout_scores_identically(tmp_path, name):
    # Given the previous layout's model folder registered as the champion
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = client_for(uri)
    source = shutil.copytree(FIXTURES / name / "model", tmp_path / name)
    client.create_registered_model(name)
    version = client.create_model_version(name, source=source.as_uri()).version
    client.set_registered_model_alias(name, CHAMPION, version)
    expected = json.loads((FIXTURES / name / "expected.json").read_text())
    rows = pd.read_parquet(FIXTURES / name / "inputs.parquet")
    # When the current code loads and scores it
    champion = load_champion(name, uri)
    probability = champion.model.predict_proba(rows)[:, 1]
    contributions = champion.model.contributions(rows)
    # Then the scores and reasons are the ones it gave before the move
    np.testing.assert_array_equal(probability, np.array(expected["probability"]))
    assert list(contributions.columns) == expected["contribution_columns"]
    np.testing.assert_allclose(
        contributions.to_numpy(), np.array(expected["contributions"]), rtol=0, atol=1e-11
    )
    assert champion.metadata["feature_names"] == list(rows.columns)
