"""The sales funnel, lead → opportunity → won, from the raw CRM tables (analytics, no rendering).

The figures behind the funnel cockpit (:mod:`reports.funnel`) and ``crm-intel report funnel
--json``, as plain frames and dataclasses. Every figure is *so far*: as the CRM stood at the
data's as-of time.

Definitions (a lead is the unit of the funnel):

* **Leads** (stage 1): the rows of ``leads``, dated by ``created_at``.
* **Reached opportunity** (stage 2): leads with ``converted_at`` set, dated by ``converted_at``.
  ``converted_at`` alone decides this stage, whether or not an opportunity names the lead: the
  simulator opens exactly one opportunity per converted lead (its ``lead_id``, ``created_at`` ==
  ``converted_at``), but an imported CRM may lack the opportunity or link it differently.
* **Won** (stage 3): leads that reached opportunity *and* are the ``lead_id`` of at least one
  opportunity with ``won`` true. Those opportunities are the lead's **won deals** (a lead with two
  won opportunities is one won lead and two won deals); **won revenue** is their ``amount``.
* Beside the funnel, never in it: **opportunities without a lead** (``lead_id`` empty: their
  count, won deals and won revenue), and **won leads without a conversion date** (a won
  opportunity names the lead, but its ``converted_at`` is empty).
* **Rates**: lead → opportunity = reached opportunity ÷ leads; opportunity → won = won ÷ reached
  opportunity (opportunities still open count in the denominator); lead → won = won ÷ leads. A
  rate over no lead is empty (``None``/NaN), never 0.
* **Median days**: to opportunity = ``converted_at`` − ``created_at`` over the leads that
  reached opportunity; to won = the won deal's ``created_at`` → ``closed_at``; lead to won = the
  lead's ``created_at`` → the won deal's ``closed_at`` (both over won deals).
* **Segments**: the lead's account (``leads.account_id``, else the account of the lead's earliest
  opportunity): its ``industry``, ``employee_band`` and ``region``; ``not recorded`` when there is
  no account or the account leaves the field empty.
* **By month** (a cohort): leads by the UTC month of their ``created_at``, and how far they went
  so far; recent months have had less time to convert.
* **Periods** (the KPI figures): what happened in each UTC calendar month: leads created, leads
  reaching opportunity (by ``converted_at``), won deals and won revenue (by the deal's
  ``closed_at``), lead conversion rate = leads reaching opportunity in the month ÷ leads created
  in the month (a ratio of the month's flows, not one cohort's), median days over the month's
  conversions and won deals.
* A month is **complete** when the as-of time is at or past its end (the first instant of the
  next month); the month holding the as-of time is **partial**. The KPIs compare the latest
  complete month with the month before it; a partial month is never compared.
* The **as-of time** is the latest event timestamp in the raw tables
  (:func:`features.pipeline.as_of_time`: renewal dates and campaign ends are plans, not events).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from crm.contract import EMPLOYEE_BANDS
from crm.io import read_table
from features.pipeline import AS_OF_COLUMNS, as_of_time

SEGMENTS: tuple[str, ...] = ("industry", "employee_band", "region")
NOT_RECORDED = "not recorded"
# Columns of every stage table (by source, by segment, by month) and keys of ``Funnel.totals``
FIGURES: tuple[str, ...] = (
    "leads",
    "opportunities",
    "won",
    "won_deals",
    "won_revenue",
    "lead_to_opportunity",
    "opportunity_to_won",
    "lead_to_won",
    "median_days_to_opportunity",
    "median_days_to_won",
    "median_days_lead_to_won",
)
# Columns of ``Funnel.periods`` after ``month`` and ``complete``
PERIOD_FIGURES: tuple[str, ...] = (
    "leads",
    "opportunities",
    "won_deals",
    "won_revenue",
    "lead_conversion_rate",
    "median_days_to_opportunity",
    "median_days_to_won",
)
# The KPI cards, in order, and how each one's change is measured
KPIS: dict[str, Literal["relative", "difference"]] = {
    "lead_conversion_rate": "difference",
    "leads": "relative",
    "opportunities": "relative",
    "won_deals": "relative",
    "won_revenue": "relative",
    "median_days_to_opportunity": "difference",
    "median_days_to_won": "difference",
}
_DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Kpi:
    """One KPI of the latest complete month beside the month before.

    ``change`` is ``value / previous - 1`` when ``change_kind`` is ``relative`` (counts and
    revenue), ``value - previous`` when ``difference`` (a rate, as a fraction; days); ``None``
    when either is missing or a relative change would divide by zero.
    """

    name: str
    value: float | None
    previous: float | None
    change: float | None
    change_kind: Literal["relative", "difference"]


@dataclass(frozen=True)
class KpiComparison:
    """The KPIs of ``month`` (the latest complete one, ``YYYY-MM``) against ``previous_month``."""

    month: str
    previous_month: str | None
    kpis: tuple[Kpi, ...]


@dataclass(frozen=True)
class Funnel:
    """The funnel's figures (see the module's docstring for each definition).

    Attributes:
        as_of: the data's as-of time (UTC).
        totals: :data:`FIGURES` over every lead.
        by_source: ``source`` then :data:`FIGURES`, most leads first.
        by_segment: ``industry``, ``employee_band``, ``region`` → ``segment`` then
            :data:`FIGURES` (employee bands in size order, the others most leads first;
            ``not recorded`` last).
        by_month: ``month`` (``YYYY-MM`` of lead creation), ``complete``, then :data:`FIGURES`;
            every month from the first lead's to the as-of time's.
        periods: ``month``, ``complete``, then :data:`PERIOD_FIGURES`: each month's activity.
        partial_month: the month holding the as-of time (``YYYY-MM``), unless it is complete.
        kpis: the latest complete month against the one before; ``None`` without a complete
            month.
        without_lead: opportunities without a lead: ``opportunities``, ``won_deals``,
            ``won_revenue``.
        won_leads_without_conversion_date: leads a won opportunity names whose ``converted_at``
            is empty (not counted as won).
    """

    as_of: pd.Timestamp
    totals: dict[str, Any]
    by_source: pd.DataFrame
    by_segment: dict[str, pd.DataFrame]
    by_month: pd.DataFrame
    periods: pd.DataFrame
    partial_month: str | None
    kpis: KpiComparison | None
    without_lead: dict[str, float | int]
    won_leads_without_conversion_date: int


# ----------------------------------------------------------------------------- stages
def _month(stamps: pd.Series) -> pd.Series:
    """``YYYY-MM`` of each UTC timestamp (missing stays missing)."""
    return stamps.dt.tz_convert("UTC").dt.strftime("%Y-%m")


def _month_end(month: str) -> pd.Timestamp:
    return pd.Timestamp(f"{month}-01", tz="UTC") + pd.offsets.MonthBegin(1)


def _months(first: str, last: str) -> list[str]:
    return [p.strftime("%Y-%m") for p in pd.period_range(first, last, freq="M")]


def _text(values: pd.Series) -> pd.Series:
    """Strings, ``not recorded`` for missing or blank values."""
    out = values.astype("string").str.strip()
    return out.mask(out.isna() | (out == ""), NOT_RECORDED).astype(object)


def _stage_rows(
    leads: pd.DataFrame, opportunities: pd.DataFrame, accounts: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """One row per lead and one per won deal (of a lead that reached opportunity), both with the
    lead's source, segments and creation month; and the won leads without a conversion date."""
    opps = opportunities[opportunities["lead_id"].notna()].sort_values(
        ["created_at", "opportunity_id"], kind="stable"
    )
    firsts = opps.drop_duplicates("lead_id")
    first_account = pd.Series(
        firsts["account_id"].astype(str).to_numpy(), index=firsts["lead_id"].astype(str).to_numpy()
    )
    lead_ids = leads["lead_id"].astype(str).to_numpy()
    account_id = leads["account_id"].astype("string").to_numpy(dtype=object, na_value=None)
    fallback = first_account.reindex(lead_ids).to_numpy(dtype=object)
    account_id = np.where(pd.isna(account_id), fallback, account_id)
    known = accounts.assign(account_id=accounts["account_id"].astype(str)).set_index("account_id")
    rows = pd.DataFrame(
        {
            "lead_id": lead_ids,
            "source": _text(leads["source"]).to_numpy(),
            "created_at": leads["created_at"].to_numpy(),
            "converted_at": leads["converted_at"].to_numpy(),
        }
    )
    rows["created_at"] = pd.to_datetime(rows["created_at"], utc=True)
    rows["converted_at"] = pd.to_datetime(rows["converted_at"], utc=True)
    for segment in SEGMENTS:
        values = known[segment].reindex(pd.Index(account_id, dtype=object))
        rows[segment] = _text(values.reset_index(drop=True)).to_numpy()
    rows["all"] = "all"
    rows["month"] = _month(rows["created_at"])
    rows["reached"] = rows["converted_at"].notna()
    rows["days_to_opportunity"] = (rows["converted_at"] - rows["created_at"]) / _DAY

    won = opps[opps["won"].fillna(False).astype(bool)]
    won = won.assign(lead_id=won["lead_id"].astype(str))
    lead_of = rows.set_index("lead_id")
    reached = won["lead_id"].isin(set(rows.loc[rows["reached"], "lead_id"])).to_numpy(dtype=bool)
    without_date = int(won.loc[~reached, "lead_id"].nunique())
    won = won[reached]
    lead_cols = ["source", *SEGMENTS, "all", "month", "created_at"]
    deals = pd.DataFrame(
        {
            "lead_id": won["lead_id"].to_numpy(),
            "amount": won["amount"].to_numpy(dtype=float),
            "opened_at": pd.to_datetime(won["created_at"], utc=True).to_numpy(),
            "closed_at": pd.to_datetime(won["closed_at"], utc=True).to_numpy(),
        }
    )
    for column in ("opened_at", "closed_at"):
        deals[column] = pd.to_datetime(deals[column], utc=True)
    attributes = lead_of[lead_cols].reindex(deals["lead_id"]).reset_index(drop=True)
    deals = pd.concat([deals, attributes.rename(columns={"created_at": "lead_created_at"})], axis=1)
    deals["days_to_won"] = (deals["closed_at"] - deals["opened_at"]) / _DAY
    deals["days_lead_to_won"] = (deals["closed_at"] - deals["lead_created_at"]) / _DAY
    rows["won"] = rows["lead_id"].isin(set(deals["lead_id"]))
    return rows, deals, without_date


def _ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    den = denominator.astype(float)
    return (numerator.astype(float) / den.where(den > 0)).astype(float)


def _stage_table(rows: pd.DataFrame, deals: pd.DataFrame, key: str) -> pd.DataFrame:
    """:data:`FIGURES` per value of ``key`` (a column of both frames), indexed by it."""
    by_lead = rows.groupby(key, sort=False)
    table = pd.DataFrame(
        {
            "leads": by_lead.size(),
            "opportunities": by_lead["reached"].sum(),
            "won": by_lead["won"].sum(),
            "median_days_to_opportunity": by_lead["days_to_opportunity"].median(),
        }
    )
    by_deal = deals.groupby(key, sort=False)
    won = pd.DataFrame(
        {
            "won_deals": by_deal.size(),
            "won_revenue": by_deal["amount"].sum(),
            "median_days_to_won": by_deal["days_to_won"].median(),
            "median_days_lead_to_won": by_deal["days_lead_to_won"].median(),
        }
    )
    table = table.join(won, how="left")
    for column in ("leads", "opportunities", "won", "won_deals"):
        table[column] = table[column].fillna(0).astype("int64")
    table["won_revenue"] = table["won_revenue"].fillna(0.0).astype(float)
    table["lead_to_opportunity"] = _ratio(table["opportunities"], table["leads"])
    table["opportunity_to_won"] = _ratio(table["won"], table["opportunities"])
    table["lead_to_won"] = _ratio(table["won"], table["leads"])
    return table[list(FIGURES)]


def _ordered(table: pd.DataFrame, name: str, order: tuple[str, ...] | None = None) -> pd.DataFrame:
    """``table`` (indexed by group) as a frame with the group in column ``name``: in ``order``
    when given, else most leads first; ``not recorded`` last."""
    keys = [str(k) for k in table.index]
    if order is not None:
        rank = {value: i for i, value in enumerate(order)}
        keys.sort(key=lambda k: (k == NOT_RECORDED, rank.get(k, len(rank)), k))
    else:
        leads = table["leads"].to_dict()
        keys.sort(key=lambda k: (k == NOT_RECORDED, -leads[k], k))
    out = table.loc[keys].rename_axis(name).reset_index()
    out[name] = out[name].astype(str)
    return out


def _periods(rows: pd.DataFrame, deals: pd.DataFrame, months: list[str]) -> pd.DataFrame:
    """Each month's activity (:data:`PERIOD_FIGURES`)."""
    index = pd.Index(months, name="month")
    created = rows.groupby("month").size()
    converted = rows[rows["reached"]]
    by_conversion = converted.groupby(_month(converted["converted_at"]))
    closed = deals[deals["closed_at"].notna()]
    by_close = closed.groupby(_month(closed["closed_at"]))
    table = pd.DataFrame(
        {
            "leads": created.reindex(index).fillna(0).astype("int64"),
            "opportunities": by_conversion.size().reindex(index).fillna(0).astype("int64"),
            "won_deals": by_close.size().reindex(index).fillna(0).astype("int64"),
            "won_revenue": by_close["amount"].sum().reindex(index).fillna(0.0).astype(float),
            "median_days_to_opportunity": by_conversion["days_to_opportunity"]
            .median()
            .reindex(index)
            .astype(float),
            "median_days_to_won": by_close["days_to_won"].median().reindex(index).astype(float),
        },
        index=index,
    )
    table["lead_conversion_rate"] = _ratio(table["opportunities"], table["leads"])
    return table[list(PERIOD_FIGURES)]


def _value(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _kpis(periods: pd.DataFrame) -> KpiComparison | None:
    complete = periods.index[periods["complete"].to_numpy(dtype=bool)].tolist()
    if not complete:
        return None
    month = complete[-1]
    position = periods.index.get_loc(month)
    previous = periods.index[position - 1] if position > 0 else None
    kpis = []
    for name, kind in KPIS.items():
        value = _value(periods.at[month, name])
        before = None if previous is None else _value(periods.at[previous, name])
        change = None
        if value is not None and before is not None:
            if kind == "difference":
                change = value - before
            elif before != 0:
                change = value / before - 1
        kpis.append(Kpi(name, value, before, change, kind))
    return KpiComparison(str(month), None if previous is None else str(previous), tuple(kpis))


def compute_funnel(
    leads: pd.DataFrame,
    opportunities: pd.DataFrame,
    accounts: pd.DataFrame,
    as_of: pd.Timestamp | None = None,
) -> Funnel:
    """The funnel of the contract's ``leads``, ``opportunities`` and ``accounts`` tables.

    Args:
        leads: the ``leads`` table (``lead_id``, ``account_id``, ``source``, ``created_at``,
            ``converted_at``).
        opportunities: the ``opportunities`` table (``opportunity_id``, ``account_id``,
            ``lead_id``, ``amount``, ``created_at``, ``closed_at``, ``won``).
        accounts: the ``accounts`` table (``account_id`` and :data:`SEGMENTS`).
        as_of: the data's as-of time, at or after every timestamp of the tables (default: the
            latest event in these three tables; :func:`load_funnel` takes it from all of them).

    Returns:
        The figures; the inputs are not changed.
    """
    if as_of is None:
        as_of = as_of_time({"leads": leads, "opportunities": opportunities})
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    rows, deals, without_date = _stage_rows(leads, opportunities, accounts)
    last = as_of.strftime("%Y-%m")
    first = rows["month"].min() if len(rows) else last
    months = _months(min(first, last), last)
    complete = {m: _month_end(m) <= as_of for m in months}

    by_month = _stage_table(rows, deals, "month").reindex(pd.Index(months, name="month"))
    for column in ("leads", "opportunities", "won", "won_deals"):
        by_month[column] = by_month[column].fillna(0).astype("int64")
    by_month["won_revenue"] = by_month["won_revenue"].fillna(0.0)
    by_month.insert(0, "complete", [complete[m] for m in months])
    periods = _periods(rows, deals, months)
    periods.insert(0, "complete", [complete[m] for m in months])

    totals_row = _stage_table(rows, deals, "all").reindex(["all"])
    for column in ("leads", "opportunities", "won", "won_deals"):
        totals_row[column] = totals_row[column].fillna(0).astype("int64")
    totals_row["won_revenue"] = totals_row["won_revenue"].fillna(0.0)
    totals = {name: _plain(totals_row.at["all", name]) for name in FIGURES}

    no_lead = opportunities[opportunities["lead_id"].isna()]
    no_lead_won = no_lead[no_lead["won"].fillna(False).astype(bool)]
    return Funnel(
        as_of=as_of,
        totals=totals,
        by_source=_ordered(_stage_table(rows, deals, "source"), "source"),
        by_segment={
            segment: _ordered(
                _stage_table(rows, deals, segment),
                "segment",
                EMPLOYEE_BANDS if segment == "employee_band" else None,
            )
            for segment in SEGMENTS
        },
        by_month=by_month.reset_index(),
        periods=periods.reset_index(),
        partial_month=None if complete[last] else last,
        kpis=_kpis(periods),
        without_lead={
            "opportunities": len(no_lead),
            "won_deals": len(no_lead_won),
            "won_revenue": float(no_lead_won["amount"].sum()),
        },
        won_leads_without_conversion_date=without_date,
    )


def load_funnel(raw_dir: Path) -> Funnel:
    """:func:`compute_funnel` of the contract tables in ``raw_dir``, as of the latest event in
    any of them (only the timestamp columns of the other tables are read)."""
    tables = {name: read_table(raw_dir, name) for name in ("leads", "opportunities", "accounts")}
    stamps = dict(tables)
    for name, columns in AS_OF_COLUMNS.items():
        if name not in stamps and (Path(raw_dir) / f"{name}.parquet").exists():
            stamps[name] = read_table(raw_dir, name, columns=list(columns))
    return compute_funnel(
        tables["leads"], tables["opportunities"], tables["accounts"], as_of_time(stamps)
    )


# ----------------------------------------------------------------------------- JSON
def _plain(value: Any) -> Any:
    """A JSON-able Python value: numpy scalars unwrapped, NaN and NA → ``None``."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and np.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def funnel_json(funnel: Funnel) -> dict[str, Any]:
    """The same figures as :class:`Funnel`, as JSON-able dicts and lists (NaN → ``None``)."""
    kpis = funnel.kpis
    return {
        "as_of": funnel.as_of.isoformat(),
        "partial_month": funnel.partial_month,
        "totals": {k: _plain(v) for k, v in funnel.totals.items()},
        "by_source": _records(funnel.by_source),
        "by_segment": {k: _records(v) for k, v in funnel.by_segment.items()},
        "by_month": _records(funnel.by_month),
        "periods": _records(funnel.periods),
        "kpis": None
        if kpis is None
        else {
            "month": kpis.month,
            "previous_month": kpis.previous_month,
            "figures": [{k: _plain(v) for k, v in asdict(kpi).items()} for kpi in kpis.kpis],
        },
        "opportunities_without_lead": {k: _plain(v) for k, v in funnel.without_lead.items()},
        "won_leads_without_conversion_date": funnel.won_leads_without_conversion_date,
    }
