"""Duplicate leads: which lead records are one person, found by probabilistic record linkage.

The model is Splink's (Fellegi–Sunter), run on DuckDB by default. The backend is chosen in one
place, :func:`linkage_backend`: when crm-intel's Spark engine lands, ``SparkAPI`` plugs in there
and nothing else changes. Per pair of records it compares:

* first and last name together (exact, swapped order, Jaro–Winkler ≥ 0.92 and ≥ 0.88 on both,
  one of them exact), on the text or on the phonetic codes, as the privacy setting keeps them;
* ``email_hash`` and ``phone_hash`` exactly (they are SHA-256 digests: exact is all they allow);
* the company as the lead gave it, lower-cased with legal forms (Inc., Ltd, LLC, …) dropped;
* the country and the job title (lower-cased), exactly.

Only pairs that share a blocking key are compared (same e-mail, same phone, same full name, same
name swapped, a first or last name in either field at the same company), so the work grows with
the records, not with their square. ``u`` probabilities come from random pairs (seeded, so the
same data gives the same model), ``m`` probabilities from expectation maximisation on blocking
rules that each leave some comparisons free (same full name; same e-mail, phone, company), and the
share of matching pairs from the exact e-mail and phone matches.

Records whose pairwise match probability is at least ``dedupe_match_probability`` are joined
into clusters (connected components). Each cluster's **surviving record** is its oldest
(earliest ``created_at``, then the smallest ``lead_id``): the record the person's history starts
on, which the CRM's merge keeps; the others are its duplicates (``Duplicate_Of__c``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from crm.io import atomic_file, write_parquet

Progress = Callable[[str], None]

NAME_COLUMNS = ("first_name", "last_name")
IDENTITY_COLUMNS = ("first_name", "last_name", "company_name", "email_hash", "phone_hash")
# beside identity: where the lead is and what they do, which a person's records mostly share
CONTEXT_COLUMNS = ("country", "job_title")
READ_COLUMNS = ("lead_id", "created_at", *CONTEXT_COLUMNS, *IDENTITY_COLUMNS)
OUTPUT_COLUMNS = ("lead_id", "cluster_id", "survivor_lead_id", "match_probability")
LEGAL_FORMS = r"\b(inc|incorporated|ltd|limited|llc|plc|gmbh|corp|corporation|co|group|sa|ag)\b"
U_SAMPLE_PAIRS = 2_000_000  # random pairs behind the u probabilities
EM_SAMPLE_PAIRS = 2_000_000  # blocked pairs per expectation-maximisation session, at most
EM_PROBE_RECORDS = 200_000  # records sampled to count an EM session's blocked pairs first
# the share of true duplicate pairs the exact e-mail and phone rules are taken to find, for the
# prior share of matching pairs (Splink's direct estimate)
EXACT_RULES_RECALL = 0.6
STEPS = 6


class DedupeInputError(ValueError):
    """Lead data that duplicates cannot be found in (no identity columns, no leads)."""


def _noop(_: str) -> None:
    return None


def linkage_backend(engine: str = "duckdb") -> Any:
    """The database Splink runs on: the one place the backend is chosen.

    ``duckdb`` (in process, the default). When crm-intel's Spark engine exists, its engine name
    returns ``splink.SparkAPI(spark_session=...)`` here.
    """
    if engine == "duckdb":
        from splink import DuckDBAPI

        return DuckDBAPI()
    raise ValueError(f"linkage engine {engine!r}: only duckdb is available")


def read_lead_identities(raw_dir: Path) -> pd.DataFrame:
    """The leads' id, creation time, country and identity columns, as far as the file has them.

    Raises:
        DedupeInputError: no leads file, or none of the identity columns holds a value.
    """
    path = Path(raw_dir) / "leads.parquet"
    if not path.exists():
        raise DedupeInputError(
            f"{path} does not exist: run `crm-intel simulate` or `crm-intel import` first"
        )
    present = set(pq.read_schema(path).names)
    columns = [c for c in READ_COLUMNS if c in present]
    leads = pd.read_parquet(path, columns=columns)
    check_identities(leads)
    return leads


def usable_identity_columns(leads: pd.DataFrame) -> list[str]:
    """The identity columns that hold at least one value."""
    return [c for c in IDENTITY_COLUMNS if c in leads.columns and leads[c].notna().any()]


def check_identities(leads: pd.DataFrame) -> None:
    """Raise :class:`DedupeInputError` unless there is something to link on.

    ``email_hash`` alone is not enough: exact e-mail matching needs no model (``--json`` reports
    it beside ours).
    """
    if len(leads) == 0:
        raise DedupeInputError("the leads table is empty: no duplicates to find")
    usable = [c for c in usable_identity_columns(leads) if c != "email_hash"]
    if not usable:
        raise DedupeInputError(
            "the leads have no identity columns to link on: finding duplicates needs "
            "first_name and last_name (or company_name, phone_hash) beside email_hash. Import "
            "them from Salesforce (FirstName, LastName, Company, Phone) or HubSpot (First Name, "
            "Last Name, Company name, Phone Number), give them in a contract folder's "
            "leads file, or simulate with `crm-intel simulate --duplicate-leads 0.1`; the "
            "privacy setting CRM_INTEL_LEAD_IDENTITY=hashes drops names on import"
        )


def company_key(values: pd.Series) -> pd.Series:
    """A company name as compared: lower-case letters and digits, legal forms dropped."""
    text = values.astype("string").str.lower().str.replace(LEGAL_FORMS, " ", regex=True)
    key = text.str.replace(r"[^a-z0-9]+", "", regex=True)
    return key.mask(key == "")


def linkage_input(leads: pd.DataFrame) -> pd.DataFrame:
    """The columns Splink compares, as plain text (missing as null)."""
    out = pd.DataFrame({"lead_id": leads["lead_id"].astype(str).to_numpy()})
    for column in (*CONTEXT_COLUMNS, *NAME_COLUMNS, "email_hash", "phone_hash"):
        if column in leads.columns:
            values = leads[column].astype("string").str.strip()
            if column in (*NAME_COLUMNS, "job_title"):
                values = values.str.lower()
            out[column] = values.mask(values == "").astype(object).to_numpy()
    if "company_name" in leads.columns:
        out["company_key"] = company_key(leads["company_name"]).astype(object).to_numpy()
    return out.where(out.notna(), None)


def linkage_settings(columns: list[str]) -> Any:
    """Splink's settings for the columns at hand (module docstring)."""
    import splink.comparison_library as cl
    from splink import SettingsCreator, block_on

    comparisons: list[Any] = []
    rules: list[Any] = []
    has_names = all(c in columns for c in NAME_COLUMNS)
    if has_names:
        comparisons.append(name_comparison())
        rules += [
            block_on("first_name", "last_name"),
            "l.first_name = r.last_name and l.last_name = r.first_name",
        ]
    if "email_hash" in columns:
        comparisons.append(cl.ExactMatch("email_hash"))
        rules.append(block_on("email_hash"))
    if "phone_hash" in columns:
        comparisons.append(cl.ExactMatch("phone_hash"))
        rules.append(block_on("phone_hash"))
    if "company_key" in columns:
        comparisons.append(cl.ExactMatch("company_key"))
        if has_names:
            rules += [
                block_on("last_name", "company_key"),
                block_on("first_name", "company_key"),
                "l.first_name = r.last_name and l.company_key = r.company_key",
                "l.last_name = r.first_name and l.company_key = r.company_key",
            ]
    for column in CONTEXT_COLUMNS:
        if column in columns:
            comparisons.append(cl.ExactMatch(column))
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="lead_id",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=rules,
        retain_matching_columns=False,
    )


def name_comparison() -> Any:
    """First and last name together, from the strongest evidence down: both exact, swapped,
    both close, swapped and close (a typo in a swapped name), both roughly alike, one exact."""
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    first, last = NAME_COLUMNS
    crossed = (
        f"jaro_winkler_similarity({first}_l, {last}_r) >= 0.88 "
        f"AND jaro_winkler_similarity({last}_l, {first}_r) >= 0.88"
    )
    return cl.CustomComparison(
        [
            cll.And(cll.NullLevel(first), cll.NullLevel(last)),
            cll.And(cll.ExactMatchLevel(first), cll.ExactMatchLevel(last)),
            cll.ColumnsReversedLevel(first, last, symmetrical=True),
            cll.And(cll.JaroWinklerLevel(first, 0.92), cll.JaroWinklerLevel(last, 0.92)),
            cll.CustomLevel(crossed, "swapped, Jaro-Winkler >= 0.88", base_dialect_str="duckdb"),
            cll.And(cll.JaroWinklerLevel(first, 0.8), cll.JaroWinklerLevel(last, 0.8)),
            cll.ExactMatchLevel(last),
            cll.ExactMatchLevel(first),
            cll.ElseLevel(),
        ],
        output_column_name="name",
    )


@dataclass(frozen=True)
class DuplicateLeads:
    """One row per lead record (:data:`OUTPUT_COLUMNS`) and the run's figures."""

    table: pd.DataFrame
    pairs_scored: int

    @property
    def duplicates(self) -> int:
        """Records that are another record's duplicate."""
        return int((self.table["lead_id"] != self.table["survivor_lead_id"]).sum())

    @property
    def clusters(self) -> int:
        """People with more than one record."""
        table = self.table
        return int(table.loc[table["lead_id"] != table["survivor_lead_id"], "cluster_id"].nunique())


def find_duplicate_leads(
    leads: pd.DataFrame,
    match_probability: float = 0.9,
    seed: int = 42,
    engine: str = "duckdb",
    progress: Progress = _noop,
) -> DuplicateLeads:
    """Cluster lead records into people and name each cluster's surviving record.

    Args:
        leads: ``lead_id``, ``created_at`` and the identity columns (:func:`read_lead_identities`).
        match_probability: pairs at or above it are the same person.
        seed: Splink's random sampling of pairs, for a reproducible model.
        engine: the linkage backend (:func:`linkage_backend`).
        progress: called with the name of each step as it starts (:data:`STEPS` of them).

    Raises:
        DedupeInputError: nothing to link on.
    """
    from splink import Linker, block_on

    check_identities(leads)
    frame = linkage_input(leads)
    columns = [c for c in frame.columns if c != "lead_id" and frame[c].notna().any()]
    frame = frame[["lead_id", *columns]]
    settings = linkage_settings(columns)
    db = linkage_backend(engine)
    # Splink's own notes (levels EM could not train, which then keep their defaults) are not
    # the user's to act on; errors still show
    linker = Linker(db.register(frame), settings, log_level=logging.ERROR)
    progress("share of matching pairs")
    shared = [
        c
        for c in ("email_hash", "phone_hash")
        if c in columns and frame[c].dropna().duplicated().any()
    ]
    exact: list[Any] = [block_on(c) for c in shared]
    if exact:  # else no pair to estimate from: Splink's default prior stays
        linker.training.estimate_probability_two_random_records_match(exact, EXACT_RULES_RECALL)
    progress("u probabilities (random pairs)")
    linker.training.estimate_u_using_random_sampling(max_pairs=U_SAMPLE_PAIRS, seed=seed)
    progress("m probabilities (expectation maximisation)")
    probe = min(1.0, EM_PROBE_RECORDS / len(frame))
    for rule in _training_rules(frame, columns):
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule,
            estimate_without_term_frequencies=True,
            max_pairs=EM_SAMPLE_PAIRS,
            record_sample_proportion=probe,
        )
    progress("scoring pairs")
    predicted = linker.inference.predict(threshold_match_probability=match_probability)
    pairs = predicted.as_pandas_dataframe()[["lead_id_l", "lead_id_r", "match_probability"]]
    progress("clustering")
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predicted, match_probability
    ).as_pandas_dataframe()[["lead_id", "cluster_id"]]
    progress("surviving records")
    table = survivors(leads, clusters, pairs)
    return DuplicateLeads(table, len(pairs))


def _training_rules(frame: pd.DataFrame, columns: list[str]) -> list[Any]:
    """Blocking rules for expectation maximisation, each leaving out what another estimates;
    only those that make some pair (Splink refuses an empty one)."""
    from splink import block_on

    def pairs(keys: list[str]) -> bool:
        return all(c in columns for c in keys) and bool(frame[keys].dropna().duplicated().any())

    rules = []
    if pairs(list(NAME_COLUMNS)):
        rules.append(block_on(*NAME_COLUMNS))
    for column in ("email_hash", "phone_hash", "company_key"):
        if pairs([column]):
            rules.append(block_on(column))
    return rules


def survivors(leads: pd.DataFrame, clusters: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Each record's cluster, the cluster's surviving (oldest) record and the best probability
    linking the record to the rest of its cluster (missing for a record on its own)."""
    ids = leads["lead_id"].astype(str)
    cluster_of = pd.Series(clusters["cluster_id"].astype(str).to_numpy(), index=clusters["lead_id"])
    frame = pd.DataFrame(
        {
            "lead_id": ids.to_numpy(),
            "cluster_id": ids.map(cluster_of).fillna(ids).to_numpy(),
            "created_at": leads["created_at"].to_numpy(),
        }
    )
    oldest = frame.sort_values(["created_at", "lead_id"], kind="stable").drop_duplicates(
        "cluster_id"
    )
    survivor_of = pd.Series(oldest["lead_id"].to_numpy(), index=oldest["cluster_id"].to_numpy())
    frame["survivor_lead_id"] = frame["cluster_id"].map(survivor_of)
    ends = pd.concat(
        [
            pairs[["lead_id_l", "match_probability"]].set_axis(["lead_id", "p"], axis=1),
            pairs[["lead_id_r", "match_probability"]].set_axis(["lead_id", "p"], axis=1),
        ]
    )
    ends = ends[ends["lead_id"].map(cluster_of).notna()]
    best = ends.groupby("lead_id")["p"].max()
    size = frame.groupby("cluster_id")["lead_id"].transform("size")
    frame["match_probability"] = frame["lead_id"].map(best).where(size > 1)
    out = frame[list(OUTPUT_COLUMNS)].astype(
        {c: "string[pyarrow]" for c in OUTPUT_COLUMNS[:3]} | {"match_probability": "float64"}
    )
    return out.sort_values("lead_id", kind="stable").reset_index(drop=True)


def exact_email_clusters(leads: pd.DataFrame) -> pd.Series:
    """The baseline: records with the same ``email_hash`` are one person (else each its own)."""
    ids = leads["lead_id"].astype(str)
    email = leads["email_hash"].astype("string") if "email_hash" in leads else None
    if email is None:
        return pd.Series(ids.to_numpy(), index=ids.to_numpy())
    return pd.Series(email.fillna(ids).to_numpy(), index=ids.to_numpy())


def pairwise_scores(predicted: pd.Series, truth: pd.Series) -> dict[str, Any]:
    """Pairwise precision and recall of a clustering against the true one.

    Args:
        predicted: lead id → predicted cluster.
        truth: lead id → true person (the same ids).

    Returns:
        ``precision``, ``recall`` and the pair counts behind them, over all pairs of records
        (a pair is predicted when both are in one predicted cluster, true when one person).
    """
    both = pd.DataFrame({"p": predicted, "t": truth.reindex(predicted.index)})
    if both["t"].isna().any():
        raise ValueError("the truth lacks some of the predicted lead ids")

    def pairs(sizes: pd.Series) -> int:
        n = sizes.to_numpy(dtype=np.int64)
        return int((n * (n - 1) // 2).sum())

    predicted_pairs = pairs(both.groupby("p").size())
    true_pairs = pairs(both.groupby("t").size())
    found = pairs(both.groupby(["p", "t"]).size())
    return {
        "precision": found / predicted_pairs if predicted_pairs else 1.0,
        "recall": found / true_pairs if true_pairs else 1.0,
        "true_pairs": true_pairs,
        "predicted_pairs": predicted_pairs,
        "correct_pairs": found,
    }


def write_duplicate_leads(table: pd.DataFrame, out: Path) -> Path:
    """Write the table to ``out`` atomically: Parquet for ``.parquet``, else CSV."""
    out = Path(out)
    with atomic_file(out) as tmp:
        if out.suffix == ".parquet":
            write_parquet(table, tmp)
        else:
            table.to_csv(tmp, index=False)
    return out


def read_duplicate_leads(path: Path) -> pd.DataFrame:
    """A table :func:`write_duplicate_leads` wrote (CSV or Parquet), ids as text."""
    path = Path(path)
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=str)
    missing = [c for c in OUTPUT_COLUMNS[:3] if c not in frame.columns]
    if missing:
        raise DedupeInputError(
            f"{path} lacks column(s) {missing}: give the output of `crm-intel dedupe leads`"
        )
    return frame.astype({c: "string[pyarrow]" for c in OUTPUT_COLUMNS[:3]})


def duplicate_of(path: Path) -> pd.Series | None:
    """Duplicate lead id → its surviving lead, from a dedupe output (the CRM write-back's
    ``Duplicate_Of__c``), or None when there is no such file."""
    if not Path(path).exists():
        return None
    table = read_duplicate_leads(path)
    linked = table[table["lead_id"] != table["survivor_lead_id"]]
    return pd.Series(
        linked["survivor_lead_id"].astype(str).to_numpy(),
        index=linked["lead_id"].astype(str).to_numpy(),
    )
