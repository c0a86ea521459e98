"""``crm-intel simulate`` through the real CLI: byte-identical per seed, JSON last line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crm_intel.cli import app

pytestmark = pytest.mark.integration

SIZE = ["--accounts", "150", "--leads", "1500", "--months", "6"]


def _simulate(out: Path, seed: int) -> dict:
    result = CliRunner().invoke(
        app, ["simulate", "--out", str(out), "--seed", str(seed), *SIZE, "--json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_same_seed_writes_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    summary = _simulate(tmp_path / "A", 7)
    _simulate(tmp_path / "B", 7)
    _simulate(tmp_path / "C", 8)
    a, b, c = (_files(tmp_path / x) for x in "ABC")
    assert "raw/interactions.parquet" in a and "truth/lead_conversion.parquet" in a
    assert a == b
    assert a["raw/interactions.parquet"] != c["raw/interactions.parquet"]
    assert summary["rows"]["leads"] == 1500


def test_without_out_it_writes_into_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "crm"
    result = CliRunner().invoke(app, ["simulate", "--data-dir", str(data_dir), *SIZE])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (data_dir / "raw").iterdir())[:3] == [
        "accounts.parquet",
        "campaigns.parquet",
        "content.parquet",
    ]


def test_a_bad_size_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "X"), "--leads", "3"])
    assert result.exit_code == 2
    assert "leads must be at least 10" in result.output
    assert not (tmp_path / "X").exists()


@pytest.mark.parametrize(
    ("export_format", "a_file"), [("salesforce", "Lead.csv"), ("hubspot", "contacts.csv")]
)
def test_a_crm_export_shape_is_written_beside_the_same_contract_bytes(
    tmp_path: Path, export_format: str, a_file: str
) -> None:
    # given the same seed simulated without and with an export shape
    _simulate(tmp_path / "plain", 7)
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--out",
            str(tmp_path / "shaped"),
            "--seed",
            "7",
            *SIZE,
            "--format",
            export_format,
            "--json",
        ],
    )

    # then the export is written in its folder, and raw/ and truth/ are byte for byte the same
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["export_dir"] == str(tmp_path / "shaped" / export_format)
    assert (tmp_path / "shaped" / export_format / a_file).is_file()
    shaped = {
        k: v for k, v in _files(tmp_path / "shaped").items() if k.split("/")[0] != export_format
    }
    assert shaped == _files(tmp_path / "plain")
