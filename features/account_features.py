"""Account and content features and churn labels, defined once as Ibis expressions.

Accounts: described at every snapshot ``g`` they are live customers (a subscription with
``start < g`` not cancelled at or before ``g``), from the live subscription that started last.
Rules that keep the future out: ``usage.date`` closes the week before it, so a usage row counts
from ``date``; a ticket is open at ``t`` if ``opened_at <= t < closed_at``; satisfaction counts
from ``closed_at``; opportunities count from ``closed_at``. Usage windows are 28 days (four
weekly rows) against the 28 days before.

Content: described at every snapshot after it is published; ``engaged_leads`` counts leads with
a touch carrying it at or before ``t``, ``converted_engaged_leads`` those of them that converted
after that first touch and at or before ``t``.
"""

from __future__ import annotations

from collections.abc import Mapping

import ibis
import ibis.expr.types as ir

from crm.settings import Settings
from features.as_of import (
    MS_PER_DAY,
    NS_PER_DAY,
    TIME,
    Measure,
    Snapshots,
    f32,
    present,
    ratio,
    snapshot_windowed,
    up_to_ms,
    whole_ms,
)
from features.schema import (
    ACCOUNT_CATEGORICAL,
    ACCOUNT_NUMERIC,
    CONTENT_CATEGORICAL,
    CONTENT_NUMERIC,
)

Tables = Mapping[str, ir.Table]
ANNUAL_TERM_DAYS = 365  # the simulator's (and most CRMs') annual term: renewal every 365 days


def account_rows(raw: Tables, snapshots: Snapshots) -> ir.Table:
    """``account_id``, ``t_ns`` and the live subscription that started last (``start``,
    ``cancelled_at``, ``mrr``, ``seats``, ``plan``) of every account feature row.

    Two live subscriptions that started at the same instant are told apart by the larger MRR,
    then seats, then plan (the pandas pipeline took the later row of the table; a table has no
    row order on a cluster).
    """
    subs = present(raw["subscriptions"], "account_id")
    pairs = subs.cross_join(snapshots.rows)
    pairs = pairs.filter(
        pairs.start < pairs.g_ns, pairs.cancelled_at.isnull() | (pairs.g_ns < pairs.cancelled_at)
    )
    latest = ibis.window(
        group_by=["account_id", "g_ns"],
        order_by=[
            ibis.desc("start"),
            ibis.desc("mrr"),
            ibis.desc("seats"),
            ibis.desc("plan"),
        ],
    )
    ranked = pairs.mutate(rank=ibis.row_number().over(latest))
    chosen = ranked.filter(ranked["rank"] == 0)
    return chosen.select(
        "account_id", "start", "cancelled_at", "mrr", "seats", "plan", t_ns=chosen.g_ns
    )


def _account_events(raw: Tables) -> ir.Table:
    """Usage weeks, tickets opened, closed and rated, deals won and touches, one stream."""
    kinds = (
        "u_one", "active", "logins", "key",
        "o_one", "o_high", "o_ms", "c_one", "c_ms", "r_one", "r_sat",
        "w_one", "w_amount",
    )  # fmt: skip

    def stream(table: ir.Table, at: ir.Value, **values: ir.Value) -> ir.Table:
        columns = {k: values.get(k, ibis.literal(0.0)).cast("float64") for k in kinds}
        return table.select("account_id", t_ns=up_to_ms(at), **columns)

    usage = present(raw["usage"], "account_id")
    tickets = present(raw["tickets"], "account_id")
    opened_ms = whole_ms(up_to_ms(tickets.opened_at))
    closed = tickets.filter(tickets.closed_at.notnull())
    rated = closed.filter(closed.satisfaction.notnull())
    opps = present(raw["opportunities"], "account_id")
    won = opps.filter(opps.won.fill_null(False) & opps.closed_at.notnull())
    one = ibis.literal(1.0)
    return ibis.union(
        stream(
            usage,
            usage.date,
            u_one=one,
            active=usage.active_users.cast("float64").fill_null(0.0),
            logins=usage.logins.cast("float64").fill_null(0.0),
            key=usage.key_feature_events.cast("float64").fill_null(0.0),
        ),
        stream(
            tickets,
            tickets.opened_at,
            o_one=one,
            o_high=tickets.priority.isin(["high", "urgent"]).fill_null(False).cast("float64"),
            o_ms=opened_ms,
        ),
        stream(closed, closed.closed_at, c_one=one, c_ms=whole_ms(up_to_ms(closed.opened_at))),
        stream(rated, rated.closed_at, r_one=one, r_sat=rated.satisfaction),
        stream(won, won.closed_at, w_one=one, w_amount=won.amount.fill_null(0.0)),
    )


def _account_touches(raw: Tables) -> ir.Table:
    """The touches of each account, one event each. Kept apart from :func:`_account_events`:
    there are far more touches than usage weeks, tickets and deals, and only two measures read
    them, so their running sums are narrow (summed with the other streams, every touch would
    carry a zero for each of their measures)."""
    inter = present(raw["interactions"], "account_id")
    return inter.select("account_id", t_ns=up_to_ms(inter.occurred_at), a_one=ibis.literal(1.0))


ACCOUNT_MEASURES: tuple[Measure, ...] = (
    *(Measure(f"{name}_{days}", name, days) for name in ("u_one", "active", "logins", "key")
      for days in (28, 56)),
    Measure("tickets_90d", "o_one", 90),
    Measure("high_90d", "o_high", 90),
    Measure("opened_all", "o_one"),
    Measure("opened_ms_all", "o_ms"),
    Measure("closed_all", "c_one"),
    Measure("closed_ms_all", "c_ms"),
    Measure("rated_90d", "r_one", 90),
    Measure("sat_90d", "r_sat", 90),
    Measure("wins", "w_one"),
    Measure("amount", "w_amount"),
    Measure("last_win", "w_one", last=True),
)  # fmt: skip
ACCOUNT_TOUCH_MEASURES: tuple[Measure, ...] = (
    Measure("touches_30d", "a_one", 30),
    Measure("touches_90d", "a_one", 90),
)


def _trend_f32(now: ir.FloatingValue, before: ir.FloatingValue) -> ir.FloatingValue:
    """``now / before − 1`` of two single-precision values, in single precision (as numpy does
    with float32 operands: the quotient rounded to float32 first)."""
    quotient = f32(now.cast("float64") / before.cast("float64")).cast("float64")
    return f32(ibis.ifelse(before > 0, quotient - 1.0, None))


def _trend(now: ir.FloatingValue, before: ir.FloatingValue) -> ir.FloatingValue:
    return f32(ibis.ifelse(before > 0, now / before - 1.0, None))


def rfm_segment(recency_days: ir.FloatingValue, frequency: ir.FloatingValue) -> ir.StringValue:
    """Rule-based RFM segment (fixed thresholds, so a segment means the same thing every week)."""
    has = frequency > 0
    return ibis.cases(
        (has & (frequency >= 2) & (recency_days <= 90), "champion"),
        (has & (frequency >= 2) & (recency_days <= 365), "loyal"),
        (has & (recency_days <= 180), "recent"),
        (has & (recency_days > 180) & (recency_days <= 365), "at_risk"),
        (has & (recency_days > 365), "lapsed"),
        else_="no_deals",
    )


def account_features(raw: Tables, rows: ir.Table, snapshots: Snapshots) -> ir.Table:
    """Account features of ``rows`` (:func:`account_rows` at ``snapshots``): ``account_id``,
    ``t_ns``, :data:`features.schema.ACCOUNT_NUMERIC` (float32) and ``ACCOUNT_CATEGORICAL``."""
    subs = present(raw["subscriptions"], "account_id")
    first_start = subs.group_by("account_id").agg(first_start=subs.start.min())
    probes = rows.select("account_id", TIME)
    sums = snapshot_windowed(
        probes, "account_id", _account_events(raw), ACCOUNT_MEASURES, snapshots.times
    )
    touches = snapshot_windowed(
        probes, "account_id", _account_touches(raw), ACCOUNT_TOUCH_MEASURES, snapshots.times
    )
    accounts = raw["accounts"].select("account_id", "employee_band", "industry", "region")
    d = (
        rows.join(sums, ["account_id", TIME])
        .join(touches, ["account_id", TIME])
        .join(first_start, "account_id")
        .join(accounts, "account_id")
    )
    t_ms = whole_ms(d.t_ns).cast("float64")
    weeks_now, weeks_before = d.u_one_28, d.u_one_56 - d.u_one_28
    active_now = ratio(d.active_28, weeks_now)
    active_before = ratio(d.active_56 - d.active_28, weeks_before)
    out: dict[str, ir.Value] = {
        "mrr": f32(d.mrr.cast("float64")),
        "seats": f32(d.seats.cast("float64")),
        "tenure_days": f32((d.t_ns - d.first_start) / NS_PER_DAY),
        "days_to_renewal": f32(
            ANNUAL_TERM_DAYS - ((d.t_ns - d.start) / NS_PER_DAY) % ANNUAL_TERM_DAYS
        ),
        "active_user_ratio_28d": ratio(active_now, d.seats),
        "active_users_28d": active_now,
        "active_users_prev_28d": active_before,
        "active_users_trend": _trend_f32(active_now, active_before),
    }
    for name, stem in (("logins", "logins"), ("key", "key_feature_events")):
        now, before = d[f"{name}_28"], d[f"{name}_56"] - d[f"{name}_28"]
        out[f"{stem}_28d"] = f32(ibis.ifelse(weeks_now > 0, now, None))
        out[f"{stem}_prev_28d"] = f32(ibis.ifelse(weeks_before > 0, before, None))
        out[f"{stem}_trend"] = _trend(now, ibis.ifelse(weeks_before > 0, before, 0.0))
    n_open = d.opened_all - d.closed_all
    opened_sum = d.opened_ms_all - d.closed_ms_all
    recency = whole_ms(d.t_ns - d.last_win) / MS_PER_DAY
    out |= {
        "tickets_90d": f32(d.tickets_90d),
        "high_priority_tickets_90d": f32(d.high_90d),
        "mean_satisfaction_90d": ratio(d.sat_90d, d.rated_90d),
        "open_tickets": f32(n_open),
        "open_ticket_mean_age_days": f32(
            ibis.ifelse(n_open > 0, (n_open * t_ms - opened_sum) / n_open / MS_PER_DAY, None)
        ),
        "rfm_recency_days": f32(recency),
        "rfm_frequency": f32(d.wins),
        "rfm_monetary": f32(d.amount),
        "account_touches_30d": f32(d.touches_30d),
        "account_touches_90d": f32(d.touches_90d),
    }
    categorical = {
        "plan": d.plan.cast("string"),
        "rfm_segment": rfm_segment(recency, d.wins),
        "employee_band": d.employee_band.cast("string"),
        "industry": d.industry.cast("string"),
        "region": d.region.cast("string"),
    }
    assert tuple(out) == ACCOUNT_NUMERIC and tuple(categorical) == ACCOUNT_CATEGORICAL
    return d.select("account_id", TIME, **out, **categorical)


def account_labels(rows: ir.Table, as_of_ns: int, settings: Settings) -> ir.Table:
    """``account_id``, ``t_ns``, ``label``: 1 when the live subscription is cancelled in
    ``(t, t + window]``, 0 when not, missing while the window is open at the as-of time."""
    window = settings.churn_window_days * NS_PER_DAY
    end = rows.cancelled_at
    happened = end.notnull() & (end > rows.t_ns) & (end <= rows.t_ns + window)
    labelled = rows.t_ns + window <= as_of_ns
    return rows.select(
        "account_id", TIME, label=ibis.ifelse(labelled, happened.cast("int64"), None)
    )


def content_features(raw: Tables, snapshots: Snapshots) -> ir.Table:
    """Content reach and conversions among engaged leads at every snapshot after publication:
    ``content_id``, ``t_ns``,
    :data:`features.schema.CONTENT_NUMERIC` and ``CONTENT_CATEGORICAL``."""
    content = raw["content"]
    pairs = content.cross_join(snapshots.rows)
    rows = pairs.filter(pairs.published_at < pairs.g_ns).select(
        "content_id", "published_at", "type", "topic", t_ns=pairs.g_ns
    )
    inter = present(raw["interactions"], "content_id")
    reach = inter.select("content_id", t_ns=up_to_ms(inter.occurred_at), reach=ibis.literal(1.0))
    engaged = inter.filter(inter.lead_id.notnull())
    first = engaged.group_by(["content_id", "lead_id"]).agg(first=engaged.occurred_at.min())
    leads = raw["leads"].select(l_id="lead_id", conv="converted_at")
    after = first.join(leads, first.lead_id == leads.l_id)
    after = after.filter(after.conv.notnull() & (after.conv >= after["first"]))
    one, zero = ibis.literal(1.0), ibis.literal(0.0)
    events = ibis.union(
        reach.mutate(engaged=zero, converted=zero),
        first.select("content_id", t_ns=up_to_ms(first["first"]), reach=zero, engaged=one,
                     converted=zero),
        after.select("content_id", t_ns=up_to_ms(after.conv), reach=zero, engaged=zero,
                     converted=one),
    )  # fmt: skip
    sums = snapshot_windowed(
        rows.select("content_id", TIME),
        "content_id",
        events,
        [
            Measure("reach", "reach"),
            Measure("reach_30d", "reach", 30),
            Measure("engaged_leads", "engaged"),
            Measure("converted_engaged_leads", "converted"),
        ],
        snapshots.times,
    )
    d = rows.join(sums, ["content_id", TIME])
    out = {
        "days_since_published": f32((d.t_ns - d.published_at) / NS_PER_DAY),
        "reach": f32(d.reach),
        "reach_30d": f32(d.reach_30d),
        "engaged_leads": f32(d.engaged_leads),
        "converted_engaged_leads": f32(d.converted_engaged_leads),
        "engaged_conversion_rate": ratio(d.converted_engaged_leads, d.engaged_leads),
    }
    categorical = {"content_type": d.type.cast("string"), "topic": d.topic.cast("string")}
    assert tuple(out) == CONTENT_NUMERIC and tuple(categorical) == CONTENT_CATEGORICAL
    return d.select("content_id", TIME, **out, **categorical)
