"""A lead's identity as crm-intel keeps it: what is stored as text and what only as a hash.

Finding duplicate leads (:mod:`features.duplicates`) compares people by name, e-mail, phone and
company. E-mail and phone are only ever compared exactly, so they are kept as SHA-256 digests of
their normal form (:func:`email_hashes`, :func:`phone_hashes`): two records with the same address
still match, and the address itself never reaches the data directory. Names are matched fuzzily
(typos, initials), which needs the text or at least a phonetic form; how much of them is kept is
the privacy setting ``lead_identity`` (``CRM_INTEL_LEAD_IDENTITY``), applied on import by
:func:`protect_leads`:

* ``names`` (default): first name, last name and company as text; e-mail and phone hashed.
* ``phonetic``: first and last name reduced to their Metaphone codes (``Katherine`` → ``K0RN``),
  which still match most typos and spelling variants but no longer spell the name; company as
  text; e-mail and phone hashed.
* ``hashes``: names and company dropped; only the e-mail and phone digests are kept, so
  duplicates are found by exact e-mail or phone only.
"""

from __future__ import annotations

import hashlib
from typing import Literal, get_args

import jellyfish
import pandas as pd

LeadIdentity = Literal["names", "phonetic", "hashes"]
LEAD_IDENTITY_MODES: tuple[str, ...] = get_args(LeadIdentity)
NAME_COLUMNS: tuple[str, ...] = ("first_name", "last_name")
PHONE_DIGITS = 10  # the national number: "+1 (415) 555-0100" and "415.555.0100" hash alike
MIN_PHONE_DIGITS = 7  # fewer is an extension or a typo, not a number to match on


def _blank_to_na(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip()
    return text.mask(text == "")


def normal_email(values: pd.Series) -> pd.Series:
    """E-mail addresses trimmed and lower-cased; blank → missing."""
    return _blank_to_na(values).str.lower()


def normal_phone(values: pd.Series) -> pd.Series:
    """Phone numbers as their last :data:`PHONE_DIGITS` digits (country code and punctuation
    dropped); fewer than :data:`MIN_PHONE_DIGITS` digits → missing."""
    digits = _blank_to_na(values).str.replace(r"\D", "", regex=True)
    return digits.mask(digits.str.len() < MIN_PHONE_DIGITS).str[-PHONE_DIGITS:]


def sha256_hex(values: pd.Series) -> pd.Series:
    """SHA-256 hex digest of each value; missing stays missing."""
    return values.map(
        lambda v: pd.NA if pd.isna(v) else hashlib.sha256(str(v).encode()).hexdigest(),
        na_action="ignore",
    ).astype("string")


def email_hashes(values: pd.Series) -> pd.Series:
    """The contract's ``email_hash``: SHA-256 of the trimmed, lower-cased address."""
    return sha256_hex(normal_email(values))


def phone_hashes(values: pd.Series) -> pd.Series:
    """The contract's ``phone_hash``: SHA-256 of the number's last 10 digits."""
    return sha256_hex(normal_phone(values))


def phonetic(values: pd.Series) -> pd.Series:
    """Each word of each name as its Metaphone code, joined by spaces; missing stays missing."""
    return (
        _blank_to_na(values)
        .map(
            lambda v: " ".join(jellyfish.metaphone(word) for word in str(v).split()),
            na_action="ignore",
        )
        .astype("string")
    )


def protect_leads(leads: pd.DataFrame, mode: str = "names") -> pd.DataFrame:
    """``leads`` as the privacy setting ``mode`` keeps them (module docstring).

    Raw ``email`` and ``phone`` columns, where an export gives them, become ``email_hash`` and
    ``phone_hash`` (an existing hash wins) and are dropped. Returns a new frame.

    Raises:
        ValueError: ``mode`` is not one of :data:`LEAD_IDENTITY_MODES`.
    """
    if mode not in LEAD_IDENTITY_MODES:
        raise ValueError(f"lead_identity {mode!r}: use one of {', '.join(LEAD_IDENTITY_MODES)}")
    out = leads.copy()
    for raw, hashed, digest in (
        ("email", "email_hash", email_hashes),
        ("phone", "phone_hash", phone_hashes),
    ):
        if raw in out.columns:
            made = digest(out[raw])
            out[hashed] = _blank_to_na(out[hashed]).fillna(made) if hashed in out.columns else made
            out = out.drop(columns=raw)
    names = [c for c in NAME_COLUMNS if c in out.columns]
    if mode == "phonetic":
        for column in names:
            out[column] = phonetic(out[column])
    elif mode == "hashes":
        for column in [*names, *(["company_name"] if "company_name" in out.columns else [])]:
            out[column] = pd.Series(pd.NA, index=out.index, dtype="string")
    return out
