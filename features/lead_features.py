"""Lead features and conversion labels, defined once as Ibis expressions (DuckDB or Spark).

Population: a lead is described at every snapshot ``g`` with ``created_at < g <= created_at +
lead_scoring_horizon_days`` and ``g < converted_at``; with ``creation_rows`` also once at its
``created_at`` (rounded up to the second) when it was created at or after the last snapshot and
has not converted, so that a lead no snapshot describes yet has a vector online.

Windows count a lead's touches in ``(t − w, t]`` (:mod:`features.as_of`). Distinct content and
topics count the first touch of each (lead, item). ``account_is_customer`` reads the lead's
account's subscription starts and cancellations at or before ``t``. ``leads.status`` and
``email_hash`` are never read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from crm.contract import CHANNELS, CONTENT_TYPES, HIGH_INTENT_TYPES, INTERACTION_TYPES
from crm.settings import Settings
from features.as_of import (
    MS_PER_DAY,
    NS_PER_DAY,
    NS_PER_MS,
    NS_PER_SECOND,
    TIME,
    Measure,
    SnapshotGrid,
    Snapshots,
    f32,
    present,
    ratio,
    snapshot_windowed,
    up_to,
    up_to_ms,
    whole_ms,
    windowed,
)
from features.job_titles import read_titles
from features.schema import LEAD_CATEGORICAL, LEAD_NUMERIC, LEAD_WINDOWS_DAYS

Tables = Mapping[str, ir.Table]


@dataclass(frozen=True)
class LeadRows:
    """The lead feature rows: on the snapshot grid and at creation.

    Attributes:
        on_grid: ``lead_id``, ``t_ns`` of the snapshot rows.
        created: ``lead_id``, ``t_ns`` of the creation rows; ``None`` when not asked for.
        grid: the snapshot times.
    """

    on_grid: ir.Table
    created: ir.Table | None
    grid: SnapshotGrid

    def all(self) -> ir.Table:
        """Every row, snapshot and creation."""
        if self.created is None:
            return self.on_grid
        return self.on_grid.union(self.created)


def lead_rows(
    raw: Tables, snapshots: Snapshots, settings: Settings, creation_rows: bool
) -> LeadRows:
    """Every lead feature row (see the module docstring): at the snapshots, and at creation for
    leads created after the last snapshot."""
    leads = raw["leads"]
    horizon = settings.lead_scoring_horizon_days * NS_PER_DAY
    pairs = leads.select("lead_id", "created_at", "converted_at").cross_join(snapshots.rows)
    pairs = pairs.filter(
        (pairs.created_at < pairs.g_ns),
        (pairs.g_ns <= pairs.created_at + horizon),
        pairs.converted_at.isnull() | (pairs.g_ns < pairs.converted_at),
    )
    on_grid = pairs.select("lead_id", t_ns=pairs.g_ns)
    if not creation_rows:
        return LeadRows(on_grid, None, snapshots.times)
    new = leads.filter(leads.converted_at.isnull())
    if snapshots.last_ns is not None:
        new = new.filter(new.created_at >= snapshots.last_ns)
    created = new.select("lead_id", t_ns=up_to(new.created_at, NS_PER_SECOND))
    return LeadRows(on_grid, created, snapshots.times)


def _touch_events(raw: Tables) -> ir.Table:
    """Each touch of a lead at its time rounded up to the ms, with one indicator per channel,
    type and content type, and the first touch of each (lead, content) and (lead, topic)."""
    inter, content = raw["interactions"], raw["content"]
    touched = inter.filter(inter.lead_id.notnull())
    kinds = content.select(c_id="content_id", c_type="type", c_topic="topic")
    typed = touched.left_join(kinds, touched.content_id == kinds.c_id)
    touches = typed.select(
        "lead_id",
        "channel",
        "type",
        "c_type",
        t_ns=up_to_ms(typed.occurred_at),
        touch=ibis.literal(1.0),
        high=typed.type.isin(HIGH_INTENT_TYPES).cast("float64"),
        first_content=ibis.literal(0.0),
        first_topic=ibis.literal(0.0),
    )
    with_content = typed.filter(typed.c_id.notnull())
    first_content = with_content.group_by(["lead_id", "content_id"]).agg(
        first=with_content.occurred_at.min()
    )
    with_topic = with_content.filter(with_content.c_topic.notnull())
    first_topic = with_topic.group_by(["lead_id", "c_topic"]).agg(
        first=with_topic.occurred_at.min()
    )
    none = ibis.null("string")
    zero, one = ibis.literal(0.0), ibis.literal(1.0)

    def first_touches(table: ir.Table, is_content: bool) -> ir.Table:
        return table.select(
            "lead_id",
            channel=none,
            type=none,
            c_type=none,
            t_ns=up_to_ms(table["first"]),
            touch=zero,
            high=zero,
            first_content=one if is_content else zero,
            first_topic=zero if is_content else one,
        )

    return ibis.union(
        touches, first_touches(first_content, True), first_touches(first_topic, False)
    )


def _touch_measures() -> list[Measure]:
    measures = [Measure(f"touches_{w}d", "touch", w) for w in LEAD_WINDOWS_DAYS]
    measures += [Measure(f"touches_{c}_90d", "channel", 90, equals=c) for c in CHANNELS]
    for w in (30, 90):
        measures += [Measure(f"touches_{t}_{w}d", "type", w, equals=t) for t in INTERACTION_TYPES]
    measures += [
        Measure("last_touch", "touch", last=True),
        Measure("last_high_intent", "high", last=True),
        Measure("touches_14d", "touch", 14),
        Measure("touches_28d", "touch", 28),
        *(Measure(f"content_{c}_touches", "c_type", equals=c) for c in CONTENT_TYPES),
        Measure("distinct_content", "first_content"),
        Measure("distinct_topics", "first_topic"),
        Measure("calls_total", "type", equals="call"),
        Measure("meetings_total", "type", equals="meeting"),
    ]
    return measures


def _customer_accounts(raw: Tables, rows: ir.Table) -> ir.Table:
    """``account_id``, ``t_ns``, ``live``: the account's subscriptions started and not cancelled
    at ``t``, for each (account, time) of ``rows``."""
    subs = present(raw["subscriptions"], "account_id")
    starts = subs.select("account_id", t_ns=up_to_ms(subs.start), change=ibis.literal(1.0))
    ends = subs.filter(subs.cancelled_at.notnull())
    ends = ends.select("account_id", t_ns=up_to_ms(ends.cancelled_at), change=ibis.literal(-1.0))
    probes = rows.filter(rows.account_id.notnull()).select("account_id", TIME).distinct()
    return windowed(probes, "account_id", starts.union(ends), [Measure("live", "change")])


def title_readings(distinct_titles: pa.Table) -> pa.Table:
    """``job_title`` → ``title_rank``, ``title_department`` for each distinct title given
    (:func:`features.job_titles.read_titles`, rules in Python, read once per distinct title)."""
    titles = distinct_titles.column("job_title").to_pandas().astype("string")
    read = read_titles(titles)
    return pa.table(
        {
            "job_title": pa.array(titles, type=pa.string()),
            "title_rank": pa.array(read["title_rank"], type=pa.string()),
            "title_department": pa.array(read["title_department"], type=pa.string()),
        }
    )


def _touches(raw: Tables, rows: LeadRows) -> ir.Table:
    """The touch measures of every row: the snapshot rows in a running sum over the grid
    (:func:`features.as_of.snapshot_windowed`), the few creation rows by a join to their
    touches (:func:`features.as_of.windowed`)."""
    events, measures = _touch_events(raw), _touch_measures()
    touches = snapshot_windowed(rows.on_grid, "lead_id", events, measures, rows.grid)
    if rows.created is None:
        return touches
    return touches.union(windowed(rows.created, "lead_id", events, measures), distinct=False)


def lead_features(raw: Tables, rows: LeadRows, titles: ir.Table, settings: Settings) -> ir.Table:
    """Lead features of ``rows`` (:func:`lead_rows`): ``lead_id``, ``t_ns`` and
    :data:`features.schema.LEAD_NUMERIC` (float32) + :data:`features.schema.LEAD_CATEGORICAL`.

    Args:
        titles: :func:`title_readings` of the leads' distinct job titles, as an engine table.
    """
    leads = raw["leads"]
    touches = _touches(raw, rows)  # one row per row of ``rows``
    lead_cols = leads.select(
        "lead_id",
        "account_id",
        "created_at",
        "seniority",
        "source",
        "country",
        "purchase_timeframe",
        "job_title",
    )
    described = touches.join(lead_cols, "lead_id")
    # the accounts are probed from the rows, not from ``described``: a query that read the touch
    # sums twice would compute them twice (an engine inlines a shared subquery)
    rows_with_account = rows.all().join(leads.select("lead_id", "account_id"), "lead_id")
    live = _customer_accounts(raw, rows_with_account.select("account_id", TIME))
    live = live.rename(live_account="account_id", live_t="t_ns")
    described = described.left_join(
        live, [described.account_id == live.live_account, described.t_ns == live.live_t]
    )
    accounts = raw["accounts"].select(
        acc_id="account_id",
        account_employee_band="employee_band",
        account_industry="industry",
        account_region="region",
    )
    described = described.left_join(accounts, described.account_id == accounts.acc_id)
    titles = titles.rename(title="job_title")
    described = described.left_join(titles, described.job_title == titles.title)
    d = described
    t_ms = (d.t_ns / NS_PER_MS).round().cast("int64").cast("float64")
    out: dict[str, ir.Value] = {
        "days_since_created": f32((t_ms - d.created_at.cast("float64") / NS_PER_MS) / MS_PER_DAY),
    }
    for w in LEAD_WINDOWS_DAYS:
        out[f"touches_{w}d"] = f32(d[f"touches_{w}d"])
    for c in CHANNELS:
        out[f"touches_{c}_90d"] = f32(d[f"touches_{c}_90d"])
    for w in (30, 90):
        for t in INTERACTION_TYPES:
            out[f"touches_{t}_{w}d"] = f32(d[f"touches_{t}_{w}d"])
    out["days_since_last_touch"] = f32(whole_ms(d.t_ns - d.last_touch) / MS_PER_DAY)
    out["days_since_last_high_intent"] = f32(whole_ms(d.t_ns - d.last_high_intent) / MS_PER_DAY)
    out["touches_14d"] = f32(d.touches_14d)
    out["touches_prev_14d"] = f32(d.touches_28d - d.touches_14d)
    out["touch_velocity_14d"] = f32(2 * d.touches_14d - d.touches_28d)
    for c in CONTENT_TYPES:
        out[f"content_{c}_touches"] = f32(d[f"content_{c}_touches"])
    out["distinct_content"] = f32(d.distinct_content)
    out["distinct_topics"] = f32(d.distinct_topics)
    opens = d.touches_email_open_90d
    out["email_click_rate_90d"] = ratio(d.touches_email_click_90d, opens)
    out["email_reply_rate_90d"] = ratio(d.touches_email_reply_90d, opens)
    out["calls_total"] = f32(d.calls_total)
    out["meetings_total"] = f32(d.meetings_total)
    out["account_is_customer"] = f32(
        ibis.ifelse(
            d.account_id.isnull(),
            None,
            ibis.ifelse(d.live.fill_null(0.0) > 0, 1.0, 0.0),
        )
    )
    categorical = {name: d[name].cast("string") for name in LEAD_CATEGORICAL}
    assert tuple(out) == LEAD_NUMERIC
    return d.select("lead_id", TIME, **out, **categorical)


def lead_labels(raw: Tables, rows: ir.Table, as_of_ns: int, settings: Settings) -> ir.Table:
    """``lead_id``, ``t_ns``, ``label``: 1 when the lead converted in ``(t, t + window]``, 0 when
    not, missing while that window is still open at the as-of time."""
    window = settings.conversion_window_days * NS_PER_DAY
    leads = raw["leads"].select(l_id="lead_id", conv="converted_at")
    d = rows.join(leads, rows.lead_id == leads.l_id)
    happened = d.conv.notnull() & (d.conv > d.t_ns) & (d.conv <= d.t_ns + window)
    labelled = d.t_ns + window <= as_of_ns
    return d.select("lead_id", TIME, label=ibis.ifelse(labelled, happened.cast("int64"), None))
