"""A canary release in the service (in-process): the challenger answers its share of ids, the
same ones every time, each answer says its arm, and the log holds each arm's rows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from crm.settings import Settings
from crm_intel.demo import Deployment
from serving.batch import scorable_ids
from serving.release import canary_arm
from training.registry import tracking_to

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("deployment_env")]

KEY = "release-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
FRACTION = 0.5


@pytest.fixture(scope="module")
def canary(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """The service in canary mode, with a challenger: a second version of the lead model."""
    with tracking_to(deployment.tracking_uri) as client:  # MLflow resolves sources globally
        champion = client.get_model_version_by_alias("lead_conversion", "champion")
        challenger = client.create_model_version(
            "lead_conversion", source=champion.source, run_id=champion.run_id
        )
        client.set_registered_model_alias("lead_conversion", "challenger", challenger.version)
    log = tmp_path_factory.mktemp("release") / "scores.db"
    env = {
        "CRM_INTEL_DATA_DIR": str(deployment.data_dir),
        "MLFLOW_TRACKING_URI": deployment.tracking_uri,
        "CRM_INTEL_API_KEYS": KEY,
        "CRM_INTEL_RELEASE_MODE": "canary",
        "CRM_INTEL_CANARY_FRACTION": str(FRACTION),
        "CRM_INTEL_DATABASE_URL": f"sqlite:///{log}",
    }
    try:
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            from serving.service import CRMIntel

            with TestClient(CRMIntel.to_asgi(), raise_server_exceptions=False) as http:
                yield {
                    "http": http,
                    "champion": str(champion.version),
                    "challenger": str(challenger.version),
                    "log": log,
                }
    finally:
        with tracking_to(deployment.tracking_uri) as client:
            client.delete_registered_model_alias("lead_conversion", "challenger")


def _score(http: TestClient, ids: list[str]) -> list[dict]:
    r = http.post("/score_leads", json={"lead_ids": ids}, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()["results"]


def test_each_id_gets_its_arm_every_time_and_the_answer_says_which(canary, deployment):
    settings = Settings(data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri)
    ids = scorable_ids(settings, "lead")[:60]
    http = canary["http"]
    info = http.get("/model_info", headers=AUTH).json()
    assert info["release_mode"] == "canary" and info["canary_fraction"] == FRACTION
    assert info["models"]["lead_conversion"]["challenger_version"] == canary["challenger"]
    first, again = _score(http, ids), _score(http, list(reversed(ids)))
    by_id = {item["lead_id"]: item for item in again}
    versions = {"champion": canary["champion"], "challenger": canary["challenger"]}
    for item in first:
        expected = canary_arm("lead_conversion", item["lead_id"], FRACTION)
        assert item["arm"] == expected == by_id[item["lead_id"]]["arm"]
        assert item["model_version"] == versions[expected]
        # the same artifact in both arms: the same numbers, whoever answers
        assert item["probability"] == pytest.approx(by_id[item["lead_id"]]["probability"])
    assert {item["arm"] for item in first} == {"champion", "challenger"}


def test_the_log_holds_each_arms_rows_with_its_version(canary, deployment):
    settings = Settings(data_dir=deployment.data_dir, mlflow_tracking_uri=deployment.tracking_uri)
    ids = scorable_ids(settings, "lead")[60:100]
    http = canary["http"]
    answered = _score(http, ids)
    expected_rows = len(answered)
    engine = sa.create_engine(f"sqlite:///{Path(canary['log'])}")
    for _ in range(100):
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT entity_id, arm, model_version FROM scores WHERE entity_id IN :ids"
                ).bindparams(sa.bindparam("ids", expanding=True)),
                {"ids": ids},
            ).fetchall()
        if len(rows) >= expected_rows:
            break
        time.sleep(0.1)
    engine.dispose()
    logged = {(r[0], r[1], r[2]) for r in rows}
    assert logged == {(i["lead_id"], i["arm"], i["model_version"]) for i in answered}
