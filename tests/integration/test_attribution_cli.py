"""``crm-intel attribution run`` and ``report`` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from crm_intel.cli import app

pytestmark = pytest.mark.integration


def _invoke(*args: str) -> tuple[int, str, dict | None]:
    result = CliRunner().invoke(app, ["attribution", *args])
    lines = result.stdout.strip().splitlines()
    payload = json.loads(lines[-1]) if "--json" in args and result.exit_code == 0 else None
    return result.exit_code, result.output, payload


def test_run_on_a_path_file_writes_one_row_per_model_and_channel(tmp_path: Path) -> None:
    # given a small path file
    paths = tmp_path / "paths.csv"
    paths.write_text(
        "path;total_conversions;total_conversion_value;total_null\n"
        "a > b;3;30;1\nb;1;5;4\nc > a;0;0;2\n"
    )
    out = tmp_path / "credit.csv"
    # when
    code, output, payload = _invoke(
        "run", "--paths", str(paths), "--models", "first,last,markov", "--out", str(out), "--json"
    )
    # then
    assert code == 0, output
    table = pd.read_csv(out)
    assert table.groupby("model")["conversions"].sum().to_dict() == pytest.approx(
        {"first_touch": 4.0, "last_touch": 4.0, "markov_1": 4.0}
    )
    assert table.loc[table["model"] == "last_touch"].set_index("channel")[
        "conversions"
    ].to_dict() == pytest.approx({"a": 0.0, "b": 4.0, "c": 0.0})
    assert payload["conversions"] == 4.0 and payload["value"] == 35.0
    assert payload["rows"] == 9 and "tvd" not in payload


def test_run_on_the_data_dir_reports_tvd_against_simulated_truth(
    tmp_path: Path, small_data_dir: Path
) -> None:
    out = tmp_path / "credit.parquet"
    code, output, payload = _invoke(
        "run",
        "--data-dir",
        str(small_data_dir),
        "--models",
        "last_touch,linear,data_driven",
        "--bootstrap",
        "8",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, output
    table = pd.read_parquet(out)
    assert set(table["level"]) == {"channel", "content"}
    # every channel share has its bootstrap interval; content rows have none
    channels = table[table["level"] == "channel"]
    assert channels["share_low"].notna().all() and channels["includes_zero"].notna().all()
    assert (channels["share_low"] <= channels["share_high"]).all()
    assert table.loc[table["level"] == "content", "share_low"].isna().all()
    assert payload["intervals"]["replicates"] == 8
    # the recommended model, its evidence and the words the report shows
    advice = payload["recommended"]
    assert advice["model"] == "data_driven" and len(advice["candidates"]) == 4
    assert set(advice["disagreement"]) == {"last_touch", "linear"}
    assert "not whether a model's way of crediting is right" in advice["reason"]
    assert "Which model to trust" in output
    content = table[table["level"] == "content"]
    assert content.groupby("model")["conversions"].sum().to_numpy() == pytest.approx(
        payload["conversions"]
    )
    assert set(payload["tvd"]) == {"last_touch", "linear", "data_driven"}
    assert all(0 <= v <= 1 for v in payload["tvd"].values())
    assert payload["source"] == "interactions"
    # run.json beside the table gives the service the conversion period the run covers
    meta = json.loads((tmp_path / "run.json").read_text())
    leads = pd.read_parquet(small_data_dir / "raw" / "leads.parquet")
    converted = leads["converted_at"].dropna()
    assert meta["period_start"] >= converted.min().date().isoformat()
    assert meta["period_start"] <= meta["period_end"] <= converted.max().date().isoformat()
    assert meta["credit"] == "credit.parquet" and payload["period"] == {
        "period_start": meta["period_start"],
        "period_end": meta["period_end"],
    }


def test_report_writes_a_page_with_its_charts(tmp_path: Path, small_data_dir: Path) -> None:
    out = tmp_path / "report.html"
    code, output, payload = _invoke(
        "report",
        "--data-dir",
        str(small_data_dir),
        "--models",
        "last_touch,markov_1,shapley",
        "--out",
        str(out),
        "--json",
    )
    assert code == 0, output
    assert out.exists() and payload["charts"] == 11  # no data-driven model: no trust section
    assert payload["bytes"] == len(out.read_bytes())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("path;total_conversions\na >  > b;1\n", "has an empty step"),
        ("path;total_conversions;total_conversion_value\na;1;-4\n", "is negative"),
        ("route;conversions\na;1\n", "no path column"),
        ("path;total_conversions;total_null\na;0;5\n", "no conversions to credit"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    tmp_path: Path, content: str, message: str
) -> None:
    paths = tmp_path / "paths.csv"
    paths.write_text(content)
    out = tmp_path / "credit.csv"
    code, output, _ = _invoke("run", "--paths", str(paths), "--out", str(out))
    assert code == 2
    assert message in " ".join(output.split())
    assert not out.exists()


def test_unknown_model_and_missing_data_are_clear_errors(tmp_path: Path) -> None:
    code, output, _ = _invoke(
        "run", "--data-dir", str(tmp_path / "none"), "--out", str(tmp_path / "x.csv")
    )
    assert code == 2 and "does not exist" in output
    code, output, _ = _invoke(
        "run",
        "--paths",
        str(tmp_path / "p.csv"),
        "--models",
        "magic",
        "--out",
        str(tmp_path / "x.csv"),
    )
    assert code == 2 and "unknown model 'magic'" in output


def test_run_for_a_period_credits_only_the_journeys_ending_in_it(
    tmp_path: Path, small_data_dir: Path
) -> None:
    # given the period of the simulation's second quarter
    start, end = "2024-04-01", "2024-06-30"
    out = tmp_path / "q2" / "credit.parquet"

    # when attribution is run for it
    code, output, payload = _invoke(
        "run",
        "--data-dir",
        str(small_data_dir),
        "--models",
        "linear",
        "--start",
        start,
        "--end",
        end,
        "--out",
        str(out),
        "--json",
    )

    # then it credits exactly the conversions of that quarter that had a touch, and run.json
    # records the period asked for (the one the API then serves)
    assert code == 0, output
    leads = pd.read_parquet(small_data_dir / "raw" / "leads.parquet")
    touches = pd.read_parquet(small_data_dir / "raw" / "interactions.parquet")
    day = leads["converted_at"].dt.date.astype(str)
    quarter = leads[(day >= start) & (day <= end)][["lead_id", "converted_at"]]
    joined = touches.merge(quarter, on="lead_id")
    window = (joined["occurred_at"] <= joined["converted_at"]) & (
        joined["occurred_at"] >= joined["converted_at"] - pd.Timedelta(days=90)
    )
    assert payload["conversions"] == joined.loc[window, "lead_id"].nunique() > 0
    assert json.loads((out.parent / "run.json").read_text())["period_start"] == start
    assert payload["period"] == {"period_start": start, "period_end": end}

    # and half a period is a clear error
    code, output, _ = _invoke(
        "run", "--data-dir", str(small_data_dir), "--start", start, "--out", str(out)
    )
    assert code == 2 and "give both --start and --end" in output
