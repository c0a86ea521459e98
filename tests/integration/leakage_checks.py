"""Leakage checks shared by both engines' tests (tests/integration/test_leakage.py runs them on
DuckDB, tests/integration/test_spark_engine.py on Spark): no feature sees the future."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from crm.settings import Settings
from features.engines import Engine
from features.pipeline import build_frames, snapshot_times, stored_frame
from features.schema import LEAD_CATEGORICAL, LEAD_NUMERIC
from features.training import feature_names, training_set

SETTINGS = Settings(data_dir="/nonexistent")
CUT = pd.Timestamp("2024-07-01", tz="UTC")  # a Monday snapshot mid-way through the year
DAY = pd.Timedelta(days=1)
FEATURES = {"lead_features": "lead_id", "account_features": "account_id",
            "content_features": "content_id"}  # fmt: skip
MODEL_TABLES = {"lead_conversion": ("lead_features", "lead_id"),
                "churn_risk": ("account_features", "account_id")}  # fmt: skip


def with_future_events(
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


def built_frames(built: Settings) -> dict[str, pd.DataFrame]:
    """The feature tables ``crm-intel features build`` wrote for ``built`` (creation rows
    included), as :func:`build_frames` returns them: strings as ``string[pyarrow]``."""
    return {
        name: stored_frame(pq.read_table(built.features_dir / f"{name}.parquet"))
        for name in FEATURES
    }


def check_events_after_t_change_nothing_up_to_t(
    tables: dict[str, pd.DataFrame],
    engine: Engine | None = None,
    base: dict[str, pd.DataFrame] | None = None,
) -> None:
    """Every feature row at a snapshot <= CUT (creation rows included) is the same with thousands
    of events added after it; rows after it change (so the check has teeth).

    Args:
        base: the feature tables of ``tables`` (:func:`built_frames`), when already built.
    """
    names = tuple(FEATURES)
    if base is None:
        base = build_frames(tables, SETTINGS, names, engine=engine, creation_rows=True)
    future_tables = with_future_events(tables, CUT, np.random.default_rng(0))
    future = build_frames(future_tables, SETTINGS, names, engine=engine, creation_rows=True)
    for name, key in FEATURES.items():
        b, f = base[name], future[name]
        before = b[b["event_timestamp"] <= CUT].sort_values([key, "event_timestamp"])
        after = f[f["event_timestamp"] <= CUT].sort_values([key, "event_timestamp"])
        assert len(before) > 100, name
        pd.testing.assert_frame_equal(before.reset_index(drop=True), after.reset_index(drop=True))
        assert (
            not b[b["event_timestamp"] > CUT]
            .reset_index(drop=True)
            .equals(f[f["event_timestamp"] > CUT].reset_index(drop=True))
        ), name


def as_known_at(tables: dict[str, pd.DataFrame], t: pd.Timestamp) -> dict[str, pd.DataFrame]:
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


def spread(times: list[pd.Timestamp], n: int) -> list[pd.Timestamp]:
    """``n`` of ``times`` evenly spread from the first to the last."""
    picks = np.unique(np.linspace(0, len(times) - 1, n).round().astype(int))
    return [times[i] for i in picks]


def check_training_rows_equal_features_known_at_their_time(
    built: Settings, tables: dict[str, pd.DataFrame], n_times: int, engine: Engine | None = None
) -> int:
    """At ``n_times`` snapshot times spread over the CRM's history, every row of both models'
    Feast training sets equals the features rebuilt from the CRM exactly as known at that time.

    Returns:
        rows checked.
    """
    rows = {model: training_set(built, model) for model in MODEL_TABLES}
    times = sorted(set(rows["lead_conversion"]["event_timestamp"]))
    checked = 0
    for t in spread(times, n_times):
        known_all = build_frames(
            as_known_at(tables, t), SETTINGS, ("lead_features", "account_features"), engine=engine
        )
        for model, (table, key) in MODEL_TABLES.items():
            at_t = rows[model][rows[model]["event_timestamp"] == t].set_index(key)
            known = known_all[table]
            known = known[known["event_timestamp"] == t].set_index(key)
            assert set(at_t.index) == set(known.index), (model, t)
            names = feature_names(model)
            pd.testing.assert_frame_equal(
                at_t[names],
                known.loc[at_t.index, names],
                check_dtype=False,
                check_index_type=False,
                check_names=False,
            )
            checked += len(at_t)
    return checked


def creation_rows(
    tables: dict[str, pd.DataFrame],
    engine: Engine | None = None,
    lead_features: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The creation rows ``crm-intel features build`` adds after the weekly snapshots (of
    ``lead_features``, the lead features of ``tables`` when already built)."""
    rows = lead_features
    if rows is None:
        names = ("lead_features",)
        rows = build_frames(tables, SETTINGS, names, engine, creation_rows=True)["lead_features"]
    last = snapshot_times(tables, SETTINGS).max()
    return rows[rows["event_timestamp"] >= last].reset_index(drop=True)


def check_creation_rows_equal_features_known_when_created(
    tables: dict[str, pd.DataFrame],
    n_leads: int,
    engine: Engine | None = None,
    lead_features: pd.DataFrame | None = None,
) -> None:
    """Each creation row (a lead created since the last snapshot) equals the features rebuilt
    from the CRM as known at its time, stamped at its lead's ``created_at`` to the second.

    Args:
        lead_features: the lead features of ``tables`` (:func:`built_frames`), when already built.
    """
    rows = creation_rows(tables, engine, lead_features)
    last = snapshot_times(tables, SETTINGS).max()
    created = tables["leads"].set_index("lead_id")["created_at"]
    # the last snapshot's own rows are weekly rows: creation rows are the ones after it
    rows = rows[rows["event_timestamp"] > last]
    assert len(rows) >= 5
    names = [*LEAD_NUMERIC, *LEAD_CATEGORICAL]
    # (leads created early enough in the week that their known-at CRM has the same last snapshot)
    early = rows[rows["event_timestamp"] < last + 6 * DAY].head(n_leads)
    assert len(early) >= min(3, n_leads)
    for _, row in early.iterrows():
        t = row["event_timestamp"]
        assert pd.Timedelta(0) <= t - created[row["lead_id"]] < pd.Timedelta(seconds=1)
        known = creation_rows(as_known_at(tables, t), engine).set_index("lead_id")
        again = known.loc[row["lead_id"]]
        assert again["event_timestamp"] == t
        pd.testing.assert_series_equal(
            again[names], row[names].rename(row["lead_id"]), check_dtype=False, check_names=False
        )
