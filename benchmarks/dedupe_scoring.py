"""Benchmark: lead scoring on a CRM with duplicate leads, with and without merging them.

Protocol: the lead model test's CRM (seed 31, 2,000 accounts, 20,000 leads, 18 months) with
``--duplicate-leads 0.15``. Duplicates are found by ``crm-intel dedupe leads``' function
(Splink, match probability 0.9, seed 42). Features are then built twice from the same raw
tables: as they are, and with each duplicate's touches and deals merged onto its surviving lead
(``features build --merge-duplicates``). Each is trained and tested exactly as ``crm-intel train
lead`` does (the purged as-of protocol, training.snapshots.train_time_split, seed 0): ROC AUC on
the held-out period's snapshots. Beside each run's own test AUC, both models are also scored on
the rows they share (the snapshots of leads that are not a duplicate, at the same times), each
with its own labels, so that the two figures are of the same leads.

Usage: ``python benchmarks/dedupe_scoring.py``. Writes ``benchmarks/results/dedupe_scoring.json``.
"""

from __future__ import annotations

import argparse

from _measure import measure, write

CODE = """
import tempfile
from pathlib import Path

from sklearn.metrics import roc_auc_score

from crm.settings import Settings
from crm_intel.commands.training import protocol_for
from features import store
from features.duplicates import find_duplicate_leads, write_duplicate_leads
from features.training import training_set
from simulator import SimulationConfig, simulate, write_simulation
from training.pipeline import SPECS
from training.snapshots import train_time_split

config = SimulationConfig(
    seed=31, accounts={accounts}, leads={leads}, months=18, duplicate_leads={rate}
)
result = simulate(config)
runs = {{}}
with tempfile.TemporaryDirectory() as tmp:
    found = find_duplicate_leads(result.tables["leads"], 0.9, 42)
    dedupe_file = Path(tmp) / "duplicates.parquet"
    write_duplicate_leads(found.table, dedupe_file)
    for name, merge in (("as_is", None), ("merged", dedupe_file)):
        data_dir = Path(tmp) / name
        write_simulation(result, data_dir)
        settings = Settings(data_dir=data_dir, merge_duplicate_leads=merge)
        store.build(settings)
        store.apply(settings)
        frame = training_set(settings, "lead_conversion")
        runs[name] = train_time_split(
            frame, SPECS["lead_conversion"], protocol_for(settings, "lead_conversion"),
            random_state=0,
        )
table = found.table
duplicates = set(table.loc[table["lead_id"] != table["survivor_lead_id"], "lead_id"])
key = ["lead_id", "event_timestamp"]
evaluations = {{
    name: trained.evaluation.assign(lead_id=lambda d: d["lead_id"].astype(str))
    for name, trained in runs.items()
}}
plain = evaluations["as_is"]
shared = plain[~plain["lead_id"].isin(duplicates)][key].merge(evaluations["merged"][key], on=key)
RESULT = {{
    "records": len(result.tables["leads"]),
    "duplicates_found": found.duplicates,
    "shared_test_rows": len(shared),
}}
for name, trained in runs.items():
    on_shared = evaluations[name].merge(shared, on=key)
    RESULT[name] = {{
        "test_roc_auc": trained.metrics["model"]["roc_auc"],
        "test_rows": len(trained.evaluation),
        "test_positives": int(trained.evaluation["label"].sum()),
        "shared_rows_roc_auc": float(roc_auc_score(on_shared["label"], on_shared["p_model"])),
        "shared_rows_positives": int(on_shared["label"].sum()),
        "candidate": trained.candidate.get("description"),
    }}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=0.15)
    args = parser.parse_args()
    result = measure(
        CODE.format(leads=args.leads, accounts=args.accounts, rate=args.rate), timeout=7200
    )
    protocol = __doc__.split("Protocol: ", 1)[1].split("\n\nUsage", 1)[0]
    write(
        "dedupe_scoring",
        {
            "protocol": " ".join(protocol.split()),
            "config": {
                "seed": 31,
                "accounts": args.accounts,
                "leads": args.leads,
                "months": 18,
                "duplicate_leads": args.rate,
            },
            **result,
        },
    )


if __name__ == "__main__":
    main()
