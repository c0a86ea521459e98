"""Job titles → rank and department: a rule-based normaliser with fuzzy matching of misspellings.

A CRM's ``job_title`` is free text ("VP Sales EMEA", "Sr. Acct Exec", "Leiter Vertrieb",
"Maketing Manger"). :func:`read_title` reads one title as

* **rank**: the contract's seniorities (``individual``, ``manager``, ``director``, ``vp``,
  ``c_level``) or ``unknown`` when no word names one;
* **department**: one of :data:`features.job_title_words.DEPARTMENTS` (``sales``, ``marketing``,
  ``customer_success``, ``product``, ``engineering``, ``it``, ``operations``, ``finance``, ``hr``,
  ``legal``, ``executive``, ``other``) or ``unknown``.

The rules, in the order they apply (the word tables are in :mod:`features.job_title_words`):

1. **Tokenise**: accents dropped (NFKD), lower case; dots removed (``c.f.o.`` → ``cfo``,
   ``Sr.`` → ``sr``); an ``&`` between letters joins them (``R&D`` → ``rd``, ``FP&A`` → ``fpa``),
   any other ``&`` or ``+`` is "and"; every other non-alphanumeric character separates words.
2. **Each word** is resolved to known words, first rule that applies: an abbreviation expands
   (``vp`` → ``vice president``, ``csm`` → ``customer success manager``); a known word stays; an
   inflected form becomes its known stem (German feminine ``-in``, Romance feminine ``-a`` /
   ``-e``, plural ``-s``: ``Leiterin``, ``Directora``, ``Chargée``); a German or Dutch compound
   splits before its rank ending (``Vertriebsleiter`` → ``vertrieb leiter``); otherwise a word of
   four letters or more is **fuzzy-matched** (rapidfuzz, optimal string alignment distance, which
   counts a swap of neighbours as one edit) to the nearest known word within one edit (words of
   up to seven letters) or two (longer ones), among equals the one of the same length:
   ``Maketing`` → ``marketing``, ``Cheif`` → ``chief`` (not ``chef``). A word that matches
   nothing is dropped.
3. **Phrases** are read left to right, the longest first (up to four words): ``vice president``
   is a VP, ``product owner`` an individual in product, ``accounts payable`` finance, ``head of``
   a director, ``assistant to`` marks an assistant.
4. **Rank**: an assistant ("Assistant to the VP", "Executive Assistant") is ``individual``;
   otherwise the highest rank named (``EVP & CFO`` is ``c_level``); *lead* counts as a manager
   only when no other word names a rank (``Marketing Lead`` vs ``Lead Developer``).
5. **Department**: the first function named (``Sales & Marketing Director`` is sales);
   ``executive`` (CEO, founder, owner, …) and ``other`` only when no function is named, so
   ``Co-Founder & CTO`` is engineering and ``Founder`` is executive.

Titles repeat a lot in a CRM, so :func:`read_titles` reads each distinct title once and maps the
result back; a million leads with a few thousand distinct titles take well under a second.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

import pandas as pd
from rapidfuzz import process
from rapidfuzz.distance import OSA

from features.job_title_words import (
    ABBREVIATIONS,
    COMPOUND_ENDINGS,
    DEPARTMENT_WORDS,
    DEPARTMENTS,
    NEUTRAL_WORDS,
    PHRASES,
    RANK_WORDS,
    RANKS,
    UNKNOWN,
    Meaning,
)

MAX_PHRASE_WORDS = 4
MIN_FUZZY_LETTERS = 4
LONG_WORD_LETTERS = 8  # from this length a word may be two edits from the word meant
FALLBACK_DEPARTMENTS = ("executive", "other")  # only when no function is named
LEAD = Meaning("manager", weak_rank=True)


class TitleReading(NamedTuple):
    """A title's rank and department."""

    rank: str
    department: str


NO_READING = TitleReading(UNKNOWN, UNKNOWN)


def _lexicon() -> dict[str, Meaning]:
    """Single word → its meaning: rank and department tables merged."""
    rank_of = {word: rank for rank, words in RANK_WORDS.items() for word in words}
    department_of: dict[str, str] = {}
    for department, words in DEPARTMENT_WORDS.items():
        for word in words:
            department_of.setdefault(word, department)
    lexicon = {
        word: Meaning(rank_of.get(word), department_of.get(word))
        for word in rank_of.keys() | department_of.keys()
    }
    lexicon["lead"] = LEAD
    return lexicon


LEXICON: dict[str, Meaning] = _lexicon()
PHRASE_WORDS: frozenset[str] = frozenset(w for phrase in PHRASES for w in phrase.split())
KNOWN_WORDS: frozenset[str] = frozenset(LEXICON) | NEUTRAL_WORDS | PHRASE_WORDS
FUZZY_CHOICES: tuple[str, ...] = tuple(sorted(w for w in KNOWN_WORDS if len(w) >= 4))
RANK_ORDER: dict[str, int] = {rank: i for i, rank in enumerate(RANKS)}

_JOINING_AMPERSAND = re.compile(r"(?<=[a-z0-9])&(?=[a-z0-9])")
_WORD = re.compile(r"[a-z0-9]+")


def words_of(title: str) -> list[str]:
    """The title's words as typed: accents dropped, lower case (rule 1)."""
    text = unicodedata.normalize("NFKD", title)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).lower()
    text = text.replace(".", "")
    text = _JOINING_AMPERSAND.sub("", text).replace("&", " and ").replace("+", " and ")
    return _WORD.findall(text)


def _stem(word: str) -> str | None:
    """The known stem of an inflected word (feminine or plural), if any."""
    candidates = []
    if word.endswith("in"):
        candidates.append(word[:-2])
    if word.endswith("a"):
        candidates += [word[:-1], word[:-1] + "o", word[:-1] + "e"]
    if word.endswith(("e", "s")):
        candidates.append(word[:-1])
    return next((c for c in candidates if len(c) >= 3 and c in KNOWN_WORDS), None)


def _split_compound(word: str) -> list[str] | None:
    """A German or Dutch compound split before its rank ending: ``vertriebsleiter``."""
    bases = [word, word[:-2]] if word.endswith("in") else [word]
    for base in bases:
        for ending in COMPOUND_ENDINGS:
            if base.endswith(ending) and len(base) > len(ending) + 1:
                prefix = base[: -len(ending)]
                for head in (prefix, prefix[:-1] if prefix.endswith("s") else ""):
                    if head in KNOWN_WORDS:
                        return [head, ending]
                return [*resolve_word(prefix), ending]
    return None


def _nearest_word(word: str) -> str | None:
    """The known word within the allowed edits of a misspelled one (rule 2's fuzzy match)."""
    if len(word) < MIN_FUZZY_LETTERS:
        return None
    max_edits = 2 if len(word) >= LONG_WORD_LETTERS else 1
    near = process.extract(
        word, FUZZY_CHOICES, scorer=OSA.distance, score_cutoff=max_edits, limit=None
    )
    if not near:
        return None
    # fewest edits; among equals the word of the same length (a swap or a slip, not a drop)
    best = min(near, key=lambda m: (m[1], abs(len(m[0]) - len(word)), m[0]))
    return str(best[0])


@lru_cache(maxsize=65_536)
def resolve_word(word: str) -> tuple[str, ...]:
    """A typed word → the known words it stands for (rule 2); empty when it matches nothing."""
    if word in ABBREVIATIONS:
        return tuple(ABBREVIATIONS[word].split())
    if word in KNOWN_WORDS:
        return (word,)
    stem = _stem(word)
    if stem is not None:
        return (stem,)
    parts = _split_compound(word)
    if parts is not None:
        return tuple(parts)
    nearest = _nearest_word(word)
    if nearest is not None:
        return resolve_word(nearest)
    return ()


def meanings(words: Iterable[str]) -> list[Meaning]:
    """The meanings of known words, phrases read first, the longest first (rule 3)."""
    words = list(words)
    found: list[Meaning] = []
    i = 0
    while i < len(words):
        for n in range(min(MAX_PHRASE_WORDS, len(words) - i), 1, -1):
            phrase = " ".join(words[i : i + n])
            if phrase in PHRASES:
                found.append(PHRASES[phrase])
                i += n
                break
        else:
            meaning = LEXICON.get(words[i])
            if meaning is not None:
                found.append(meaning)
            i += 1
    return found


def rank_of(found: list[Meaning]) -> str:
    """Rule 4: assistants are individuals; else the highest rank named; *lead* as a last resort."""
    if any(m.assists for m in found):
        return "individual"
    strong = [m.rank for m in found if m.rank is not None and not m.weak_rank]
    if strong:
        return max(strong, key=RANK_ORDER.__getitem__)
    return "manager" if any(m.weak_rank for m in found) else UNKNOWN


def department_of(found: list[Meaning]) -> str:
    """Rule 5: the first function named; executive, then other, when none is."""
    named = [m.department for m in found if m.department is not None]
    functions = [d for d in named if d not in FALLBACK_DEPARTMENTS]
    if functions:
        return functions[0]
    return next((d for d in FALLBACK_DEPARTMENTS if d in named), UNKNOWN)


@lru_cache(maxsize=65_536)
def _read(title: str) -> TitleReading:
    words = [known for word in words_of(title) for known in resolve_word(word)]
    found = meanings(words)
    return TitleReading(rank_of(found), department_of(found))


def read_title(title: str | None) -> TitleReading:
    """A job title's rank and department; ``unknown`` for what the title does not say.

    >>> read_title("VP Sales EMEA")
    TitleReading(rank='vp', department='sales')
    >>> read_title("Assistant to the CFO")
    TitleReading(rank='individual', department='finance')
    >>> read_title(None)
    TitleReading(rank='unknown', department='unknown')
    """
    if title is None or not isinstance(title, str) or not title.strip():
        return NO_READING
    return _read(title)


def read_titles(titles: pd.Series) -> pd.DataFrame:
    """Every title's rank and department, each distinct title read once.

    Args:
        titles: job titles; missing values allowed.

    Returns:
        ``title_rank`` and ``title_department`` (pandas ``string``), on ``titles``' index; both
        missing where the title is missing or blank (no title is not an unreadable title).
    """
    codes, uniques = pd.factorize(titles.astype("string"), use_na_sentinel=True)
    readings = [read_title(str(u)) for u in uniques]
    blank = [not str(u).strip() for u in uniques]
    ranks = [None if b else r.rank for r, b in zip(readings, blank, strict=True)]
    departments = [None if b else r.department for r, b in zip(readings, blank, strict=True)]
    rank_values = pd.array(ranks, dtype="string").take(codes, allow_fill=True)
    department_values = pd.array(departments, dtype="string").take(codes, allow_fill=True)
    return pd.DataFrame(
        {"title_rank": rank_values, "title_department": department_values}, index=titles.index
    )


__all__ = ["DEPARTMENTS", "RANKS", "TitleReading", "read_title", "read_titles"]
