"""``crm-intel dedupe leads`` through the CLI: the output file, the JSON summary against the
simulator's truth, and a clear error when the data has no identities."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from crm_intel.cli import app

pytestmark = pytest.mark.integration

SIZE = ["--accounts", "150", "--leads", "1500", "--months", "6", "--seed", "4"]


def test_dedupe_writes_one_row_per_lead_and_reports_against_the_truth(tmp_path: Path) -> None:
    # given a simulated CRM with planted duplicates
    data_dir = tmp_path / "crm"
    runner = CliRunner()
    made = runner.invoke(
        app, ["simulate", "--data-dir", str(data_dir), *SIZE, "--duplicate-leads", "0.2"]
    )
    assert made.exit_code == 0, made.output

    # when its leads are deduplicated into a CSV file
    out = tmp_path / "dupes.csv"
    result = runner.invoke(
        app, ["dedupe", "leads", "--data-dir", str(data_dir), "--out", str(out), "--json"]
    )

    # then every lead has a row, duplicates name their survivor, and the summary scores both
    # methods against the truth
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    table = pd.read_csv(out, dtype={"lead_id": str, "survivor_lead_id": str})
    leads = pd.read_parquet(data_dir / "raw" / "leads.parquet")
    assert sorted(table["lead_id"]) == sorted(leads["lead_id"])
    assert summary["records"] == len(leads)
    assert summary["duplicates"] == int((table["lead_id"] != table["survivor_lead_id"]).sum()) > 0
    quality = summary["against_truth"]
    assert quality["splink"]["recall"] > quality["exact_email"]["recall"]
    assert "lead records" in result.stderr and "exact e-mail" in result.stderr


def test_data_without_identities_is_a_clear_error(tmp_path: Path) -> None:
    data_dir = tmp_path / "crm"
    runner = CliRunner()
    assert runner.invoke(app, ["simulate", "--data-dir", str(data_dir), *SIZE]).exit_code == 0
    result = runner.invoke(app, ["dedupe", "leads", "--data-dir", str(data_dir)])
    assert result.exit_code == 2
    assert "first_name and last_name" in result.output
    assert "--duplicate-leads" in result.output
    assert not (data_dir / "dedupe").exists()
