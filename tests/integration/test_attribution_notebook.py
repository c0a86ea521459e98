"""The attribution notebook runs top to bottom on a simulated data directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.integration

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "attribution.ipynb"


def test_notebook_executes_and_reports_tvd_and_the_page(
    tmp_path: Path, small_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a copy of the simulated data directory named by the environment
    data_dir = tmp_path / "crm"
    shutil.copytree(small_data_dir, data_dir)
    monkeypatch.setenv("CRM_INTEL_DATA_DIR", str(data_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # when it is executed
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    # then every cell ran, TVD against truth was shown and the report was written
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []
    tvd_cell = next(c for c in code if c.source.startswith("truth = read_truth"))
    assert "data_driven" in tvd_cell.outputs[0]["data"]["text/plain"]
    assert (data_dir / "reports" / "attribution.html").stat().st_size > 100_000
