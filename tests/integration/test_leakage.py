"""No feature sees the future: checked on simulated data, through Feast's training sets."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from crm.settings import Settings
from features.pipeline import (
    build_account_features,
    build_content_features,
    build_lead_features,
    lead_feature_batches,
    snapshot_times,
)
from features.schema import LEAD_CATEGORICAL, LEAD_NUMERIC
from features.store import apply, build
from features.training import feature_names, training_set
from simulator import SimulationResult

pytestmark = pytest.mark.integration

SETTINGS = Settings(data_dir="/nonexistent")
CUT = pd.Timestamp("2024-07-01", tz="UTC")  # a Monday snapshot mid-way through the year
DAY = pd.Timedelta(days=1)

Builder = Callable[..., pd.DataFrame]
BUILDERS: list[tuple[Builder, str]] = [
    (build_lead_features, "lead_id"),
    (build_account_features, "account_id"),
    (build_content_features, "content_id"),
]


def _with_future_events(
    tables: dict[str, pd.DataFrame], t: pd.Timestamp, rng: np.random.Generator
) -> dict[str, pd.DataFrame]:
    """Copies of the tables with events dated after ``t`` appended (and pending ones resolved)."""
    out = {name: frame.copy() for name, frame in tables.items()}

    def later(n: int) -> pd.Series:
        return t + pd.to_timedelta(rng.integers(1, 120 * 86_400 * 10**9, n), unit="ns")

    extra = tables["interactions"].sample(3000, random_state=1, replace=True).copy()
    extra["interaction_id"] = [f"IX{i}" for i in range(len(extra))]
    extra["occurred_at"] = later(len(extra)).to_numpy()
    out["interactions"] = pd.concat([out["interactions"], extra], ignore_index=True)

    leads = out["leads"]
    pending = leads.index[leads["converted_at"].isna() | (leads["converted_at"] > t)]
    convert = rng.choice(pending, size=len(pending) // 3, replace=False)
    leads.loc[convert, "converted_at"] = later(len(convert)).to_numpy()

    subs = out["subscriptions"]
    live = subs.index[
        (subs["start"] <= t) & (subs["cancelled_at"].isna() | (subs["cancelled_at"] > t))
    ]
    cancel = rng.choice(live, size=len(live) // 3, replace=False)
    subs.loc[cancel, "cancelled_at"] = later(len(cancel)).to_numpy()

    usage = tables["usage"].sample(500, random_state=2).copy()
    usage["date"] = t + pd.to_timedelta(rng.integers(1, 60, len(usage)), unit="D")
    usage[["active_users", "logins", "key_feature_events"]] = 10_000
    out["usage"] = pd.concat([out["usage"], usage], ignore_index=True)

    tickets = tables["tickets"].sample(500, random_state=3).copy()
    tickets["ticket_id"] = [f"TX{i}" for i in range(len(tickets))]
    tickets["opened_at"] = later(len(tickets)).to_numpy()
    tickets["closed_at"] = (tickets["opened_at"] + 2 * DAY).to_numpy()
    tickets["priority"] = "urgent"
    out["tickets"] = pd.concat([out["tickets"], tickets], ignore_index=True)
    # tickets still open at t get closed (and rated) after t
    open_at_t = out["tickets"].index[
        (out["tickets"]["opened_at"] <= t) & (out["tickets"]["closed_at"].isna())
    ]
    out["tickets"].loc[open_at_t, "closed_at"] = later(len(open_at_t)).to_numpy()
    out["tickets"].loc[open_at_t, "satisfaction"] = 1.0

    opps = tables["opportunities"].sample(200, random_state=4, replace=True).copy()
    opps["opportunity_id"] = [f"OX{i}" for i in range(len(opps))]
    opps["closed_at"] = later(len(opps)).to_numpy()
    opps["created_at"] = t.to_datetime64()
    opps["won"] = True
    out["opportunities"] = pd.concat([out["opportunities"], opps], ignore_index=True)
    return out


@pytest.mark.parametrize("builder, key", BUILDERS)
def test_events_after_t_change_no_feature_at_any_snapshot_up_to_t(
    small_sim: SimulationResult, builder: Builder, key: str
) -> None:
    # given the CRM as it is, and the same CRM with thousands of events dated after t
    base = builder(small_sim.tables, SETTINGS)
    future = builder(_with_future_events(small_sim.tables, CUT, np.random.default_rng(0)), SETTINGS)
    # when both are built, then every row at a snapshot <= t is identical
    before = base[base["event_timestamp"] <= CUT].sort_values([key, "event_timestamp"])
    after = future[future["event_timestamp"] <= CUT].sort_values([key, "event_timestamp"])
    assert len(before) > 100
    pd.testing.assert_frame_equal(before.reset_index(drop=True), after.reset_index(drop=True))
    # (and the extra events did change later rows: the test has teeth)
    assert (
        not base[base["event_timestamp"] > CUT]
        .reset_index(drop=True)
        .equals(future[future["event_timestamp"] > CUT].reset_index(drop=True))
    )


def _as_known_at(tables: dict[str, pd.DataFrame], t: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The CRM exactly as it could be seen at ``t``: nothing that happened after it."""
    out = {}
    leads = tables["leads"][tables["leads"]["created_at"] <= t].copy()
    leads.loc[leads["converted_at"] > t, "converted_at"] = pd.NaT
    # one lead touched just after t, so that t is a snapshot before the as-of time
    after = t + pd.Timedelta(hours=1)
    sentinel = tables["leads"].iloc[:1].copy()
    sentinel.loc[:, ["lead_id", "created_at", "converted_at"]] = ["L-sentinel", after, pd.NaT]
    out["leads"] = pd.concat([leads, sentinel], ignore_index=True)
    out["accounts"] = tables["accounts"]
    out["campaigns"] = tables["campaigns"]
    out["content"] = tables["content"][tables["content"]["published_at"] <= t]
    inter = tables["interactions"]
    known = inter[
        (inter["occurred_at"] <= t)
        & (inter["lead_id"].isna() | inter["lead_id"].isin(leads["lead_id"]))
        & (inter["content_id"].isna() | inter["content_id"].isin(out["content"]["content_id"]))
    ]
    touch = inter.iloc[:1].copy()
    touch.loc[:, ["interaction_id", "lead_id", "occurred_at", "content_id"]] = [
        "I-sentinel",
        "L-sentinel",
        after,
        pd.NA,
    ]
    out["interactions"] = pd.concat([known, touch], ignore_index=True)
    subs = tables["subscriptions"][tables["subscriptions"]["start"] <= t].copy()
    subs.loc[subs["cancelled_at"] > t, "cancelled_at"] = pd.NaT
    out["subscriptions"] = subs
    out["usage"] = tables["usage"][tables["usage"]["date"] <= t]
    tickets = tables["tickets"][tables["tickets"]["opened_at"] <= t].copy()
    late = tickets["closed_at"] > t
    tickets.loc[late, "closed_at"] = pd.NaT
    tickets.loc[late, "satisfaction"] = np.nan
    out["tickets"] = tickets
    opps = tables["opportunities"][tables["opportunities"]["created_at"] <= t].copy()
    late = opps["closed_at"] > t
    opps.loc[late, "closed_at"] = pd.NaT
    opps.loc[late, "won"] = pd.NA
    out["opportunities"] = opps
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, small_data_dir: Path) -> Settings:
    data_dir = tmp_path_factory.mktemp("leakage")
    shutil.copytree(small_data_dir / "raw", data_dir / "raw")
    settings = Settings(data_dir=data_dir)
    build(settings)
    apply(settings)
    return settings


@pytest.mark.parametrize(
    "model, builder, key",
    [
        ("lead_conversion", build_lead_features, "lead_id"),
        ("churn_risk", build_account_features, "account_id"),
    ],
)
def test_every_training_row_equals_features_from_the_crm_as_known_at_its_time(
    built: Settings, small_sim: SimulationResult, model: str, builder: Builder, key: str
) -> None:
    # given the Feast training set of the full CRM
    rows = training_set(built, model)
    names = feature_names(model)
    checked = 0
    for t, at_t in rows.groupby("event_timestamp"):
        # when the features are rebuilt from only what was known at the row's time
        known = builder(_as_known_at(small_sim.tables, t), SETTINGS)
        known = known[known["event_timestamp"] == t].set_index(key)
        # then every row of the training set is reproduced exactly: no later event was used
        at_t = at_t.set_index(key)
        assert set(at_t.index) == set(known.index), t
        expected = known.loc[at_t.index, names]
        pd.testing.assert_frame_equal(
            at_t[names], expected, check_dtype=False, check_index_type=False, check_names=False
        )
        checked += len(at_t)
    assert checked == len(rows) > 1000


def _creation_rows(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The creation rows ``crm-intel features build`` adds after the weekly snapshots."""
    snapshots = build_lead_features(tables, SETTINGS)
    batches = list(lead_feature_batches(tables, SETTINGS, creation_rows=True))
    frame = pa.concat_tables(batches).to_pandas()
    return frame.iloc[len(snapshots) :].reset_index(drop=True)


def test_creation_rows_equal_features_from_the_crm_as_known_when_each_lead_was_created(
    small_sim: SimulationResult,
) -> None:
    # given the creation rows of the full CRM (leads created since its last snapshot)
    rows = _creation_rows(small_sim.tables)
    last = snapshot_times(small_sim.tables, SETTINGS).max()
    created = small_sim.tables["leads"].set_index("lead_id")["created_at"]
    assert len(rows) >= 5 and (rows["event_timestamp"] >= last).all()
    names = [*LEAD_NUMERIC, *LEAD_CATEGORICAL]
    # (leads created early enough in the week that their known-at CRM has the same last snapshot)
    early = rows[rows["event_timestamp"] < last + 6 * DAY].head(6)
    assert len(early) >= 3
    for _, row in early.iterrows():
        t = row["event_timestamp"]
        # each stamped at its lead's created_at, to the second
        assert pd.Timedelta(0) <= t - created[row["lead_id"]] < pd.Timedelta(seconds=1)
        # when the creation rows are rebuilt from only what was known at that time
        known = _creation_rows(_as_known_at(small_sim.tables, t)).set_index("lead_id")
        again = known.loc[row["lead_id"]]
        # then the lead's row is reproduced exactly: nothing after its creation was used
        assert again["event_timestamp"] == t
        pd.testing.assert_series_equal(
            again[names], row[names].rename(row["lead_id"]), check_dtype=False, check_names=False
        )
