"""``crm-intel run nightly|retrain``: the CRM's write-back, once per date, one run at a time, and
a killed run leaving the previous outputs serving.

Every test works on a copy of the shared demo deployment (its data directory and MLflow
database; the copy's registry still points at the deployment's model artifacts, which a nightly
run only reads). ``run retrain`` trains for minutes, so its ledger, lock and once-per-date logic
are tested with fast stand-in steps under the real names.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from filelock import FileLock

from crm.settings import DEFAULT_CRM_FIELDS, Settings
from crm_intel import run_ledger, runs
from crm_intel.demo import Deployment
from features.schema import CLOSED_STATUSES
from features.store import OnlineReader, feature_store

pytestmark = [pytest.mark.integration]

DAY = date(2025, 7, 1)  # the run every test starts from
KILLED_DAY = date(2025, 7, 2)
BAD_DAY = date(2025, 7, 3)
LEAD_FIELDS = [v for k, v in DEFAULT_CRM_FIELDS.items() if k.startswith("lead_")]
ACCOUNT_FIELDS = [v for k, v in DEFAULT_CRM_FIELDS.items() if k.startswith("account_")]


@dataclass(frozen=True)
class Night:
    """A copy of the deployment after ``run nightly --date DAY``."""

    data_dir: Path
    tracking_uri: str
    settings: Settings
    env: dict[str, str]
    first: dict[str, Any]  # its --json line

    def cli(self, *args: str, **popen: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            _command(*args), env=self.env, capture_output=True, text=True, timeout=300, **popen
        )

    @property
    def writeback(self) -> Path:
        return self.data_dir / runs.WRITEBACK_DIR


def _command(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("crm-intel")
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "crm_intel.cli", *args]


def _copy_sqlite(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite file (WAL included), the source only read."""
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"{source.as_uri()}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


@pytest.fixture(scope="module")
def night(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Night:
    root = tmp_path_factory.mktemp("runs")
    data_dir = root / "data"
    shutil.copytree(
        deployment.data_dir,
        data_dir,
        ignore=shutil.ignore_patterns("crm_intel.db*", runs.LOCK_FILE, runs.WRITEBACK_DIR),
    )
    if (deployment.data_dir / "crm_intel.db").exists():
        _copy_sqlite(deployment.data_dir / "crm_intel.db", data_dir / "crm_intel.db")
    shared_db = Path(deployment.tracking_uri.removeprefix("sqlite:///"))
    _copy_sqlite(shared_db, root / "mlruns" / "mlflow.db")
    tracking_uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    env = {**os.environ, "CRM_INTEL_DATA_DIR": str(data_dir), "MLFLOW_TRACKING_URI": tracking_uri}
    env.pop("CRM_INTEL_DATABASE_URL", None)
    env.pop("CRM_INTEL_SCORE_LOG", None)
    done = subprocess.run(
        _command("run", "nightly", "--date", DAY.isoformat(), "--json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    settings = Settings(data_dir=data_dir, mlflow_tracking_uri=tracking_uri)
    first = json.loads(done.stdout.strip().splitlines()[-1])
    return Night(data_dir, tracking_uri, settings, env, first)


def _ledger(night: Night, run_date: date) -> pd.DataFrame:
    return run_ledger.ledger(run_ledger.open_ledger(night.settings), "nightly", run_date)


def _score_log_rows(night: Night) -> int:
    with sqlite3.connect(night.data_dir / "crm_intel.db") as conn:
        return int(conn.execute("SELECT count(*) FROM scores").fetchone()[0])


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _online(settings: Settings) -> dict[str, pd.DataFrame]:
    """Every lead's and account's online row (features and lifecycle), as the service reads it."""
    reader = OnlineReader(feature_store(settings))
    try:
        out = {}
        for entity, key in (("lead", "lead_id"), ("account", "account_id")):
            stem = "lead_status" if entity == "lead" else "account_status"
            ids = pd.read_parquet(settings.features_dir / f"{stem}.parquet")[key].astype(str)
            out[entity] = reader.frame(entity, sorted(ids), status=True)
        return out
    finally:
        reader.close()


# ------------------------------------------------------------------------------------ nightly


def test_nightly_writes_back_every_open_lead_and_live_account(night: Night) -> None:
    # Given the demo CRM's raw tables and lifecycle tables
    raw_leads = pd.read_parquet(night.settings.raw_dir / "leads.parquet")
    closed = raw_leads["status"].isin(CLOSED_STATUSES["lead"]) | raw_leads["converted_at"].notna()
    open_leads = set(raw_leads.loc[~closed, "lead_id"].astype(str))
    lead_status = pd.read_parquet(night.settings.features_dir / "lead_status.parquet")
    assert open_leads == set(
        lead_status.loc[~lead_status["status"].isin(CLOSED_STATUSES["lead"]), "lead_id"]
    )
    account_status = pd.read_parquet(night.settings.features_dir / "account_status.parquet")
    live = set(account_status.loc[account_status["status"] == "customer", "account_id"])
    with_features = set(
        pd.read_parquet(night.settings.features_dir / "account_features.parquet")["account_id"]
    )

    # When `run nightly` ran (the fixture): every step in order, import skipped without --from
    assert night.first["status"] == "done"
    steps = [(s["step"], s["status"]) for s in night.first["steps"]]
    assert steps == [(s.name, "skipped" if s.name == "import" else "done") for s in runs.NIGHTLY]

    # Then the write-back holds exactly the open leads and live accounts, with the CRM's fields
    leads = pd.read_csv(night.writeback / "leads.csv", dtype={"lead_id": str})
    accounts = pd.read_csv(night.writeback / "accounts.csv", dtype={"account_id": str})
    assert list(leads.columns) == ["lead_id", *LEAD_FIELDS]
    assert list(accounts.columns) == ["account_id", *ACCOUNT_FIELDS]
    assert len(leads) == len(open_leads) and set(leads["lead_id"]) == open_leads
    assert len(accounts) == len(live) and set(accounts["account_id"]) == live
    # a customer who subscribed after the last weekly snapshot has no features yet: its row
    # says so, with no score
    not_yet = accounts[~accounts["account_id"].isin(with_features)]
    assert not_yet["Churn_Risk_Score__c"].isna().all()
    assert not_yet["Churn_Reasons__c"].str.startswith("Not scored yet: ").all()
    written = next(s for s in night.first["steps"] if s["step"] == "write_back")
    assert written["figures"]["rows"] == {
        "leads.csv": len(open_leads),
        "accounts.csv": len(live),
    }

    # scored rows carry the very scores the run logged; stale ones are emptied with the reason
    with sqlite3.connect(night.data_dir / "crm_intel.db") as conn:
        logged = pd.read_sql(
            "SELECT entity, entity_id, score FROM scores WHERE request_id = ?",
            conn,
            params=(night.first["run_id"],),
        )
    for frame, entity, key, score_field in (
        (leads, "lead", "lead_id", "Lead_Score__c"),
        (accounts, "account", "account_id", "Churn_Risk_Score__c"),
    ):
        scored = frame[frame[score_field].notna()]
        stale = frame[frame[score_field].isna()]
        expected = logged[logged["entity"] == entity].set_index("entity_id")["score"]
        assert scored.set_index(key)[score_field].astype(int).sort_index().to_dict() == (
            expected.sort_index().to_dict()
        )
        reasons = stale[f"{'Score' if entity == 'lead' else 'Churn'}_Reasons__c"]
        assert reasons.str.startswith(("Not scored (stale): ", "Not scored yet: ")).all()
    assert len(leads[leads["Lead_Score__c"].isna()]) > 0  # the demo has stale open leads

    # and the ledger has the attempt and each step
    ledger = _ledger(night, DAY)
    assert list(ledger["step"]) == [runs.WHOLE_RUN, *(s.name for s in runs.NIGHTLY)]
    assert list(ledger["status"]) == ["done", "skipped", *["done"] * (len(runs.NIGHTLY) - 1)]
    assert set(ledger["run_id"]) == {night.first["run_id"]}
    assert (ledger["pid"] > 0).all() and ledger["finished_at"].notna().all()


def test_second_nightly_for_the_same_date_changes_nothing(night: Night) -> None:
    # Given the finished run for DAY
    before = (_score_log_rows(night), len(_ledger(night, DAY)), _files(night.writeback))
    mtimes = {p.name: p.stat().st_mtime_ns for p in night.writeback.iterdir()}

    # When it runs again for the same date
    again = night.cli("run", "nightly", "--date", DAY.isoformat(), "--json")

    # Then it says so and exits 0, appending and rewriting nothing
    assert again.returncode == 0, again.stderr
    payload = json.loads(again.stdout.strip().splitlines()[-1])
    assert payload["status"] == "already_done" and payload["steps"] == []
    assert f"nightly run for {DAY} finished" in again.stderr and "nothing to do" in again.stderr
    assert (_score_log_rows(night), len(_ledger(night, DAY)), _files(night.writeback)) == before
    assert {p.name: p.stat().st_mtime_ns for p in night.writeback.iterdir()} == mtimes


def test_failed_step_stops_the_run_and_leaves_the_write_back(night: Night, tmp_path: Path) -> None:
    # Given an export that breaks the data contract
    bad = tmp_path / "export"
    bad.mkdir()
    (bad / "leads.csv").write_text("lead_id,created_at\nL1,not a date\n")
    before = _files(night.writeback)
    logged = _score_log_rows(night)

    # When the nightly run imports it
    failed = night.cli("run", "nightly", "--from", str(bad), "--date", BAD_DAY.isoformat())

    # Then the run stops at the import step, says so, and nothing after it ran
    assert failed.returncode == 1
    assert "stopped: step import failed" in failed.stderr
    assert "breaks the data contract" in failed.stderr
    ledger = _ledger(night, BAD_DAY)
    assert list(zip(ledger["step"], ledger["status"], strict=True)) == [
        (runs.WHOLE_RUN, "failed"),
        ("import", "failed"),
    ]
    assert _files(night.writeback) == before and _score_log_rows(night) == logged


@pytest.mark.slow
def test_killed_run_leaves_the_previous_outputs_and_the_lock_refuses_a_second(
    night: Night, tmp_path: Path
) -> None:
    # Given the write-back and online store of the finished run
    writeback = _files(night.writeback)
    online = _online(night.settings)

    # When a run for the next day is stopped once it reaches the online store or scoring...
    log = (tmp_path / "killed.log").open("wb")
    process = subprocess.Popen(
        _command("run", "nightly", "--date", KILLED_DAY.isoformat()),
        env=night.env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    late = ("materialize", "score_leads", "score_accounts", "write_back")
    try:
        deadline = time.monotonic() + 180
        reached = None
        while reached is None and time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "killed.log").read_text()[-3000:]
            ledger = _ledger(night, KILLED_DAY)
            started = ledger[ledger["step"].isin(late) & (ledger["status"] == "started")]
            reached = None if started.empty else str(started["step"].iloc[-1])
            time.sleep(0.02)
        assert reached is not None, "the run never reached materialize"
        os.kill(process.pid, signal.SIGSTOP)

        # ...a second run meanwhile is refused, naming the one that holds the lock
        refused = night.cli("run", "nightly", "--date", KILLED_DAY.isoformat())
        assert refused.returncode == 75
        assert "another crm-intel run holds" in refused.stderr
        assert f"nightly run for {KILLED_DAY}" in refused.stderr
        assert f"process {process.pid}" in refused.stderr

        # ...and the first is killed
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
        log.close()

    # Then the previous write-back files are byte for byte as they were (no stray temporaries)
    assert _files(night.writeback) == writeback
    # and the online store reads the same values
    for entity, frame in _online(night.settings).items():
        pd.testing.assert_frame_equal(frame, online[entity])
    # and the ledger shows the attempt never finished
    ledger = _ledger(night, KILLED_DAY)
    assert not ((ledger["step"] == runs.WHOLE_RUN) & (ledger["status"] == "done")).any()
    assert (ledger.loc[ledger["step"] == reached, "status"] == "started").all()

    # When the next run for that date comes, it runs in full and marks the killed one
    again = night.cli("run", "nightly", "--date", KILLED_DAY.isoformat())
    assert again.returncode == 0, again.stderr[-3000:]
    ledger = _ledger(night, KILLED_DAY)
    attempts = ledger.groupby("run_id", sort=False)
    killed, rerun = list(attempts.groups)
    killed_rows = attempts.get_group(killed)
    assert set(killed_rows["status"]) == {"done", "skipped", "failed"}
    assert (
        killed_rows.loc[killed_rows["step"] == reached, "message"]
        .str.startswith("interrupted: process")
        .all()
    )
    rerun_rows = attempts.get_group(rerun)
    assert rerun_rows.loc[rerun_rows["step"] == runs.WHOLE_RUN, "status"].tolist() == ["done"]


def test_write_back_renames_both_files_only_once_both_are_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given batch frames with every status, and a previous write-back
    leads = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3", "L4"],
            "status": ["scored", "stale", "closed", "unknown"],
            "lifecycle": ["open", "open", "converted", None],
            "Lead_Score__c": [71, None, None, None],
            "Lead_Grade__c": ["A", None, None, None],
            "Score_Reasons__c": ["+ Viewed pricing", "Not scored (stale): old", "x", None],
            "Score_Trend__c": ["improving", None, None, None],
            "Score_Trend_Change__c": pd.array([6, None, None, None], dtype="Int64"),
        }
    )
    accounts = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "status": ["scored", "closed"],
            "lifecycle": ["customer", "cancelled"],
            "Churn_Risk_Score__c": [12, None],
            "Churn_Risk_Band__c": ["low", None],
            "Revenue_At_Risk__c": [1234.5, None],
            "Churn_Reasons__c": ["+ Logins down", "Not scored (closed): cancelled"],
        }
    )
    settings = Settings(data_dir=tmp_path / "data")
    ctx = runs.RunContext(settings, "nightly", DAY, "test", None)
    ctx.outputs.update({"lead_conversion": leads, "churn_risk": accounts})
    runs.write_back(ctx)
    folder = settings.data_dir / runs.WRITEBACK_DIR
    previous = _files(folder)

    # Then only open and live rows are written, scores as whole points, trends blank when absent
    assert previous["leads.csv"].decode().splitlines() == [
        "lead_id," + ",".join(LEAD_FIELDS),
        "L1,71,A,+ Viewed pricing,improving,6,",
        "L2,,,Not scored (stale): old,,,",
    ]
    assert previous["accounts.csv"].decode().splitlines()[1:] == [
        "A1,12,low,1234.5,+ Logins down,,,,"
    ]

    # When the second file cannot be written
    write = pd.DataFrame.to_csv

    def failing(frame: pd.DataFrame, path: Any, *args: Any, **kwargs: Any) -> Any:
        if ".accounts.csv.tmp-" in str(path):
            raise OSError("disk full")
        return write(frame, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_csv", failing)
    ctx.outputs["lead_conversion"] = leads.assign(Lead_Score__c=[99, None, None, None])
    with pytest.raises(OSError, match="disk full"):
        runs.write_back(ctx)

    # Then neither file changed, and no temporary file is left
    assert _files(folder) == previous
    assert sorted(p.name for p in folder.iterdir()) == ["accounts.csv", "leads.csv"]


# ------------------------------------------------------------------------------------ retrain


def _stand_ins(calls: list[str], fail_at: str | None = None) -> tuple[runs.Step, ...]:
    """:data:`runs.RETRAIN`'s steps, same names and order, each recording its call."""

    def step(name: str) -> runs.Step:
        def run(ctx: runs.RunContext) -> runs.Done:
            calls.append(name)
            if name == fail_at:
                raise ValueError("validation has 3 positives, needs at least 30")
            return runs.Done(f"{name} ok")

        return runs.Step(name, run)

    return tuple(step(s.name) for s in runs.RETRAIN)


def test_retrain_ledger_once_per_date_and_lock(tmp_path: Path) -> None:
    retrain_calls: list[str] = []
    settings = Settings(data_dir=tmp_path / "data")
    engine = run_ledger.open_ledger(settings)
    names = ["backtest_lead", "backtest_churn", "train_lead", "train_churn"]
    names += ["gate_lead", "gate_churn"]
    assert [s.name for s in runs.RETRAIN] == names

    # Given a retrain whose train_churn step fails
    failed = runs.execute(settings, "retrain", DAY, _stand_ins(retrain_calls, "train_churn"))
    # Then it stops there: the gates never run, and the ledger says which step and why
    assert (failed.status, failed.failed_step) == ("failed", "train_churn")
    assert "validation has 3 positives" in failed.message
    assert retrain_calls == names[:4]
    ledger = run_ledger.ledger(engine, "retrain", DAY)
    assert list(zip(ledger["step"], ledger["status"], strict=True)) == [
        (runs.WHOLE_RUN, "failed"),
        *((n, "done") for n in names[:3]),
        ("train_churn", "failed"),
    ]

    # When the next retrain for that date comes, it runs every step
    retrain_calls.clear()
    done = runs.execute(settings, "retrain", DAY, _stand_ins(retrain_calls))
    assert done.status == "done" and retrain_calls == names
    assert [s.status for s in done.steps] == ["done"] * 6

    # and once it finished, another for the date runs nothing and writes nothing
    retrain_calls.clear()
    rows = len(run_ledger.ledger(engine))
    again = runs.execute(settings, "retrain", DAY, _stand_ins(retrain_calls))
    unchanged = len(run_ledger.ledger(engine)) == rows
    assert again.status == "already_done" and retrain_calls == [] and unchanged

    # the CLI says the same, without training
    env = {**os.environ, "CRM_INTEL_DATA_DIR": str(settings.data_dir)}
    env.pop("CRM_INTEL_DATABASE_URL", None)
    cli = subprocess.run(
        _command("run", "retrain", "--date", DAY.isoformat()),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0 and "nothing to do" in cli.stderr

    # and while another process holds the run lock, nothing runs at all
    with FileLock(str(runs.lock_path(settings)), timeout=0):
        with pytest.raises(runs.RunLocked, match="another crm-intel run holds"):
            runs.execute(settings, "retrain", date(2025, 7, 8), _stand_ins(retrain_calls))
        locked = subprocess.run(
            _command("run", "retrain", "--date", "2025-07-08"),
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert locked.returncode == 75 and "another crm-intel run holds" in locked.stderr
    assert retrain_calls == [] and len(run_ledger.ledger(engine)) == rows
