"""Bring-your-own-table preparation: blanks, placeholders, inferred types, labels."""

from __future__ import annotations

import pandas as pd
import pytest

from training.table import prepare_table

pytestmark = pytest.mark.unit


def export() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "Customer": ["a1", "b2", "c3", "d4"],
            "Charges": ["10.5", " ", "30", "7"],  # numbers stored as text, one blank
            "City": ["Select", "Pune", " ", "Delhi"],  # "Select" means not chosen
            "Plan": ["x", "x", "x", "x"],
            "Seq": [1001, 1002, 1003, 1004],
            "Empty": [None, None, None, None],
            "Notes": ["n1", "n2", "n3", "n4"],
            "Churn": ["Yes", "No", "No", "Yes"],
        }
    )


def test_table_is_cleaned_typed_and_explained() -> None:
    raw = export()
    table = prepare_table(raw, "Customer", "Churn")
    frame = table.frame
    assert table.positive == "Yes"
    assert frame["label"].tolist() == [1, 0, 0, 1]
    assert "Charges" in table.numeric
    assert frame["Charges"].tolist()[0] == pytest.approx(10.5)
    assert pd.isna(frame["Charges"][1])
    assert table.categorical == ("City",)
    assert frame["City"].isna().tolist() == [True, False, True, False]
    assert "Seq" in table.numeric  # unique integers may be sequence numbers: kept
    assert table.dropped == {
        "Plan": "constant",
        "Empty": "empty",
        "Notes": "identifier-like (unique per row)",
    }
    assert raw["City"][0] == "Select"  # input untouched


def test_drop_and_explicit_positive_value() -> None:
    raw = export().assign(Converted=[0, 1, 1, 0])
    table = prepare_table(
        raw.drop(columns="Churn"), "Customer", "Converted", positive="1", drop=("City",)
    )
    assert table.frame["label"].tolist() == [0, 1, 1, 0]
    assert "City" not in table.frame.columns
    assert table.dropped["City"] == "dropped on request"


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("Nope", "not in the table"),
    ],
)
def test_unknown_column_is_a_clear_error(column: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prepare_table(export(), "Customer", column)


def test_label_without_an_obvious_positive_asks_for_one() -> None:
    raw = export().assign(Stage=["won", "lost", "open", "won"])
    with pytest.raises(ValueError, match="pass --positive"):
        prepare_table(raw, "Customer", "Stage")
