"""The benchmark's scaled data (benchmarks/scale_data.py): ids unique per copy, shared ids kept,
copy counts that reach the target."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pyarrow as pa
import pytest

pytestmark = pytest.mark.unit

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "scale_data.py"
SPEC = importlib.util.spec_from_file_location("scale_data", PATH)
assert SPEC is not None and SPEC.loader is not None
scale_data = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(scale_data)


def touches() -> pa.Table:
    schema = pa.schema(
        [
            ("interaction_id", pa.large_string()),
            ("lead_id", pa.large_string()),
            ("content_id", pa.large_string()),
        ],
        metadata={b"pandas": b"{}"},
    )
    return pa.table(
        {
            "interaction_id": ["I1", "I2", "I3"],
            "lead_id": ["L1", None, "L2"],
            "content_id": ["CT1", None, "CT1"],
        },
        schema=schema,
    )


def test_copy_zero_keeps_the_simulation_ids() -> None:
    table = touches()
    assert scale_data.copy_ids(table, scale_data.COPY_IDS["interactions"], 0).equals(table)


def test_later_copies_suffix_their_own_ids_and_keep_shared_ones_and_nulls() -> None:
    out = scale_data.copy_ids(touches(), scale_data.COPY_IDS["interactions"], 7)
    assert out["interaction_id"].to_pylist() == ["I1-c7", "I2-c7", "I3-c7"]
    assert out["lead_id"].to_pylist() == ["L1-c7", None, "L2-c7"]
    assert out["content_id"].to_pylist() == ["CT1", None, "CT1"]
    assert out.schema == touches().schema
    assert out.schema.metadata == touches().schema.metadata


def test_every_copied_table_rewrites_its_own_ids_but_never_content_or_campaigns() -> None:
    assert "content" not in scale_data.COPY_IDS and "campaigns" not in scale_data.COPY_IDS
    assert set(scale_data.COPY_IDS["interactions"]) == {"interaction_id", "lead_id", "account_id"}
    assert "account_id" in scale_data.COPY_IDS["usage"]
    assert set(scale_data.COPY_IDS["opportunities"]) >= {"opportunity_id", "account_id", "lead_id"}


def test_copy_count_reaches_the_target() -> None:
    assert scale_data.copies_for(100_000_000, 10_100_000) == 10
    assert scale_data.copies_for(100_000_000, 9_944_380) == 11
    assert scale_data.copies_for(10, 10_000_000) == 1
    with pytest.raises(ValueError, match="no interactions"):
        scale_data.copies_for(10, 0)
    with pytest.raises(ValueError, match="copy must be >= 0"):
        scale_data.copy_suffix(-1)
