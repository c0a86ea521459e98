"""A CRM's own export, start to finish: simulated as Salesforce and HubSpot export it (seed 7,
1,500 leads), imported, features built, both models trained, scored and written back keyed by the
CRM's own ids, with the lead model as good as on the same CRM in the contract's shape.

The Salesforce path goes through ``crm-intel quickstart`` up to a serving API; the HubSpot path
through ``quickstart --no-serve``; both then through ``run nightly`` for the write-back files.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import psutil
import pytest
from typer.testing import CliRunner

from crm.exports.hubspot_writer import write_hubspot
from crm.io import read_tables
from crm.settings import forget_settings
from crm_intel.cli import app
from crm_intel.demo import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIMULATION = ["--seed", "7", "--accounts", "400", "--leads", "1500", "--months", "18"]
KEY = "e2e-key"


@dataclass(frozen=True)
class Shape:
    """Where an export keeps its leads and how it says one is still open."""

    leads_file: str
    key: str  # the id field: the write-back's key
    status_fields: tuple[str, ...]  # each must hold a value the mapping reads as open or recycled
    status_sections: tuple[str, ...]  # the mapping sections those fields go through


SHAPES = {
    "salesforce": Shape("Lead.csv", "Id", ("Status",), ("lead_statuses",)),
    "hubspot": Shape(
        "contacts.csv",
        "Record ID",
        ("Lead Status", "Lifecycle Stage"),
        ("lead_statuses", "lifecycle_stages"),
    ),
}


def _command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("crm-intel")
    return (
        [str(script), *args] if script.exists() else [sys.executable, "-m", "crm_intel.cli", *args]
    )


@dataclass(frozen=True)
class Deployment:
    """One data directory and MLflow database, and the commands run on them."""

    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.root / 'mlflow.db'}",
            "CRM_INTEL_DATA_DIR": str(self.data_dir),
            "CRM_INTEL_API_KEYS": KEY,
            "BENTOML_HOME": str(self.root / "bentoml"),
            # the short back-test before registering is not what these tests check
            "CRM_INTEL_TRAIN_BACKTEST_CUTOFFS": "0",
            # nor are the attribution intervals (their own tests run them)
            "CRM_INTEL_ATTRIBUTION_BOOTSTRAP": "3",
        }

    def cli(self, *args: str, json_line: bool = True) -> Any:
        """Run a command in this process (no start-up to pay) with this deployment's settings;
        with ``--json``, its last stdout line, parsed."""
        env = {k: v for k, v in self.env.items() if k.startswith(("CRM_INTEL_", "MLFLOW_"))}
        forget_settings()  # settings read for another deployment's environment
        try:
            done = CliRunner().invoke(app, [*args, *(["--json"] if json_line else [])], env=env)
        finally:
            forget_settings()
        assert done.exit_code == 0, done.output[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1]) if json_line else done

    def lead_auc(self) -> float:
        versions = self.cli("models", "list")["versions"]
        return next(v["roc_auc"] for v in versions if v["model"] == "lead_conversion")


@pytest.fixture(scope="module")
def crm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated CRM: its contract tables (raw/) and its Salesforce and HubSpot exports."""
    out = tmp_path_factory.mktemp("crm-exports") / "sim"
    done = CliRunner().invoke(
        app, ["simulate", *SIMULATION, "--format", "salesforce", "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    write_hubspot(read_tables(out / "raw"), out / "hubspot")  # what `--format hubspot` writes
    return out


@pytest.fixture(scope="module")
def contract_auc(crm: Path, tmp_path_factory: pytest.TempPathFactory) -> float:
    """The lead model's held-out ROC AUC on the same CRM imported in the contract's shape."""
    run = Deployment(tmp_path_factory.mktemp("contract"))
    run.cli("import", "--from", str(crm / "raw"))
    for stage in ("build", "apply"):
        run.cli("features", stage)
    return float(run.cli("train", "lead")["roc_auc"])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End a server and every process it started (workers run in sessions of their own)."""
    try:
        family = [process.pid, *(p.pid for p in psutil.Process(process.pid).children(True))]
    except psutil.NoSuchProcess:
        family = [process.pid]
    for pid in reversed(family):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)


@dataclass(frozen=True)
class ExportRun:
    deployment: Deployment
    answers: dict[str, Any] | None  # POST /score_leads for a few open leads, while it served
    log: str


@pytest.fixture(scope="module")
def salesforce(crm: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportRun:
    """``quickstart --from <salesforce export>`` up to a serving API, asked for scores, stopped;
    then ``run nightly --from <the export>`` (importing it again) for the write-back."""
    run = Deployment(tmp_path_factory.mktemp("salesforce"))
    port = free_port()
    log_path = run.root / "quickstart.log"
    lead = pd.read_csv(crm / "salesforce" / "Lead.csv", dtype=str, keep_default_na=False)
    asked = lead.loc[lead["Status"] == "Open - Not Contacted", "Id"].tail(5).tolist()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            _command(
                "quickstart",
                "--from",
                str(crm / "salesforce"),
                "--format",
                "salesforce",
                "--port",
                str(port),
            ),
            env=run.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            answers = _scores_when_ready(process, port, asked, log_path)
        finally:
            _stop(process)
    run.cli("run", "nightly", "--from", str(crm / "salesforce"), "--format", "salesforce")
    return ExportRun(run, answers, log_path.read_text(errors="replace"))


@pytest.fixture(scope="module")
def hubspot(crm: Path, tmp_path_factory: pytest.TempPathFactory) -> ExportRun:
    """``quickstart --no-serve --from <hubspot export>``, then ``run nightly``."""
    run = Deployment(tmp_path_factory.mktemp("hubspot"))
    export = str(crm / "hubspot")
    done = run.cli(
        "quickstart", "--from", export, "--format", "hubspot", "--no-serve", json_line=False
    )
    run.cli("run", "nightly", "--from", export, "--format", "hubspot")
    return ExportRun(run, None, done.stderr)


@pytest.fixture(scope="module", params=list(SHAPES))
def export_run(request: pytest.FixtureRequest) -> tuple[str, ExportRun]:
    return request.param, request.getfixturevalue(request.param)


def _scores_when_ready(
    process: subprocess.Popen[bytes], port: int, ids: list[str], log: Path
) -> dict[str, Any]:
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"quickstart ended ({process.returncode}):\n{log.read_text()[-4000:]}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/score_leads",
                    json={"lead_ids": ids},
                    headers={"Authorization": f"Bearer {KEY}"},
                    timeout=30,
                )
                assert answer.status_code == 200, answer.text
                return answer.json()
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise AssertionError(f"quickstart did not serve in time:\n{log.read_text()[-4000:]}")


def _open_lead_ids(export: Path, shape: Shape, mapping: dict[str, Any]) -> set[str]:
    """The export's leads still open (or recycled), read from its own fields."""
    frame = pd.read_csv(export / shape.leads_file, dtype=str, keep_default_na=False)
    still_open = pd.Series(True, index=frame.index)
    for field, section in zip(shape.status_fields, shape.status_sections, strict=True):
        labels = {k for k, v in mapping[section].items() if v in ("open", "recycled")}
        still_open &= frame[field].isin(labels)
    return set(frame.loc[still_open, shape.key])


def _live_account_ids(export: Path) -> set[str]:
    subscriptions = pd.read_csv(export / "subscriptions.csv", dtype=str, keep_default_na=False)
    return set(subscriptions.loc[subscriptions["cancelled_at"] == "", "account_id"])


def test_quickstart_takes_a_salesforce_export_to_a_serving_api(salesforce):
    # then every stage ran and the API answered with the lead's Salesforce Id in its CRM fields
    log = salesforce.log
    for stage in ("import", "features", "lead model", "churn model", "attribution page"):
        assert f": {stage}" in log, stage
    assert salesforce.answers is not None
    results = salesforce.answers["results"]
    assert [r["status"] for r in results] == ["scored"] * len(results)
    for r in results:
        assert r["crm_fields"]["Id"] == r["lead_id"]
        assert list(r["crm_fields"])[0] == "Id"  # the key first, as an update file has it


def test_the_write_back_is_keyed_by_the_exports_own_ids(export_run, crm):
    # given the export's open leads and live accounts, read from the export itself
    from crm.exports.common import load_mapping

    name, run = export_run
    shape, export = SHAPES[name], crm / name
    open_leads = _open_lead_ids(export, shape, load_mapping(name))
    live_accounts = _live_account_ids(export)
    assert open_leads and live_accounts

    # when the nightly run wrote the CRM's update files
    folder = run.deployment.data_dir / "writeback"
    leads = pd.read_csv(folder / "leads.csv", dtype=str, keep_default_na=False)
    accounts = pd.read_csv(folder / "accounts.csv", dtype=str, keep_default_na=False)

    # then they are keyed by the CRM's id field, one row for exactly each open lead and live
    # account, with scores
    assert leads.columns[0] == shape.key and accounts.columns[0] == shape.key
    assert set(leads[shape.key]) == open_leads and len(leads) == len(open_leads)
    assert set(accounts[shape.key]) == live_accounts and len(accounts) == len(live_accounts)
    assert leads["Lead_Score__c"].ne("").any() and accounts["Churn_Risk_Score__c"].ne("").any()


def test_the_lead_model_on_the_export_matches_the_contract_run(export_run, contract_auc):
    # then the held-out ROC AUC is within 0.01 of the same CRM in the contract's shape
    name, run = export_run
    auc = run.deployment.lead_auc()
    print(f"lead ROC AUC: {name} export {auc:.4f}, contract {contract_auc:.4f}")
    assert abs(auc - contract_auc) <= 0.01


def test_campaign_influence_is_written_in_the_crms_shape_and_ids(export_run):
    # given the quickstart's attribution run, which registered the attribution model
    name, run = export_run
    out = run.deployment.root / "influence.csv"
    # when
    summary = run.deployment.cli("attribution", "influence", "--out", str(out))
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    # then in the CRM's shape, keyed by its own opportunity and campaign ids
    raw = run.deployment.data_dir / "raw"
    deals = pd.read_parquet(raw / "opportunities.parquet", columns=["source_id"])
    campaigns = pd.read_parquet(raw / "campaigns.parquet", columns=["campaign_id"])
    opportunity, campaign = {
        "salesforce": ("OpportunityId", "CampaignId"),
        "hubspot": ("Deal Record ID", "Campaign ID"),
    }[name]
    assert summary["format"] == name and len(table) == summary["rows"] > 0
    assert list(table.columns[:2]) == [opportunity, campaign]
    assert set(table[opportunity]) <= set(deals["source_id"].dropna())
    assert set(table[campaign]) <= set(campaigns["campaign_id"])
