"""``crm-intel value customers|accounts``: lifetime value of customers who buy when they like, and
of subscription accounts."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from crm_intel.commands.common import (
    DataDirOption,
    JsonOption,
    console,
    emit_json,
    fail,
    settings_for,
    status,
)

app = typer.Typer(
    help="Lifetime value: how many customers are still buying, what they will spend.",
    no_args_is_help=True,
)
TABLE_SUFFIXES = (".csv", ".parquet")


@app.command("customers")
def customers(
    purchases: Annotated[
        Path | None,
        typer.Option(
            "--purchases",
            help="The purchases: a CSV or Parquet file with customer_id, purchased_at and amount, "
            "or a CDNOW .txt file.",
        ),
    ] = None,
    out: Annotated[
        Path,
        typer.Option("--out", help="Where to write one row per customer (.csv or .parquet)."),
    ] = Path("customer_value.csv"),
    page: Annotated[
        Path | None,
        typer.Option("--page", help="Where to write the page (default: beside --out, .html)."),
    ] = None,
    calibration_end: Annotated[
        datetime | None,
        typer.Option(
            "--calibration-end",
            formats=["%Y-%m-%d"],
            help="The last day the models learn from (default: the last purchase day).",
        ),
    ] = None,
    holdout_end: Annotated[
        datetime | None,
        typer.Option(
            "--holdout-end",
            formats=["%Y-%m-%d"],
            help="Check the forecast on the purchases after --calibration-end up to this day.",
        ),
    ] = None,
    horizon_weeks: Annotated[
        int | None,
        typer.Option("--horizon-weeks", min=1, help="How far ahead value is counted."),
    ] = None,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Fit BG/NBD (how often customers buy, and whether they still do) and Gamma-Gamma (how much
    they spend) on the purchases; write each customer's chance of still buying, expected
    purchases and lifetime value, and a page with the forecast checked on a holdout period."""
    from crm.contract import ContractError
    from crm.purchases import read_purchases
    from reports.customer_value import build_value_page
    from reports.page_style import write_page
    from serving.batch import write_scores
    from training.customer_value import customer_values, fit_customer_value, holdout_check
    from training.rfm import rfm_table

    started = time.perf_counter()
    if purchases is None:
        raise fail(
            "give --purchases FILE: a CSV or Parquet file with customer_id, purchased_at and "
            "amount (the CRM's own tables hold subscriptions: `crm-intel value accounts`)"
        )
    if out.suffix.lower() not in TABLE_SUFFIXES:
        raise fail(f"--out must end in .csv or .parquet, not {out.suffix or 'nothing'}")
    if holdout_end is not None and calibration_end is None:
        raise fail("--holdout-end needs --calibration-end: the holdout starts the day after it")
    settings = settings_for(data_dir)
    horizon = horizon_weeks or settings.value_horizon_weeks
    try:
        rows = read_purchases(purchases)
    except ContractError as err:
        raise fail(f"purchases: {err}") from None
    with status("fitting how often and how much customers buy") as line:
        try:
            model = fit_customer_value(rows, calibration_end)
            line("lifetime values")
            values = customer_values(model, horizon, settings.value_discount_rate)
            line("RFM segments")
            segments = rfm_table(rows, model.calibration_end)
            values = values.merge(
                segments[["customer_id", "rfm_score", "segment"]], on="customer_id", how="left"
            )
            check = None
            if holdout_end is not None:
                line("checking the forecast on the holdout")
                check = holdout_check(model, rows, holdout_end)
        except ValueError as err:
            raise fail(str(err)) from None
    if check is not None:
        values = values.merge(
            check.customers.rename(
                columns={
                    "actual": "holdout_purchases",
                    "model": "holdout_forecast",
                    "naive": "holdout_naive_forecast",
                }
            ),
            on="customer_id",
        )
    write_scores(values, out)
    page_path = page or out.with_suffix(".html")
    write_page(
        build_value_page(
            model,
            values,
            check,
            horizon_weeks=horizon,
            annual_discount_rate=settings.value_discount_rate,
            currency=settings.currency,
        ),
        page_path,
    )
    summary = _summary(model, values, check, horizon)
    _print(summary)
    console.print(f"wrote {len(values):,} customers → {out}", highlight=False, soft_wrap=True)
    console.print(f"customer value page → {page_path}", highlight=False, soft_wrap=True)
    if json_:
        summary.update(
            out=str(out), page=str(page_path), seconds=round(time.perf_counter() - started, 2)
        )
        emit_json(summary)


@app.command("accounts")
def accounts(
    out: Annotated[
        Path,
        typer.Option("--out", help="Where to write one row per live account (.csv or .parquet)."),
    ] = Path("account_value.csv"),
    page: Annotated[
        Path | None,
        typer.Option("--page", help="Where to write the page (default: beside --out, .html)."),
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            "--as-of",
            formats=["%Y-%m-%d"],
            help="Value the accounts as they stood on this day (default: now, from the online "
            "store).",
        ),
    ] = None,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Expected remaining lifetime and lifetime value of every live subscription account, from
    the churn champion asked about each of the account's next renewals: margin × MRR over the
    months it is expected to stay, discounted, each with an 80 % range."""
    import pandas as pd

    from reports.account_value import build_account_value_page
    from reports.page_style import write_page
    from serving.account_value import account_values
    from serving.batch import write_scores
    from simulator.truth import read_lifetime_truth
    from training.registry import NoChampion
    from training.subscription_value import HORIZON_YEARS, lifetime_check, peer_months_by_account

    started = time.perf_counter()
    if out.suffix.lower() not in TABLE_SUFFIXES:
        raise fail(f"--out must end in .csv or .parquet, not {out.suffix or 'nothing'}")
    settings = settings_for(data_dir)
    truth = read_lifetime_truth(settings.truth_dir)
    when = as_of
    if when is None and truth is not None:
        when = truth["as_of"].iloc[0].to_pydatetime()  # simulated: value as of the truth's day
    with status("valuing accounts with the churn model") as line:
        try:
            valued = account_values(settings, when)
        except NoChampion as err:
            raise fail(str(err)) from None
        except FileNotFoundError:
            raise fail(
                "no account features yet: run `crm-intel features build`, `features apply` and "
                "`features materialize` first"
            ) from None
        values, champion = valued.table, valued.champion
        check = calibration = None
        if truth is not None and not values.empty:
            line("comparing with the true lifetimes")
            subscriptions = pd.read_parquet(settings.raw_dir / "subscriptions.parquet")
            peer = peer_months_by_account(subscriptions, truth["as_of"].iloc[0])
            check, calibration = lifetime_check(values, truth, peer)
    if values.empty:
        raise fail("no live account to value: no subscription is live with fresh features")
    write_scores(values, out)
    day = f"{when:%Y-%m-%d}" if when is not None else "now"
    page_path = page or out.with_suffix(".html")
    write_page(
        build_account_value_page(
            values,
            as_of=day,
            gross_margin=settings.value_gross_margin,
            annual_discount_rate=settings.value_discount_rate,
            check=check,
            calibration=calibration,
            currency=settings.currency,
        ),
        page_path,
    )
    summary: dict[str, Any] = {
        "accounts": len(values),
        "as_of": day,
        "churn_model_version": champion.version,
        "mrr": round(float(values["mrr"].sum()), 2),
        "lifetime_value": round(float(values["lifetime_value"].sum()), 2),
        "median_remaining_months": round(float(values["expected_remaining_months"].median()), 2),
        "settings": {
            "gross_margin": settings.value_gross_margin,
            "annual_discount_rate": settings.value_discount_rate,
            "churn_window_days": settings.churn_window_days,
            "horizon_years": HORIZON_YEARS,
        },
        # how much of an account's standing carries from one renewal to the next, measured on
        # the CRM's history (1.0 when it holds too few pairs of renewals)
        "persistence": round(valued.persistence, 4),
        "persistence_pairs": valued.persistence_pairs,
    }
    if check is not None:
        summary["truth"] = {k: round(v, 4) if isinstance(v, float) else v for k, v in check.items()}
    console.print(
        f"{len(values):,} live accounts valued with churn_risk v{champion.version}: median stay "
        f"{summary['median_remaining_months']:.0f} months, lifetime value "
        f"{summary['lifetime_value']:,.0f} {settings.currency}",
        highlight=False,
    )
    if check is not None:
        console.print(
            f"against the true lifetimes ({check['accounts']:,} accounts): rank correlation "
            f"{check['spearman_lifetime']:.3f} vs {check['spearman_lifetime_peer']:.3f} for the "
            "segment's mean lifetime",
            highlight=False,
        )
    console.print(f"wrote {len(values):,} accounts → {out}", highlight=False, soft_wrap=True)
    console.print(f"account value page → {page_path}", highlight=False, soft_wrap=True)
    if json_:
        summary.update(
            out=str(out), page=str(page_path), seconds=round(time.perf_counter() - started, 2)
        )
        emit_json(summary)


def _summary(model: Any, values: Any, check: Any, horizon: int) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "customers": len(values),
        "repeat_customers": int((values["frequency"] > 0).sum()),
        "calibration_end": f"{model.calibration_end:%Y-%m-%d}",
        "parameters": {k: round(v, 6) for k, v in model.parameters.items()},
        "horizon_weeks": horizon,
        "expected_purchases": round(float(values["expected_purchases"].sum()), 2),
        "lifetime_value": round(float(values["lifetime_value"].sum()), 2),
        "expected_customers_alive": round(float(values["p_alive"].sum()), 2),
        "segments": {
            str(name): {
                "customers": int(len(group)),
                "lifetime_value": round(float(group.sum()), 2),
            }
            for name, group in values.groupby("segment")["lifetime_value"]
        },
        "summary_definitions": {
            "unit": "weeks (days / 7)",
            "frequency": "purchase days after the first one in the calibration period",
            "recency": "weeks from the first purchase day to the last",
            "T": "weeks from the first purchase day to the end of the calibration period",
            "monetary_value": "mean amount of a repeat purchase day",
        },
    }
    if check is not None:
        totals = check.customers[["actual", "model", "naive"]].sum()
        summary["holdout"] = {
            "weeks": round(check.weeks, 3),
            "mean_absolute_error": {k: round(v, 4) for k, v in check.mean_absolute_error.items()},
            "repeat_purchases": {k: round(float(v), 2) for k, v in totals.items()},
        }
    return summary


def _print(summary: dict[str, Any]) -> None:
    fitted = ", ".join(f"{k} {v:.3f}" for k, v in summary["parameters"].items())
    console.print(
        f"{summary['customers']:,} customers ({summary['repeat_customers']:,} came back) "
        f"to {summary['calibration_end']}; fitted {fitted}",
        highlight=False,
    )
    holdout = summary.get("holdout")
    if holdout:
        errors = holdout["mean_absolute_error"]
        console.print(
            f"holdout ({holdout['weeks']:.0f} weeks): mean absolute error per customer "
            f"{errors['model']:.3f} (BG/NBD) vs {errors['naive']:.3f} (same rate as before)",
            highlight=False,
        )
