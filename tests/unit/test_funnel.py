"""The funnel's figures on a tiny hand-built CRM, against counts made here with plain loops."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from training.funnel import FIGURES, NOT_RECORDED, compute_funnel, funnel_json

pytestmark = pytest.mark.unit

AS_OF = pd.Timestamp("2024-03-15", tz="UTC")


def tiny_crm() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Six leads over January to mid-March 2024 and eight opportunities:

    * L1 converts, its deal O1 is won (1,000); L2 converts, O2 is lost; L3 never converts;
    * L4 converts and wins two deals (O3 500, O4 250); L5 has no account on the lead, converts,
      and its open deal O5 names account A3;
    * L6 has a won deal O6 but no conversion date; O7 (won, 300) and O8 (lost) have no lead.
    """
    accounts = pd.DataFrame(
        {
            "account_id": ["A1", "A2", "A3"],
            "industry": ["software", "retail", None],
            "employee_band": ["11-50", "51-200", None],
            "region": ["EMEA", "NA", "APAC"],
        }
    ).astype("string")
    leads = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3", "L4", "L5", "L6"],
            "account_id": ["A1", "A2", None, "A1", None, "A2"],
            "source": ["paid_search", "paid_search", "webinar", "webinar", "event", "event"],
            "created_at": pd.to_datetime(
                [
                    "2024-01-05",
                    "2024-01-10",
                    "2024-01-20",
                    "2024-02-03",
                    "2024-02-10",
                    "2024-03-02",
                ],
                utc=True,
            ),
            "status": ["converted", "converted", "open", "converted", "converted", "open"],
            "converted_at": pd.to_datetime(
                ["2024-01-15", "2024-02-09", None, "2024-02-13", "2024-03-01", None], utc=True
            ),
        }
    )
    for column in ("lead_id", "account_id", "source", "status"):
        leads[column] = leads[column].astype("string")
    rows = [
        # id, account, lead, amount, created, closed, won
        ("O1", "A1", "L1", 1000.0, "2024-01-15", "2024-02-14", True),
        ("O2", "A2", "L2", 800.0, "2024-02-09", "2024-03-10", False),
        ("O3", "A1", "L4", 500.0, "2024-02-13", "2024-03-04", True),
        ("O4", "A1", "L4", 250.0, "2024-02-20", "2024-02-28", True),
        ("O5", "A3", "L5", 900.0, "2024-03-01", None, None),
        ("O6", "A2", "L6", 700.0, "2024-03-05", "2024-03-12", True),
        ("O7", "A3", None, 300.0, "2024-01-02", "2024-02-01", True),
        ("O8", "A2", None, 100.0, "2024-02-01", "2024-03-01", False),
    ]
    opportunities = pd.DataFrame(
        {
            "opportunity_id": pd.array([r[0] for r in rows], dtype="string"),
            "account_id": pd.array([r[1] for r in rows], dtype="string"),
            "lead_id": pd.array([r[2] for r in rows], dtype="string"),
            "stage": pd.array(
                [
                    "closed_won" if r[6] else "closed_lost" if r[6] is False else "proposal"
                    for r in rows
                ],
                dtype="string",
            ),
            "amount": [r[3] for r in rows],
            "created_at": pd.to_datetime([r[4] for r in rows], utc=True),
            "closed_at": pd.to_datetime([r[5] for r in rows], utc=True),
            "won": pd.array([r[6] for r in rows], dtype="boolean"),
        }
    )
    return leads, opportunities, accounts


# ------------------------------------------------------------ the same figures, with loops
def expected(
    leads: pd.DataFrame,
    opportunities: pd.DataFrame,
    accounts: pd.DataFrame,
    group: Callable[[dict[str, Any], dict[str, Any] | None], str],
) -> dict[str, dict[str, Any]]:
    """Stage counts, rates and median days per group, one lead and one deal at a time."""
    account_rows = {a["account_id"]: a for a in accounts.to_dict("records")}
    opps = sorted(opportunities.to_dict("records"), key=lambda o: o["created_at"])
    out: dict[str, dict[str, Any]] = {}
    for lead in leads.to_dict("records"):
        account_id = lead["account_id"]
        if pd.isna(account_id):
            mine = [o["account_id"] for o in opps if o["lead_id"] == lead["lead_id"]]
            account_id = mine[0] if mine else None
        account = account_rows.get(account_id)
        figures = out.setdefault(
            group(lead, account),
            {"leads": 0, "opportunities": 0, "won": 0, "won_deals": 0, "won_revenue": 0.0}
            | {"days_opp": [], "days_won": []},
        )
        figures["leads"] += 1
        if pd.isna(lead["converted_at"]):
            continue
        figures["opportunities"] += 1
        figures["days_opp"].append((lead["converted_at"] - lead["created_at"]).total_seconds())
        won = [
            o for o in opps if o["lead_id"] == lead["lead_id"] and pd.notna(o["won"]) and o["won"]
        ]
        if won:
            figures["won"] += 1
        for deal in won:
            figures["won_deals"] += 1
            figures["won_revenue"] += deal["amount"]
            figures["days_won"].append((deal["closed_at"] - deal["created_at"]).total_seconds())
    for figures in out.values():
        days_opp, days_won = figures.pop("days_opp"), figures.pop("days_won")
        figures["median_days_to_opportunity"] = (
            statistics.median(days_opp) / 86400 if days_opp else None
        )
        figures["median_days_to_won"] = statistics.median(days_won) / 86400 if days_won else None
        figures["lead_to_opportunity"] = figures["opportunities"] / figures["leads"]
        figures["opportunity_to_won"] = (
            figures["won"] / figures["opportunities"] if figures["opportunities"] else None
        )
        figures["lead_to_won"] = figures["won"] / figures["leads"]
    return out


def as_dicts(table: pd.DataFrame, key: str) -> dict[str, dict[str, Any]]:
    """A stage table as group → figures (NaN → None), without the lead-to-won days."""
    names = [n for n in FIGURES if n != "median_days_lead_to_won"]
    return {
        row[key]: {n: None if pd.isna(row[n]) else row[n] for n in names}
        for row in table.to_dict("records")
    }


def approx(figures: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        group: {k: v if v is None else pytest.approx(v) for k, v in row.items()}
        for group, row in figures.items()
    }


# ----------------------------------------------------------------------------- tests
def test_stage_counts_rates_and_days_equal_a_lead_by_lead_count() -> None:
    # given the tiny CRM
    leads, opportunities, accounts = tiny_crm()
    # when
    funnel = compute_funnel(leads, opportunities, accounts, AS_OF)
    # then every lead: 6 leads, 4 reached opportunity, 2 won (L6 has no conversion date), three
    # won deals (L4 has two), each figure equal to the loop's
    overall = expected(leads, opportunities, accounts, lambda lead, account: "all")["all"]
    assert (overall["leads"], overall["opportunities"], overall["won"]) == (6, 4, 2)
    assert {k: funnel.totals[k] for k in overall} == approx({"all": overall})["all"]
    assert funnel.totals["median_days_to_opportunity"] == pytest.approx(15.0)  # 10, 30, 10, 20
    assert funnel.totals["median_days_to_won"] == pytest.approx(20.0)  # 30, 20, 8
    # by source, segment and month of creation
    assert as_dicts(funnel.by_source, "source") == approx(
        expected(leads, opportunities, accounts, lambda lead, account: lead["source"])
    )
    for segment in ("industry", "employee_band", "region"):
        assert as_dicts(funnel.by_segment[segment], "segment") == approx(
            expected(
                leads,
                opportunities,
                accounts,
                lambda lead, account, s=segment: (
                    NOT_RECORDED if account is None or pd.isna(account[s]) else account[s]
                ),
            )
        ), segment
    by_month = as_dicts(funnel.by_month, "month")
    assert by_month == approx(
        expected(
            leads, opportunities, accounts, lambda lead, account: f"{lead['created_at']:%Y-%m}"
        )
    )
    # L5's account is its opportunity's (A3: APAC, no industry); bands in size order
    assert funnel.by_segment["region"]["segment"].tolist() == ["EMEA", "NA", "APAC", NOT_RECORDED]
    assert funnel.by_segment["employee_band"]["segment"].tolist() == [
        "11-50",
        "51-200",
        NOT_RECORDED,
    ]
    # beside the funnel: the opportunities without a lead and the won lead without a date
    assert funnel.without_lead == {"opportunities": 2, "won_deals": 1, "won_revenue": 300.0}
    assert funnel.won_leads_without_conversion_date == 1


def test_the_partial_month_is_marked_and_the_kpis_compare_the_two_before_it() -> None:
    # given data up to 15 March: March is under way
    leads, opportunities, accounts = tiny_crm()
    # when
    funnel = compute_funnel(leads, opportunities, accounts, AS_OF)
    # then March is partial in both monthly tables and the KPIs compare February with January
    assert funnel.partial_month == "2024-03"
    assert funnel.by_month[["month", "complete"]].values.tolist() == [
        ["2024-01", True],
        ["2024-02", True],
        ["2024-03", False],
    ]
    periods = funnel.periods.set_index("month")
    assert periods["complete"].tolist() == [True, True, False]
    # what happened in each month: created; converted; deals closed won (of converted leads)
    assert periods["leads"].tolist() == [3, 2, 1]
    assert periods["opportunities"].tolist() == [1, 2, 1]  # L1 | L2, L4 | L5
    assert periods["won_deals"].tolist() == [0, 2, 1]  # - | O1, O4 | O3
    assert periods["won_revenue"].tolist() == pytest.approx([0.0, 1250.0, 500.0])
    kpis = funnel.kpis
    assert kpis is not None and (kpis.month, kpis.previous_month) == ("2024-02", "2024-01")
    by_name = {k.name: k for k in kpis.kpis}
    assert list(by_name) == [
        "lead_conversion_rate",
        "leads",
        "opportunities",
        "won_deals",
        "won_revenue",
        "median_days_to_opportunity",
        "median_days_to_won",
    ]
    rate = by_name["lead_conversion_rate"]
    assert (rate.value, rate.previous, rate.change) == pytest.approx((1.0, 1 / 3, 2 / 3))
    leads_kpi = by_name["leads"]
    assert (leads_kpi.value, leads_kpi.previous, leads_kpi.change) == pytest.approx(
        (2.0, 3.0, -1 / 3)
    )
    won = by_name["won_deals"]  # none in January: no relative change to measure
    assert (won.value, won.previous, won.change) == (2.0, 0.0, None)
    # February's conversions took 30 (L2) and 10 (L4) days
    assert by_name["median_days_to_opportunity"].value == pytest.approx(20.0)
    assert by_name["median_days_to_opportunity"].change == pytest.approx(20.0 - 10.0)


def test_a_month_is_complete_once_the_as_of_time_reaches_its_end() -> None:
    leads, opportunities, accounts = tiny_crm()
    # when the data runs to 1 April 00:00
    funnel = compute_funnel(leads, opportunities, accounts, pd.Timestamp("2024-04-01", tz="UTC"))
    # then March is complete and compared with February; April (no lead yet) is partial
    assert funnel.partial_month == "2024-04"
    assert funnel.periods["month"].tolist()[-2:] == ["2024-03", "2024-04"]
    assert funnel.periods["complete"].tolist() == [True, True, True, False]
    assert funnel.kpis is not None and funnel.kpis.month == "2024-03"
    # by default the as-of time is the latest event: O6 closed on 12 March
    assert compute_funnel(leads, opportunities, accounts).as_of == pd.Timestamp(
        "2024-03-12", tz="UTC"
    )


def test_the_json_holds_the_same_figures() -> None:
    leads, opportunities, accounts = tiny_crm()
    funnel = compute_funnel(leads, opportunities, accounts, AS_OF)
    # when
    payload = json.loads(json.dumps(funnel_json(funnel), allow_nan=False))
    # then
    assert payload["totals"]["leads"] == 6 and payload["totals"]["won_revenue"] == 1750.0
    assert payload["partial_month"] == "2024-03"
    assert [r["source"] for r in payload["by_source"]] == ["event", "paid_search", "webinar"]
    assert payload["by_month"][2]["median_days_to_won"] is None  # no March lead won
    assert payload["kpis"]["month"] == "2024-02"
    assert payload["kpis"]["figures"][3] == {
        "name": "won_deals",
        "value": 2.0,
        "previous": 0.0,
        "change": None,
        "change_kind": "relative",
    }
    assert payload["opportunities_without_lead"]["won_revenue"] == 300.0
    assert payload["won_leads_without_conversion_date"] == 1
