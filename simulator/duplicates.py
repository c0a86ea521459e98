"""Duplicate leads, planted (opt-in: ``simulate --duplicate-leads RATE``), with who is who.

Real CRMs hold one person as several lead records: a webinar platform creates a second record
under a personal address, a rep types the name again with a typo or with first and last name
swapped, a list import brings the person in once more. Each record then collects part of the
person's history, which is what makes merging duplicates matter for scoring.

With the option, :func:`plant_duplicate_leads`:

* gives every lead an identity (:func:`draw_identities`): a first and last name, a work e-mail at
  their account's domain (a personal one for leads with no account), a phone for most, and their
  account's name as company; ``email_hash`` becomes the SHA-256 of that e-mail;
* picks ``RATE`` of the leads and adds one more record of each (a fifth of them two), made by
  :func:`draw_duplicates`: typos, swapped name order, a personal instead of the work e-mail, the
  phone written another way or missing, the company spelt another way or missing, another lead
  source, created later than the original while the person is still active;
* moves about half of the original's touches made after the duplicate was created onto the
  duplicate, at their own timestamps (the person's conversion stays on the original record);
* returns the truth: each lead record with the ``person_id`` (the original's ``lead_id``) it is
  one of (``truth/duplicate_leads.parquet``, :func:`read_duplicate_truth`).

Its randomness comes from its own stream (:data:`DUPLICATE_STREAM`), so without the option not one
draw of the simulation changes and the same seed gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from crm.contract import DTYPES, TABLES
from crm.identity import email_hashes, phone_hashes

DUPLICATE_STREAM = 1515  # the seed's extra stream for identities and duplicates
TRUTH_FILE = "duplicate_leads.parquet"


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


FIRST_NAMES = _words(
    "James Mary John Patricia Robert Jennifer Michael Linda David Elizabeth William Barbara "
    "Richard Susan Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy "
    "Matthew Betty Anthony Margaret Mark Sandra Donald Ashley Steven Kimberly Paul Emily Andrew "
    "Donna Joshua Michelle Kenneth Carol Kevin Amanda Brian Melissa George Deborah Timothy "
    "Stephanie Ronald Rebecca Edward Sharon Jason Laura Jeffrey Cynthia Ryan Kathleen Jacob Amy "
    "Gary Angela Nicholas Shirley Eric Anna Jonathan Brenda Stephen Pamela Larry Emma Justin "
    "Nicole Scott Helen Brandon Samantha Benjamin Katherine Samuel Christine Gregory Debra "
    "Alexander Rachel Frank Carolyn Patrick Janet Raymond Catherine Jack Maria Dennis Heather "
    "Jerry Diane Tyler Ruth Aaron Julie Jose Olivia Adam Joyce Nathan Virginia Henry Victoria "
    "Douglas Kelly Zachary Lauren Peter Christina Kyle Joan Noah Evelyn Ethan Judith Jeremy "
    "Megan Walter Andrea Christian Cheryl Keith Hannah Roger Jacqueline Terry Martha Austin "
    "Gloria Sean Teresa Gerald Ann Carl Sara Harold Madison Dylan Frances Arthur Kathryn "
    "Lawrence Janice Jordan Jean Jesse Abigail Bryan Alice Billy Judy Bruce Sophia Gabriel "
    "Grace Joe Denise Logan Amber Alan Doris Juan Marilyn Albert Danielle Willie Beverly Elijah "
    "Isabella Wayne Theresa Randy Diana Vincent Natalie Mason Brittany Roy Charlotte Ralph Marie"
)
LAST_HEADS = _words(
    "Ander Black Bran Cald Carr Dal Darn Ell Fair Fitz Gar Hale Har Hol Kings Lang Mar Mor Nor "
    "Oak Pem Ral Red Rut Sand Stan Thorn Wal Wes Whit Ash Brook Crom Dun Eas Fen Gil Hart Ing "
    "Lind"
)
LAST_TAILS = _words(
    "ton ley man son well wood field ford by more ridge worth dale holm stead croft wick hurst "
    "ham er ett ing low ner sey ston ell ard win shaw"
)
LAST_NAMES = tuple(head + tail for head in LAST_HEADS for tail in LAST_TAILS)
PERSONAL_DOMAINS = ("mail.example", "inbox.example", "post.example", "webmail.example")
COMPANY_SUFFIXES = (" Inc.", " Ltd", " LLC", " Group")
LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))

PHONE_P = 0.6  # an original record's phone is known
TWO_DUPLICATES_P = 0.2  # of the people with a duplicate, the share with two
TYPO_P = 0.35  # a duplicate's first or last name has one typo
SWAP_P = 0.15  # a duplicate has first and last name swapped
EMAIL_P = (0.45, 0.40, 0.15)  # a duplicate's e-mail: the same work one, a personal one, none
PHONE_DUP_P = (
    0.35,
    0.15,
    0.50,
)  # a duplicate's phone: the same (written another way), another, none
COMPANY_P = (0.60, 0.25, 0.15)  # a duplicate's company: the same, spelt another way, none
MOVED_TOUCH_P = 0.5  # an original's touch after the duplicate's creation goes to the duplicate
FIRST_ACTIVE, LAST_ACTIVE = 0.05, 0.8  # the duplicate's creation, as a share of the active span


def duplicate_rng(seed: int) -> np.random.Generator:
    """The random stream of identities and duplicates, apart from the simulation's own."""
    return np.random.default_rng(np.random.SeedSequence([seed, DUPLICATE_STREAM]))


def _domain(company: pd.Series) -> pd.Series:
    slug = company.str.lower().str.replace(r"[^a-z0-9]", "", regex=True)
    return slug + ".example"


def _phone_text(digits: np.ndarray, style: np.ndarray) -> pd.Series:
    """10-digit numbers written one of two ways: ``+1 415 555 0100`` or ``(415) 555-0100``."""
    text = pd.Series(digits.astype(np.int64)).astype(str).str.zfill(10)
    spaced = "+1 " + text.str[:3] + " " + text.str[3:6] + " " + text.str[6:]
    dashed = "(" + text.str[:3] + ") " + text.str[3:6] + "-" + text.str[6:]
    return spaced.where(style == 0, dashed)


def draw_identities(rng: np.random.Generator, company: pd.Series) -> pd.DataFrame:
    """One identity per person: names, e-mail, phone (raw text) and company.

    Args:
        company: each person's company name, missing for people with no account (they get a
            personal e-mail).
    """
    n = len(company)
    company = company.astype("string").reset_index(drop=True)
    first = pd.Series(np.array(FIRST_NAMES)[rng.integers(0, len(FIRST_NAMES), n)])
    last = pd.Series(np.array(LAST_NAMES)[rng.integers(0, len(LAST_NAMES), n)])
    personal = _personal_email(rng, first, last)
    work = first.str.lower() + "." + last.str.lower() + "@" + _domain(company)
    digits = rng.integers(2_000_000_000, 9_999_999_999, n)
    phone = _phone_text(digits, rng.integers(0, 2, n)).where(rng.random(n) < PHONE_P)
    return pd.DataFrame(
        {
            "first_name": first,
            "last_name": last,
            "company_name": company,
            "email": work.where(company.notna(), personal).astype("string"),
            "phone": phone.astype("string"),
            "phone_digits": np.where(phone.notna(), digits, -1),
        }
    )


def _personal_email(rng: np.random.Generator, first: pd.Series, last: pd.Series) -> pd.Series:
    n = len(first)
    number = pd.Series(rng.integers(1, 100, n)).astype(str)
    domain = pd.Series(np.array(PERSONAL_DOMAINS)[rng.integers(0, len(PERSONAL_DOMAINS), n)])
    return first.str.lower() + last.str.lower() + number + "@" + domain


def typo(word: str, rng: np.random.Generator) -> str:
    """``word`` with one typing error after its first letter: a letter replaced, dropped,
    doubled, or two swapped."""
    if len(word) < 3:
        return word
    i = int(rng.integers(1, len(word) - 1))
    kind = int(rng.integers(0, 4))
    if kind == 0:
        return word[:i] + str(rng.choice(LETTERS)) + word[i + 1 :]
    if kind == 1:
        return word[:i] + word[i + 1 :]
    if kind == 2:
        return word[:i] + word[i] + word[i:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def draw_duplicates(
    rng: np.random.Generator, people: pd.DataFrame, rate: float
) -> tuple[np.ndarray, pd.DataFrame]:
    """Extra records of ``rate`` of ``people`` (rows of :func:`draw_identities`).

    Returns:
        for each duplicate record, the row of the person it is, and its identity as typed
        (same columns as ``people``).
    """
    n = len(people)
    chosen = np.flatnonzero(rng.random(n) < rate)
    twice = chosen[rng.random(len(chosen)) < TWO_DUPLICATES_P]
    person = np.sort(np.concatenate([chosen, twice]))
    m = len(person)
    first = people["first_name"].to_numpy()[person].astype(object)
    last = people["last_name"].to_numpy()[person].astype(object)
    typos = np.flatnonzero(rng.random(m) < TYPO_P)
    in_first = rng.random(len(typos)) < 0.5
    for k, on_first in zip(typos, in_first, strict=True):
        if on_first:
            first[k] = typo(first[k], rng)
        else:
            last[k] = typo(last[k], rng)
    swap = rng.random(m) < SWAP_P
    first, last = np.where(swap, last, first), np.where(swap, first, last)

    email_kind = rng.choice(3, size=m, p=EMAIL_P)
    personal = _personal_email(rng, pd.Series(first).str.lower(), pd.Series(last).str.lower())
    email = pd.Series(people["email"].to_numpy()[person], dtype="string")
    email = email.where(email_kind == 0, personal).where(email_kind < 2)

    phone_kind = rng.choice(3, size=m, p=PHONE_DUP_P)
    own = people["phone_digits"].to_numpy()[person]
    other = rng.integers(2_000_000_000, 9_999_999_999, m)
    digits = np.where((phone_kind == 0) & (own >= 0), own, other)
    # the same number written the other way round (+1 … vs (…) …-…), which normalising undoes
    phone = _phone_text(digits, rng.integers(0, 2, m)).where(
        ((phone_kind == 0) & (own >= 0)) | (phone_kind == 1)
    )

    company_kind = rng.choice(3, size=m, p=COMPANY_P)
    company = pd.Series(people["company_name"].to_numpy()[person], dtype="string")
    suffix = pd.Series(np.array(COMPANY_SUFFIXES)[rng.integers(0, len(COMPANY_SUFFIXES), m)])
    company = company.where(company_kind == 0, company + suffix).where(company_kind < 2)
    typed = pd.DataFrame(
        {
            "first_name": pd.Series(first, dtype="string"),
            "last_name": pd.Series(last, dtype="string"),
            "company_name": company,
            "email": email,
            "phone": phone.astype("string"),
            "phone_digits": np.where(phone.notna(), digits, -1),
        }
    )
    return person, typed


def plant_duplicate_leads(
    tables: dict[str, pd.DataFrame], rate: float, seed: int, end: pd.Timestamp, lifetime_weeks: int
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The contract tables with identities and planted duplicate leads, and the truth of who is
    who (module docstring). ``end`` is the simulation's end; ``lifetime_weeks`` how long a lead
    stays open. The input tables are not changed."""
    rng = duplicate_rng(seed)
    leads, accounts = tables["leads"], tables["accounts"]
    n = len(leads)
    company_of = pd.Series(accounts["name"].to_numpy(), index=accounts["account_id"].to_numpy())
    company = leads["account_id"].map(company_of).astype("string")
    people = draw_identities(rng, company)
    person, typed = draw_duplicates(rng, people, rate)
    m = len(person)

    day_ns = 86_400_000_000_000
    created = _ns(leads["created_at"])[person]
    converted = _ns(leads["converted_at"])[person]
    end_ns = end.value
    lifetime_ns = lifetime_weeks * 7 * day_ns
    active_end = np.minimum(np.where(converted >= 0, converted, created + lifetime_ns), end_ns)
    share = rng.uniform(FIRST_ACTIVE, LAST_ACTIVE, m)
    dup_created = created + ((active_end - created) * share).astype(np.int64)
    source = leads["source"].to_numpy()[person]
    sources = np.array(sorted(set(leads["source"].dropna())))
    other_source = sources[rng.integers(0, len(sources), m)]
    same = other_source == source
    other_source[same] = sources[(np.searchsorted(sources, source[same]) + 1) % len(sources)]
    still_open = dup_created + lifetime_ns > end_ns
    status = np.where(still_open, "open", np.where(rng.random(m) < 0.3, "disqualified", "recycled"))

    width = len(str(leads["lead_id"].iloc[0])) - 1
    dup_ids = [f"L{i:0{width}d}" for i in range(n + 1, n + m + 1)]
    original = leads.assign(
        email_hash=email_hashes(people["email"]).to_numpy(),
        first_name=people["first_name"].to_numpy(),
        last_name=people["last_name"].to_numpy(),
        company_name=people["company_name"].to_numpy(),
        phone_hash=phone_hashes(people["phone"]).to_numpy(),
    )
    copies = original.iloc[person].reset_index(drop=True)
    copies = copies.assign(
        lead_id=dup_ids,
        source=other_source,
        created_at=pd.to_datetime(dup_created, utc=True).as_unit("ns"),
        purchase_timeframe=pd.NA,
        email_hash=email_hashes(typed["email"]).to_numpy(),
        first_name=typed["first_name"].to_numpy(),
        last_name=typed["last_name"].to_numpy(),
        company_name=typed["company_name"].to_numpy(),
        phone_hash=phone_hashes(typed["phone"]).to_numpy(),
        status=status,
        converted_at=pd.Series(pd.NaT, index=copies.index, dtype=DTYPES["timestamp"]),
    )
    original, copies = (_contract_types(frame) for frame in (original, copies))
    new_leads = pd.concat([original, copies], ignore_index=True)
    out = dict(tables)
    out["leads"] = new_leads
    out["interactions"] = _move_touches(
        tables["interactions"], leads, person, dup_ids, dup_created, rng
    )
    truth = pd.DataFrame(
        {
            "lead_id": new_leads["lead_id"],
            "person_id": pd.concat(
                [leads["lead_id"], leads["lead_id"].iloc[person]], ignore_index=True
            ).astype(DTYPES["id"]),
        }
    )
    return out, truth


def _contract_types(leads: pd.DataFrame) -> pd.DataFrame:
    spec = TABLES["leads"]
    return leads.astype({c: DTYPES[spec.column(c).kind] for c in leads.columns})


def _ns(stamps: pd.Series) -> np.ndarray:
    """UTC timestamps as nanoseconds since the epoch, -1 where missing."""
    values = stamps.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[ns]")
    return np.where(np.isnat(values), -1, values.astype(np.int64))


def _move_touches(
    interactions: pd.DataFrame,
    leads: pd.DataFrame,
    person: np.ndarray,
    dup_ids: list[str],
    dup_created: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Each duplicate takes about half of its person's touches made after it was created
    (:data:`MOVED_TOUCH_P`); with two duplicates, the later one takes from what is left."""
    lead_ids = interactions["lead_id"].astype(object).to_numpy()
    occurred = _ns(interactions["occurred_at"])
    original_ids = leads["lead_id"].astype(object).to_numpy()[person]
    rows_of: dict[str, list[int]] = {}
    wanted = set(original_ids)
    for row in np.flatnonzero(pd.Series(lead_ids).isin(wanted).to_numpy()):
        rows_of.setdefault(lead_ids[row], []).append(int(row))
    new_ids = lead_ids.copy()
    for k in np.argsort(dup_created, kind="stable"):
        rows = np.array(rows_of.get(original_ids[k], []), dtype=np.int64)
        if not len(rows):
            continue
        after = rows[(occurred[rows] >= dup_created[k]) & (new_ids[rows] == original_ids[k])]
        moved = after[rng.random(len(after)) < MOVED_TOUCH_P]
        new_ids[moved] = dup_ids[k]
    return interactions.assign(
        lead_id=pd.Series(new_ids, index=interactions.index, dtype=DTYPES["id"])
    )


def read_duplicate_truth(truth_dir: Path | str) -> pd.DataFrame | None:
    """Which lead records are one person (``lead_id``, ``person_id``), or None when the data was
    not simulated with ``--duplicate-leads``."""
    path = Path(truth_dir) / TRUTH_FILE
    return pd.read_parquet(path) if path.exists() else None


def synthetic_leads(
    people: int, rate: float, seed: int, countries: tuple[str, ...] = ("US", "GB", "DE", "FR")
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Lead records of ``people`` people, ``rate`` of them with duplicates, without a simulation:
    identities and duplicates drawn exactly as :func:`plant_duplicate_leads` draws them, with a
    creation time, country and job title each; for timing the linkage at scale.

    Returns:
        the leads (``lead_id``, ``created_at``, ``country``, ``job_title`` and the identity
        columns, hashed as the contract keeps them) and the truth (``lead_id``, ``person_id``).
    """
    rng = duplicate_rng(seed)
    account = rng.integers(0, max(1, people // 10), people)
    company = pd.Series([f"Company {a + 1}" for a in account], dtype="string")
    company = company.mask(rng.random(people) < 0.12)
    identities = draw_identities(rng, company)
    person, typed = draw_duplicates(rng, identities, rate)
    both = pd.concat([identities, typed], ignore_index=True)
    rows = np.concatenate([np.arange(people), person])
    year_ns = 365 * 86_400_000_000_000
    created = rng.integers(0, year_ns, people)
    start = pd.Timestamp("2024-01-01", tz="UTC").value
    created_ns = start + np.concatenate(
        [created, created[person] + rng.integers(0, year_ns, len(person))]
    )
    titles = np.array(
        [f"{s} {f}" for s in ("Head of", "Manager,", "VP") for f in ("Sales", "IT", "Finance")]
    )
    title = titles[rng.integers(0, len(titles), people)][rows]
    width = len(str(len(rows)))
    ids = pd.Series([f"L{i:0{width}d}" for i in range(1, len(rows) + 1)], dtype=DTYPES["id"])
    leads = pd.DataFrame(
        {
            "lead_id": ids,
            "created_at": pd.to_datetime(created_ns, utc=True),
            "country": np.array(countries)[rng.integers(0, len(countries), people)][rows],
            "job_title": title,
            "first_name": both["first_name"],
            "last_name": both["last_name"],
            "company_name": both["company_name"],
            "email_hash": email_hashes(both["email"]),
            "phone_hash": phone_hashes(both["phone"]),
        }
    )
    truth = pd.DataFrame({"lead_id": ids, "person_id": ids.to_numpy()[rows]})
    return _contract_types(leads), truth.astype(DTYPES["id"])
