"""``crm-intel dedupe leads``: which lead records are one person (features.duplicates)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from crm_intel.commands.common import (
    DataDirOption,
    JsonOption,
    console,
    emit_json,
    fail,
    progress,
    settings_for,
)

app = typer.Typer(
    help="Find duplicate records: one person entered more than once.", no_args_is_help=True
)


@app.command("leads")
def leads(
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write one row per lead (lead_id, cluster_id, survivor_lead_id, "
            "match_probability): .parquet, else CSV (default: DATA_DIR/dedupe/leads.parquet, "
            "which the CRM write-back's Duplicate_Of__c reads).",
            show_default=False,
        ),
    ] = None,
    match_probability: Annotated[
        float | None,
        typer.Option(
            help="Two records are one person at or above this match probability "
            "(default: the setting dedupe_match_probability, 0.9).",
            min=0.01,
            max=0.999,
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Cluster lead records into people with Splink; name each cluster's surviving record."""
    from features.duplicates import (
        STEPS,
        DedupeInputError,
        exact_email_clusters,
        find_duplicate_leads,
        pairwise_scores,
        read_lead_identities,
        write_duplicate_leads,
    )
    from simulator.duplicates import read_duplicate_truth

    settings = settings_for(data_dir)
    target = out if out is not None else settings.duplicate_leads_path
    threshold = match_probability or settings.dedupe_match_probability
    started = time.perf_counter()
    try:
        with progress("dedupe leads", total=STEPS + 2) as advance:
            advance("reading leads")
            identities = read_lead_identities(settings.raw_dir)
            found = find_duplicate_leads(
                identities, threshold, settings.dedupe_seed, progress=advance
            )
            advance("writing")
            write_duplicate_leads(found.table, target)
    except DedupeInputError as err:
        raise fail(escape(str(err))) from None
    seconds = time.perf_counter() - started
    summary: dict[str, Any] = {
        "records": len(found.table),
        "people_with_duplicates": found.clusters,
        "duplicates": found.duplicates,
        "pairs_scored": found.pairs_scored,
        "match_probability": threshold,
        "seconds": round(seconds, 3),
        "out": str(target),
    }
    truth = read_duplicate_truth(settings.truth_dir)
    if truth is not None:
        person = truth.set_index(truth["lead_id"].astype(str))["person_id"].astype(str)
        predicted = found.table.set_index(found.table["lead_id"].astype(str))["cluster_id"]
        summary["against_truth"] = {
            "splink": pairwise_scores(predicted, person),
            "exact_email": pairwise_scores(exact_email_clusters(identities), person),
        }
    _print(summary)
    if json_:
        emit_json(summary)


def _print(summary: dict[str, Any]) -> None:
    console.print(
        f"{summary['records']:,} lead records: {summary['duplicates']:,} duplicates of "
        f"{summary['people_with_duplicates']:,} people (match probability ≥ "
        f"{summary['match_probability']}) · {summary['seconds']:.1f}s → {summary['out']}",
        highlight=False,
        soft_wrap=True,
    )
    quality = summary.get("against_truth")
    if not quality:
        return
    table = Table(title="Pairs of records against the simulator's truth")
    for column in ("method", "precision", "recall", "pairs found", "true pairs"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for method, label in (("splink", "Splink (ours)"), ("exact_email", "exact e-mail")):
        s = quality[method]
        table.add_row(
            label,
            f"{s['precision']:.3f}",
            f"{s['recall']:.3f}",
            f"{s['correct_pairs']:,}",
            f"{s['true_pairs']:,}",
        )
    console.print(table)
