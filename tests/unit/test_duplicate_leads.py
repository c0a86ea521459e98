"""Duplicate leads, the pure parts: pairwise scores, surviving records, the privacy setting and
the simulator's planted duplicates (opt-in: without them, the bytes of before)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import jellyfish
import numpy as np
import pandas as pd
import pytest

from crm.contract import validate_tables
from crm.identity import email_hashes, phone_hashes, protect_leads
from features.duplicates import (
    DedupeInputError,
    check_identities,
    company_key,
    exact_email_clusters,
    pairwise_scores,
    survivors,
)
from simulator import SimulationConfig, simulate, write_simulation
from simulator.duplicates import typo

pytestmark = pytest.mark.unit

BASE = SimulationConfig(seed=9, accounts=100, leads=800, months=8)


@pytest.fixture(scope="module")
def plain():
    return simulate(BASE)


@pytest.fixture(scope="module")
def duplicated():
    return simulate(replace(BASE, duplicate_leads=0.2))


def test_pairwise_scores_count_pairs_within_clusters() -> None:
    # given true people {a, b, c} and {d}, and a clustering {a, b} {c, d}
    truth = pd.Series({"a": "p", "b": "p", "c": "p", "d": "q"})
    predicted = pd.Series({"a": "1", "b": "1", "c": "2", "d": "2"})

    # when scored, then of 2 predicted pairs 1 (a-b) is true, of 3 true pairs 1 is found
    scores = pairwise_scores(predicted, truth)
    assert scores["precision"] == pytest.approx(0.5)
    assert scores["recall"] == pytest.approx(1 / 3)
    assert (scores["predicted_pairs"], scores["true_pairs"], scores["correct_pairs"]) == (2, 3, 1)


def test_the_oldest_record_survives_and_carries_the_best_link() -> None:
    # given three records in one cluster and one on its own
    leads = pd.DataFrame(
        {
            "lead_id": ["L1", "L2", "L3", "L4"],
            "created_at": pd.to_datetime(
                ["2024-03-01", "2024-01-01", "2024-02-01", "2024-01-01"], utc=True
            ),
        }
    )
    clusters = pd.DataFrame({"lead_id": ["L1", "L2", "L3"], "cluster_id": ["L1", "L1", "L1"]})
    pairs = pd.DataFrame(
        {"lead_id_l": ["L1", "L2"], "lead_id_r": ["L2", "L3"], "match_probability": [0.97, 0.93]}
    )

    # when the survivors are picked
    table = survivors(leads, clusters, pairs).set_index("lead_id")

    # then L2, the oldest, survives for all three; L4 survives alone with no probability
    assert table["survivor_lead_id"].tolist() == ["L2", "L2", "L2", "L4"]
    assert table.loc["L2", "match_probability"] == pytest.approx(0.97)
    assert table.loc["L3", "match_probability"] == pytest.approx(0.93)
    assert pd.isna(table.loc["L4", "match_probability"])
    assert table.loc["L4", "cluster_id"] == "L4"


def test_exact_email_puts_records_without_an_email_on_their_own() -> None:
    leads = pd.DataFrame({"lead_id": ["a", "b", "c", "d"], "email_hash": ["x", "x", None, None]})
    clusters = exact_email_clusters(leads)
    assert clusters["a"] == clusters["b"] and clusters["c"] != clusters["d"]


def test_company_key_drops_case_punctuation_and_legal_forms() -> None:
    keys = company_key(pd.Series(["Apex Analytics 12 Inc.", "apex analytics 12", "Ltd", None]))
    assert keys.iloc[0] == keys.iloc[1] == "apexanalytics12"
    assert pd.isna(keys.iloc[2]) and pd.isna(keys.iloc[3])


def test_leads_without_identity_columns_are_a_clear_error() -> None:
    leads = pd.DataFrame({"lead_id": ["a"], "email_hash": ["x"]})
    with pytest.raises(DedupeInputError, match="first_name and last_name"):
        check_identities(leads)


@pytest.mark.parametrize(
    ("mode", "first", "company"),
    [("names", "Katherine", "Apex"), ("phonetic", "K0RN", "Apex"), ("hashes", None, None)],
)
def test_the_privacy_setting_keeps_names_as_text_codes_or_not_at_all(mode, first, company) -> None:
    # given a lead as an export gives it, with a raw e-mail and phone
    raw = pd.DataFrame(
        {
            "first_name": ["Katherine"],
            "company_name": ["Apex"],
            "email": [" Kate@Apex.example "],
            "phone": ["+1 (415) 555-0100"],
        }
    )

    # when protected
    kept = protect_leads(raw, mode)

    # then e-mail and phone are only ever kept as SHA-256 of their normal form
    assert "email" not in kept and "phone" not in kept
    assert kept["email_hash"].iloc[0] == hashlib.sha256(b"kate@apex.example").hexdigest()
    assert kept["phone_hash"].iloc[0] == hashlib.sha256(b"4155550100").hexdigest()
    assert kept["phone_hash"].iloc[0] == phone_hashes(pd.Series(["415.555.0100"])).iloc[0]
    # and names as the mode says
    assert (None if pd.isna(kept["first_name"].iloc[0]) else kept["first_name"].iloc[0]) == first
    assert (None if pd.isna(kept["company_name"].iloc[0]) else kept["company_name"].iloc[0]) == (
        company
    )


def test_a_typo_is_one_edit_after_the_first_letter() -> None:
    rng = np.random.default_rng(1)
    words = [typo("Katherine", rng) for _ in range(50)]
    assert all(w[0] == "K" for w in words)
    assert all(jellyfish.damerau_levenshtein_distance(w, "Katherine") <= 1 for w in words)
    assert sum(w != "Katherine" for w in words) >= 45  # a replaced letter may draw itself


def test_without_duplicates_the_simulation_is_byte_for_byte_as_before(
    plain, tmp_path: Path
) -> None:
    # given the same seed with duplicate_leads=0 given explicitly
    zero = simulate(replace(BASE, duplicate_leads=0.0))
    for result, folder in ((plain, tmp_path / "a"), (zero, tmp_path / "b")):
        write_simulation(result, folder)

    # then every file has the same bytes, and there is no duplicate truth
    files = {
        name: {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
        for name, folder in (("a", tmp_path / "a"), ("b", tmp_path / "b"))
    }
    assert files["a"] == files["b"]
    assert Path("truth/duplicate_leads.parquet") not in files["a"]
    assert "first_name" not in plain.tables["leads"].columns


def test_planted_duplicates_are_later_records_of_one_person_with_part_of_their_touches(
    plain, duplicated
) -> None:
    leads = duplicated.tables["leads"]
    truth = duplicated.duplicates
    n = len(plain.tables["leads"])
    # every lead has a person; the originals are their own person, the extras someone else's
    assert truth["lead_id"].tolist() == leads["lead_id"].tolist()
    assert (truth["lead_id"][:n] == truth["person_id"][:n]).all()
    extra = truth.iloc[n:]
    assert 0.15 * n < len(extra) < 0.3 * n and (extra["lead_id"] != extra["person_id"]).all()
    created = leads.set_index("lead_id")["created_at"]
    assert (created[extra["lead_id"]].to_numpy() >= created[extra["person_id"]].to_numpy()).all()
    # the original records are the plain simulation's, with identities and a real e-mail's hash
    assert leads["lead_id"][:n].tolist() == plain.tables["leads"]["lead_id"].tolist()
    assert leads["first_name"].notna().all() and leads["last_name"].notna().all()
    # touches: the same ones, some now on the duplicate, never before it existed
    before, after = plain.tables["interactions"], duplicated.tables["interactions"]
    assert after["interaction_id"].tolist() == before["interaction_id"].tolist()
    moved = after["lead_id"].ne(before["lead_id"]).fillna(False).to_numpy()
    assert moved.sum() > 0
    assert after["lead_id"][moved].isin(extra["lead_id"]).all()
    assert (
        after["occurred_at"][moved].to_numpy() >= created[after["lead_id"][moved]].to_numpy()
    ).all()
    person = truth.set_index("lead_id")["person_id"]
    assert (person[after["lead_id"][moved]].to_numpy() == before["lead_id"][moved].to_numpy()).all()
    # and the tables still keep the contract
    validate_tables(duplicated.tables, now=pd.Timestamp("2100-01-01", tz="UTC"))
    assert (
        email_hashes(pd.Series(["X@Y.example"])).iloc[0]
        == hashlib.sha256(b"x@y.example").hexdigest()
    )


def test_merging_moves_a_duplicates_touches_to_its_survivor_at_their_own_times() -> None:
    from features.merging import merge_duplicate_leads

    # given L2, a later duplicate of L1 that converted, with a touch of its own; L3 on its own
    stamp = pd.Timestamp
    leads = pd.DataFrame(
        {
            "lead_id": pd.array(["L1", "L2", "L3"], dtype="string[pyarrow]"),
            "created_at": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-01-15"], utc=True),
            "converted_at": pd.to_datetime([None, "2024-03-01", None], utc=True),
        }
    )
    touches = pd.DataFrame(
        {
            "lead_id": pd.array(["L1", "L2", "L3", None], dtype="string[pyarrow]"),
            "occurred_at": pd.to_datetime(
                ["2024-01-02", "2024-02-10", "2024-01-20", "2024-01-05"], utc=True
            ),
        }
    )
    duplicates = pd.DataFrame(
        {"lead_id": ["L1", "L2", "L3"], "survivor_lead_id": ["L1", "L1", "L3"]}
    )

    # when merged
    merged = merge_duplicate_leads({"leads": leads, "interactions": touches}, duplicates)

    # then L2 is gone, its touch is L1's at its own time, and L1 converts when L2 did
    assert merged["leads"]["lead_id"].tolist() == ["L1", "L3"]
    assert merged["leads"]["converted_at"].iloc[0] == stamp("2024-03-01", tz="UTC")
    assert merged["leads"]["created_at"].iloc[0] == stamp("2024-01-01", tz="UTC")
    moved = merged["interactions"]
    assert moved["lead_id"].tolist()[:3] == ["L1", "L1", "L3"] and pd.isna(moved["lead_id"][3])
    assert moved["occurred_at"].equals(touches["occurred_at"])
    assert moved["lead_id"].dtype == touches["lead_id"].dtype
    # and the input is left as it was
    assert touches["lead_id"].tolist()[1] == "L2" and len(leads) == 3


def test_the_write_back_names_each_duplicates_surviving_lead() -> None:
    from crm.settings import DEFAULT_CRM_FIELDS
    from crm_intel.runs import writeback_frame

    # given a batch where L2 (a duplicate of L1) was scored and L3 (a duplicate merged away) not
    frame = pd.DataFrame(
        {
            "lead_id": ["L1", "L2"],
            "status": ["scored", "scored"],
            "lifecycle": ["open", "open"],
            "Lead_Score__c": [71, 12],
            "Score_Reasons__c": ["+ Viewed pricing", "− Few touches"],
        }
    )
    duplicate_of = pd.Series({"L2": "L1", "L3": "L1"})

    # when the CRM's update is made
    rows = writeback_frame(frame, "lead_conversion", DEFAULT_CRM_FIELDS, None, duplicate_of)

    # then each duplicate names its survivor in Duplicate_Of__c, the survivor none, and the
    # unscored duplicate gets a row with emptied scores saying why
    by_id = rows.set_index("lead_id")
    assert by_id["Duplicate_Of__c"].fillna("").to_dict() == {"L1": "", "L2": "L1", "L3": "L1"}
    assert pd.isna(by_id.loc["L3", "Lead_Score__c"])
    assert by_id.loc["L3", "Score_Reasons__c"].startswith("Not scored: a duplicate of L1")
