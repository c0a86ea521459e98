"""Erasure and audit: ``crm-intel erase`` on a copy of the demo deployment, and the audit log.

Each erasure test copies the shared deployment's data directory (raw, feature and truth tables,
Feast registry and online store) into ``tmp_path`` and gives it a score log of its own; the
deployment's MLflow registry is only read (erasure never touches MLflow, and the registry stores
absolute artifact paths, so a copy of it would still point at the original artifacts).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from typer.testing import CliRunner

from crm.contract import validate_tables
from crm.io import read_tables
from crm.settings import Settings
from crm_intel.cli import app
from crm_intel.demo import Deployment
from features.store import online_reader, repo_config
from features.training import training_set
from serving import audit, score_log
from serving.batch import score_batch, trend_and_log
from serving.score_log import LoggedScore, open_log

pytestmark = [pytest.mark.integration]

T0 = datetime(2025, 3, 3, tzinfo=UTC)


# ------------------------------------------------------------------------------------ helpers


@pytest.fixture()
def copy(deployment: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A copy of the deployment's data directory, the CLI pointed at it; its score log empty."""
    data_dir = tmp_path / "data"
    for part in ("raw", "features", "feast", "truth"):
        if (deployment.data_dir / part).exists():
            shutil.copytree(deployment.data_dir / part, data_dir / part)
    monkeypatch.setenv("CRM_INTEL_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", deployment.tracking_uri)
    monkeypatch.setenv("CRM_INTEL_ACTOR", "dpo@example.com")
    return Settings(data_dir=data_dir, mlflow_tracking_uri=deployment.tracking_uri)


def _raw(settings: Settings, name: str) -> pa.Table:
    return pq.read_table(settings.raw_dir / f"{name}.parquet")


def _count(table: pa.Table, column: str, ids: set[str]) -> int:
    return int(pc.sum(pc.is_in(table[column], value_set=pa.array(sorted(ids)))).as_py() or 0)


def _logged(ids: list[str], entity: str) -> list[LoggedScore]:
    """Two API scores per id (the batch logs only the scorable ones)."""
    return [
        LoggedScore(
            scored_at=T0 + timedelta(days=d),
            source="api",
            request_id=f"req-{d}",
            entity=entity,
            entity_id=i,
            model="lead_conversion" if entity == "lead" else "churn_risk",
            model_version="1",
            feature_service=None,
            feature_timestamp=T0,
            arm="champion",
            probability=0.2,
            score=20,
            grade="C" if entity == "lead" else "low",
            reasons="[]",
        )
        for i in ids
        for d in (0, 7)
    ]


def _online_keys(settings: Settings, ids: set[str]) -> list[bytes]:
    """Every id serialised as Feast keys it in this store, under either join key."""
    version = repo_config(settings).entity_key_serialization_version
    return [
        serialize_entity_key(
            EntityKeyProto(join_keys=[key], entity_values=[ValueProto(string_val=i)]),
            entity_key_serialization_version=version,
        )
        for i in sorted(ids)
        for key in ("lead_id", "account_id")
    ]


def _holders(settings: Settings, ids: set[str]) -> list[str]:
    """Every place under the data directory and in the score log that still holds one of
    ``ids``: any string column of any Parquet file, any row of any online table, any log row or
    audit event, and the bytes of the SQLite files (deleted rows must not linger in free pages
    or in the write-ahead log)."""
    found = []
    for folder in ("raw", "features", "truth", "dedupe"):
        for path in sorted((settings.data_dir / folder).glob("*.parquet")):
            table = pq.read_table(path)
            for name in table.column_names:
                kind = table.schema.field(name).type
                if (pa.types.is_string(kind) or pa.types.is_large_string(kind)) and _count(
                    table, name, ids
                ):
                    found.append(f"{folder}/{path.stem}.{name}")
    online = settings.feast_dir / "online.db"
    conn = sqlite3.connect(f"{online.as_uri()}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table_name in tables:
            for key in _online_keys(settings, ids):
                query = f'SELECT COUNT(*) FROM "{table_name}" WHERE entity_key = ?'
                if conn.execute(query, (key,)).fetchone()[0]:
                    found.append(f"online/{table_name}")
    finally:
        conn.close()
    engine = open_log(settings.score_log_url())
    with engine.connect() as c:
        logged = sa.select(score_log.scores.c.id).where(
            score_log.scores.c.entity_id.in_(sorted(ids))
        )
        if c.execute(logged).first() is not None:
            found.append("score_log")
    events = json.dumps(audit.events(engine), default=str)
    found += [f"audit_events:{i}" for i in ids if i in events]
    for path in [online, *settings.data_dir.glob("crm_intel.db*")]:
        blob = path.read_bytes()
        found += [f"bytes:{path.name}" for i in ids if i.encode() in blob]
    return sorted(set(found))


def _mtimes(data_dir: Path) -> dict[str, int]:
    return {
        str(p): p.stat().st_mtime_ns
        for p in sorted(data_dir.rglob("*"))
        if p.is_file() and not p.name.endswith(("-shm", "-wal"))
    }


def _last_json(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------- erasure


def test_erase_lead_through_the_cli_leaves_it_nowhere_and_scoring_and_training_still_work(
    copy: Settings,
) -> None:
    # given a converted lead with touches and an opportunity, its scores in the log beside a
    # batch of open leads scored and logged
    settings = copy
    opportunities = _raw(settings, "opportunities")
    touches = _raw(settings, "interactions").to_pandas()
    with_deals = set(opportunities["lead_id"].drop_null().to_pylist())
    counts = touches["lead_id"].dropna().value_counts()
    lead = str(counts[counts.index.isin(with_deals)].index[0])
    open_leads = (
        _raw(settings, "leads").to_pandas().query("status == 'open'")["lead_id"].head(40).tolist()
    )
    frame, champion = score_batch(settings, "lead_conversion", ids=[lead, *open_leads])
    logged_by_batch = trend_and_log(
        settings, frame, "lead_conversion", champion, datetime.now(UTC), "batch-test"
    )
    batch_rows = int(((frame["lead_id"] == lead) & (frame["status"] == "scored")).sum())
    engine = open_log(settings.score_log_url())
    score_log.append(engine, _logged([lead], "lead"))
    # and `dedupe leads` output naming it: its own row, a duplicate of it, another cluster
    dedupe = settings.duplicate_leads_path
    dedupe.parent.mkdir(parents=True, exist_ok=True)
    other, duplicate = open_leads[0], open_leads[1]
    pd.DataFrame(
        {
            "lead_id": [lead, duplicate, other],
            "cluster_id": ["c1", "c1", "c2"],
            "survivor_lead_id": [lead, lead, other],
            "match_probability": [1.0, 0.97, 1.0],
        }
    ).to_parquet(dedupe, index=False)
    before = _holders(settings, {lead})
    assert {"raw/leads.lead_id", "raw/interactions.lead_id", "raw/opportunities.lead_id"} <= set(
        before
    )
    assert {"features/lead_features.lead_id", "score_log", "bytes:online.db"} <= set(before)
    assert {"dedupe/leads.lead_id", "dedupe/leads.survivor_lead_id"} <= set(before)
    assert [p for p in before if p.startswith("online/")]  # the test has teeth
    snapshots = _count(
        pq.read_table(settings.features_dir / "lead_features.parquet"), "lead_id", {lead}
    )

    # when it is erased through the CLI
    runner = CliRunner()
    done = runner.invoke(app, ["erase", "--lead", lead, "--yes", "--json"])

    # then the counts say what went, and the lead is nowhere: no raw, feature or truth row, no
    # online row (by key and by bytes), no log row, no byte of any SQLite file
    assert done.exit_code == 0, done.output
    out = _last_json(done.stdout)
    removed = out["removed"]
    assert removed["raw/leads"] == 1
    assert removed["raw/interactions"] == int(counts[lead])
    assert removed["raw/opportunities"] == 0
    assert removed["raw/opportunities.lead_id"] == _count(opportunities, "lead_id", {lead}) >= 1
    assert removed["features/lead_features"] == removed["features/lead_labels"] == snapshots > 0
    assert removed["features/lead_status"] == 1
    assert removed["online/lead_features"] == removed["online/lead_status"] == 1
    assert removed["score_log/lead"] == 2 + batch_rows
    assert removed["raw/accounts"] == removed["features/account_features"] == 0
    assert removed["dedupe/leads"] == 2  # its row and its duplicate's, naming it as survivor
    assert pd.read_parquet(dedupe)["lead_id"].tolist() == [other]
    assert _holders(settings, {lead}) == []
    read = online_reader(settings).rows("lead", [lead], status=True)[0]
    assert read["found"] is False and read["lifecycle"] is None
    # the deal stays the account's, without the person
    assert _raw(settings, "opportunities").num_rows == opportunities.num_rows
    # the other leads' scores are still in the log
    assert logged_by_batch > batch_rows
    with engine.connect() as conn:
        left = conn.execute(sa.select(sa.func.count()).select_from(score_log.scores)).scalar_one()
    assert left == logged_by_batch - batch_rows

    # and the audit log lists the erasure, with counts, by whom, without the id
    shown = runner.invoke(app, ["audit", "--json"])
    assert shown.exit_code == 0, shown.output
    events = _last_json(shown.stdout)["events"]
    assert [(e["action"], e["subject"], e["actor"]) for e in events] == [
        ("erase", "lead", "dpo@example.com")
    ]
    assert events[0]["detail"] == removed
    assert lead not in shown.stdout

    # and the CRM still passes its contract, scores and builds a training set
    validate_tables(read_tables(settings.raw_dir))
    again, _ = score_batch(settings, "lead_conversion")
    assert lead not in set(again["lead_id"].astype(str))
    assert (again["status"] == "scored").sum() > 0
    train = training_set(settings, "lead_conversion")
    assert len(train) > 0 and lead not in set(train["lead_id"].astype(str))
    # and erasing it again finds nothing
    twice = runner.invoke(app, ["erase", "--lead", lead, "--yes"])
    assert twice.exit_code == 2 and lead in twice.output


def test_erase_account_removes_its_leads_and_everything_naming_them(copy: Settings) -> None:
    # given the customer account with the most leads, its leads and itself scored and logged
    settings = copy
    accounts = _raw(settings, "accounts")
    leads = _raw(settings, "leads").to_pandas()
    customers = set(_raw(settings, "subscriptions")["account_id"].to_pylist())
    per_account = leads["account_id"].dropna().value_counts()
    account = str(per_account[per_account.index.isin(customers)].index[0])
    its_leads = sorted(leads.loc[leads["account_id"] == account, "lead_id"].astype(str))
    everyone = {account, *its_leads}
    lead_frame, lead_model = score_batch(settings, "lead_conversion", ids=its_leads)
    trend_and_log(settings, lead_frame, "lead_conversion", lead_model, T0, "batch-1")
    churn_frame, churn_model = score_batch(settings, "churn_risk", ids=[account])
    trend_and_log(settings, churn_frame, "churn_risk", churn_model, T0, "batch-2")
    engine = open_log(settings.score_log_url())
    score_log.append(engine, _logged([account], "account") + _logged(its_leads[:2], "lead"))
    before = set(_holders(settings, everyone))
    for place in ("subscriptions", "usage", "tickets", "interactions", "opportunities"):
        assert f"raw/{place}.account_id" in before
    assert {"online/crm_intel_account_features", "online/crm_intel_lead_features"} <= before
    tickets = _count(_raw(settings, "tickets"), "account_id", {account})
    usage = _count(_raw(settings, "usage"), "account_id", {account})

    # when the account is erased
    done = CliRunner().invoke(app, ["erase", "--account", account, "--yes", "--json"])

    # then the account, every lead of it and every row naming either are gone
    assert done.exit_code == 0, done.output
    removed = _last_json(done.stdout)["removed"]
    assert removed["raw/accounts"] == 1
    assert removed["raw/leads"] == len(its_leads) > 1
    assert removed["raw/tickets"] == tickets and removed["raw/usage"] == usage
    assert removed["online/lead_features"] == len(its_leads)
    assert removed["online/account_features"] == removed["online/account_status"] == 1
    assert removed["score_log/account"] == 2 + int((churn_frame["status"] == "scored").sum())
    assert removed["score_log/lead"] == 4 + int((lead_frame["status"] == "scored").sum())
    assert _holders(settings, everyone) == []
    assert _raw(settings, "accounts").num_rows == accounts.num_rows - 1
    assert _raw(settings, "leads").num_rows == len(leads) - len(its_leads)
    found = online_reader(settings).rows("lead", its_leads)
    assert not any(r["found"] for r in found)
    # and what is left is still a valid CRM that scores
    validate_tables(read_tables(settings.raw_dir))
    again, _ = score_batch(settings, "churn_risk")
    assert account not in set(again["account_id"].astype(str))
    assert (again["status"] == "scored").sum() > 0
    events = audit.events(engine)
    assert [(e["action"], e["subject"]) for e in events] == [("erase", "account")]
    assert events[0]["detail"] == removed


def test_erase_of_an_unknown_id_or_without_yes_changes_nothing(copy: Settings) -> None:
    # given a copy with a score log and its files' times
    settings = copy
    score_log.append(open_log(settings.score_log_url()), _logged(["L-kept"], "lead"))
    score_log.dispose_all()
    lead = str(_raw(settings, "leads")["lead_id"][0])
    times = _mtimes(settings.data_dir)
    runner = CliRunner()

    # when an unknown id is erased, then it exits 2 naming the id
    done = runner.invoke(app, ["erase", "--lead", "L-no-such-lead", "--yes"])
    assert done.exit_code == 2
    assert "L-no-such-lead" in done.output and "nothing to erase" in done.output
    unknown_account = runner.invoke(app, ["erase", "--account", "A-nobody", "--yes", "--json"])
    assert unknown_account.exit_code == 2 and "A-nobody" in unknown_account.output
    # and a known one without --yes and without a terminal is refused
    refused = runner.invoke(app, ["erase", "--lead", lead])
    assert refused.exit_code == 2 and "--yes" in refused.output
    both = runner.invoke(app, ["erase", "--lead", lead, "--account", "A1", "--yes"])
    assert both.exit_code == 2

    # and nothing was written: same files, same times, no audit event
    assert _mtimes(settings.data_dir) == times
    assert audit.events(open_log(settings.score_log_url())) == []
    assert len(score_log.history(open_log(settings.score_log_url()), "lead", "L-kept")) == 2


def test_erase_on_a_terminal_asks_first(copy: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a terminal and a lead the store holds
    from crm_intel.commands import privacy

    monkeypatch.setattr(privacy, "_on_terminal", lambda: True)
    settings = copy
    lead = str(_raw(settings, "leads")["lead_id"][0])
    times = _mtimes(settings.data_dir)
    runner = CliRunner()

    # when the user answers no, then nothing is erased
    declined = runner.invoke(app, ["erase", "--lead", lead], input="n\n")
    assert declined.exit_code == 1 and "nothing erased" in declined.output
    assert "raw/leads" in declined.output  # the prompt said what would go
    assert _mtimes(settings.data_dir) == times

    # when the user answers yes, then it is erased
    agreed = runner.invoke(app, ["erase", "--lead", lead], input="y\n")
    assert agreed.exit_code == 0, agreed.output
    assert _count(_raw(settings, "leads"), "lead_id", {lead}) == 0


# --------------------------------------------------------------------------------------- audit


def test_audit_records_newest_first_and_is_append_only(log_database_url: str) -> None:
    # given an empty log
    engine = score_log.engine_for(log_database_url)
    assert audit.events(engine) == []

    # when three actions are recorded
    first = audit.record(engine, "alice", "promote", "lead_conversion v3", {"previous": "2"})
    audit.record(engine, "alice", "rollback", "lead_conversion v2", {"demoted": "3"})
    audit.record(engine, "key:crm-sync", "erase", "lead", {"raw/leads": 1, "raw/interactions": 7})

    # then they come back newest first, whole, in UTC; limit keeps the newest
    got = audit.events(engine)
    assert [(e["action"], e["subject"], e["actor"]) for e in got] == [
        ("erase", "lead", "key:crm-sync"),
        ("rollback", "lead_conversion v2", "alice"),
        ("promote", "lead_conversion v3", "alice"),
    ]
    assert got[0]["detail"] == {"raw/leads": 1, "raw/interactions": 7}
    assert got[-1]["id"] == first
    assert all(e["at"].tzinfo == UTC for e in got)
    assert abs(got[0]["at"] - datetime.now(UTC)) < timedelta(minutes=1)
    assert [e["action"] for e in audit.events(engine, limit=1)] == ["erase"]
    # and the table refuses to change or lose a row
    for statement in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
            conn.exec_driver_sql(statement)
    assert len(audit.events(engine)) == 3
    # and an unknown action is refused
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.record(engine, "alice", "delete", "lead", {})
    engine.dispose()


def test_models_promote_and_rollback_are_audited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a registry whose promote and rollback succeed (the registry itself is tested in
    # test_registry.py; here only what the CLI records)
    import training.registry as registry

    monkeypatch.setattr(
        registry,
        "promote",
        lambda uri, name, version, reason: {
            "model": name,
            "champion": str(version),
            "previous_champion": "2",
            "reason": reason,
        },
    )
    monkeypatch.setattr(
        registry, "rollback", lambda uri, name: {"model": name, "champion": "2", "demoted": "3"}
    )
    monkeypatch.setenv("CRM_INTEL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CRM_INTEL_ACTOR", "ops-bot")
    runner = CliRunner()

    # when a version is promoted by hand and then rolled back
    assert runner.invoke(app, ["models", "promote", "lead", "3"]).exit_code == 0
    assert runner.invoke(app, ["models", "rollback", "lead"]).exit_code == 0

    # then both are in the audit log, newest first, by the actor named
    shown = runner.invoke(app, ["audit", "--json", "--limit", "5"])
    events = _last_json(shown.stdout)["events"]
    assert [(e["action"], e["subject"], e["actor"]) for e in events] == [
        ("rollback", "lead_conversion v2", "ops-bot"),
        ("promote", "lead_conversion v3", "ops-bot"),
    ]
    assert events[1]["detail"]["previous_champion"] == "2"
    table = runner.invoke(app, ["audit"])
    assert table.exit_code == 0
    assert "ops-bot" in table.output and "rollback" in table.output
