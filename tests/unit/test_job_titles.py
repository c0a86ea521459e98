"""Job titles → rank and department: the rules, the labelled sets and the simulator's titles."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crm.contract import SENIORITIES
from features.job_titles import DEPARTMENTS, RANKS, TitleReading, read_title, read_titles
from simulator import SimulationConfig, simulate
from simulator.leads import FUNCTIONS

pytestmark = pytest.mark.unit

TITLES = Path(__file__).resolve().parents[1] / "fixtures" / "job_titles"
BAR = 0.90  # the acceptance bar (issue 15), fixed before the sets were measured


def _labelled(name: str) -> pd.DataFrame:
    # keep "N/A", "none" and "null" as the titles they are, not as missing values
    return pd.read_csv(TITLES / name, keep_default_na=False, dtype=str)


def _accuracy(rows: pd.DataFrame) -> tuple[float, float]:
    read = read_titles(rows["title"])
    rank = float((read["title_rank"] == rows["rank"]).mean())
    department = float((read["title_department"] == rows["department"]).mean())
    return rank, department


@pytest.mark.parametrize(
    ("title", "rank", "department"),
    [
        # abbreviations
        ("VP Sales EMEA", "vp", "sales"),
        ("SVP, Global Marketing", "vp", "marketing"),
        ("Sr. Acct Exec", "individual", "sales"),
        ("Mktg Mgr", "manager", "marketing"),
        ("Dir. Finance & Admin", "director", "finance"),
        ("Head of RevOps", "director", "sales"),
        ("SDR", "individual", "sales"),
        ("CSM", "manager", "customer_success"),
        ("DevOps Engineer", "individual", "engineering"),
        ("HRBP", "individual", "hr"),
        ("c.f.o.", "c_level", "finance"),
        ("VP of R&D", "vp", "engineering"),
        # languages
        ("Leiterin Marketing", "director", "marketing"),
        ("Vertriebsleiter", "director", "sales"),
        ("Geschäftsführer", "c_level", "executive"),
        ("Directrice Marketing", "director", "marketing"),
        ("Responsable des Achats", "manager", "operations"),
        ("Gerente de Ventas", "manager", "sales"),
        ("Jefa de Recursos Humanos", "manager", "hr"),
        ("Diretora Financeira", "director", "finance"),
        ("Hoofd Marketing", "director", "marketing"),
        ("Amministratore Delegato", "c_level", "executive"),
        # precedence
        ("Assistant to the VP of Sales", "individual", "sales"),
        ("Executive Assistant to the CEO", "individual", "executive"),
        ("Assistant Manager", "manager", "unknown"),
        ("Head of Product", "director", "product"),
        ("Co-Founder & CTO", "c_level", "engineering"),
        ("Founder", "c_level", "executive"),
        ("President", "c_level", "executive"),
        ("Vice President", "vp", "unknown"),
        ("EVP & CFO", "c_level", "finance"),
        ("Sales & Marketing Director", "director", "sales"),
        ("Marketing Lead", "manager", "marketing"),
        ("Lead Developer", "individual", "engineering"),
        ("Product Owner", "individual", "product"),
        ("Product Marketing Manager", "manager", "marketing"),
        ("Accounts Payable Clerk", "individual", "finance"),
        ("Directeur des Ventes France", "director", "sales"),
        # misspellings, matched by edit distance
        ("Maketing Manger", "manager", "marketing"),
        ("Dirctor of Sales", "director", "sales"),
        ("Cheif Executive Officer", "c_level", "executive"),
        ("Salse Mangaer", "manager", "sales"),
        ("Vise President Sales", "vp", "sales"),
        # noise
        ("Sales", "unknown", "sales"),
        ("student", "unknown", "other"),
        ("N/A", "unknown", "unknown"),
        ("asdf", "unknown", "unknown"),
        ("-", "unknown", "unknown"),
    ],
)
def test_a_title_reads_as_its_rank_and_department(title, rank, department):
    assert read_title(title) == TitleReading(rank, department)


@pytest.mark.parametrize("title", [None, "", "   ", float("nan")])
def test_no_title_reads_as_unknown(title):
    assert read_title(title) == TitleReading("unknown", "unknown")


def test_every_reading_is_in_the_documented_vocabularies():
    # Given titles of every kind in the labelled set
    rows = _labelled("labelled.csv")
    # When they are read
    read = read_titles(rows["title"])
    # Then ranks are the contract's seniorities (or unknown) and departments the documented list
    assert set(RANKS) == set(SENIORITIES)
    assert set(read["title_rank"]) <= {*SENIORITIES, "unknown"}
    assert set(read["title_department"]) <= {*DEPARTMENTS, "unknown"}


def test_read_titles_reads_each_distinct_title_once_and_keeps_missing_missing():
    # Given repeated, missing and blank titles on a custom index
    titles = pd.Series(
        ["VP Sales EMEA", None, "VP Sales EMEA", " ", "Accountant"],
        index=[10, 11, 12, 13, 14],
        dtype="string",
    )
    # When read together
    read = read_titles(titles)
    # Then each row has its title's reading, and no title stays missing (not "unknown")
    assert list(read.index) == [10, 11, 12, 13, 14]
    assert read["title_rank"].tolist() == ["vp", pd.NA, "vp", pd.NA, "individual"]
    assert read["title_department"].tolist() == ["sales", pd.NA, "sales", pd.NA, "finance"]
    assert str(read["title_rank"].dtype) == "string"


def test_the_labelled_split_is_the_seeded_hash_of_the_title():
    rows = _labelled("labelled.csv")
    first_byte = rows["title"].map(
        lambda t: hashlib.sha256(f"job-titles-v1|{t}".encode()).digest()[0]
    )
    expected = np.where(first_byte % 2 == 0, "dev", "holdout")
    assert (rows["split"] == expected).all()
    assert len(rows) >= 240 and rows["title"].str.lower().is_unique


@pytest.mark.parametrize("split", ["holdout", "all"])
def test_rank_and_department_are_right_on_the_labelled_titles(split):
    # Given the labelled titles (rules developed on the dev rows only)
    rows = _labelled("labelled.csv")
    rows = rows if split == "all" else rows[rows["split"] == split]
    # When read, then rank and department each reach the bar
    rank, department = _accuracy(rows)
    assert rank >= BAR and department >= BAR, (split, rank, department)


def test_rank_and_department_are_right_on_titles_written_after_the_rules():
    # Given titles written and labelled after the rules were frozen (measured once, not tuned)
    rank, department = _accuracy(_labelled("fresh.csv"))
    assert rank >= BAR and department >= BAR, (rank, department)


def test_the_simulators_titles_read_as_its_true_seniority_and_function():
    # Given a small seeded simulation and the seniority and function it drew for each lead
    sim = simulate(SimulationConfig(seed=5, accounts=60, leads=800, months=3))
    assert sim.lead_process is not None
    truth = sim.lead_process.leads
    titles = sim.tables["leads"]["job_title"]
    shown = titles.notna().to_numpy()
    # When the titles are read
    read = read_titles(titles)
    # Then every title's rank is the true seniority and its department the true function
    true_rank = np.array(SENIORITIES)[truth["seniority"]][shown]
    true_department = np.array([f.lower() for f in FUNCTIONS])[truth["function"]][shown]
    assert shown.sum() > 600
    assert (read["title_rank"].to_numpy()[shown] == true_rank).mean() == 1.0
    assert (read["title_department"].to_numpy()[shown] == true_department).mean() == 1.0
