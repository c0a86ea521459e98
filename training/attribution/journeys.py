"""Journeys: ordered touches per lead (or per aggregated path), ending in a conversion or not.

A :class:`Journeys` holds every journey's touches in compressed arrays (``offsets`` delimit each
journey's slice of the touch arrays), so that the models work on a million journeys with numpy
instead of Python loops. Two sources build one:

* :func:`journeys_from_interactions`, from the CRM's ``interactions``, ``leads`` and
  ``opportunities`` tables: one journey per lead, the lead's touches within ``lookback_days``
  before its conversion (or before its last touch when it did not convert), revenue from the
  lead's won opportunities;
* :func:`read_paths` / :func:`paths_to_journeys`, from aggregated path files such as
  ChannelAttribution's example data: one row per distinct path, ``" > "``-joined channels,
  conversions, conversion value and non-converting count. A row stands for ``conversions +
  nulls`` journeys, so the models use the counts as weights.

Rules for doubtful input (never a silent wrong number):

* a touch whose channel is not in ``channels`` raises :class:`UnknownChannelError`;
* a negative amount or path value raises :class:`NegativeValueError`;
* an unreadable path file (missing column, blank path, empty step such as ``"a >  > b"``,
  non-numeric or negative counts, value without conversions) raises :class:`MalformedPathsError`
  naming the row;
* nothing to attribute (no journey with a touch) raises :class:`EmptyJourneysError`;
* conversions without any touch in the lookback window cannot be credited to a channel: they are
  left out and counted in :attr:`Journeys.dropped` (``conversions_without_touch``,
  ``value_without_touch``), which the CLI and the report show beside the totals;
* revenue of won opportunities on leads that never converted is not credited and is counted in
  ``dropped["revenue_without_conversion"]``; touches after a lead's conversion are not part of
  its journey (``dropped["touches_after_conversion"]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from crm.contract import CHANNELS
from training.attribution.errors import (
    AttributionError,
    EmptyJourneysError,
    MalformedPathsError,
    NegativeValueError,
    UnknownChannelError,
)

DEFAULT_LOOKBACK_DAYS = 90
NO_CONTENT = "(no content)"
NAT = np.iinfo(np.int64).min  # numpy's NaT as int64 nanoseconds

# Accepted column names of an aggregated path file, first the ChannelAttribution spelling.
PATH_COLUMNS: dict[str, tuple[str, ...]] = {
    "path": ("path",),
    "conversions": ("total_conversions", "conversions"),
    "value": ("total_conversion_value", "conversion_value", "value"),
    "nulls": ("total_null", "nulls", "null"),
}


@dataclass(frozen=True, eq=False)
class Journeys:
    """Journeys in compressed arrays: journey ``i`` owns touches ``offsets[i]:offsets[i + 1]``.

    Attributes:
        journey_id: one id per journey (the lead id, or the path's row label).
        offsets: ``n_journeys + 1`` increasing touch offsets, starting at 0.
        channel: per touch, index into ``channels``.
        channels: channel names.
        conversions: per journey, conversions (0 or 1 for a lead; a count for a path row).
        value: per journey, revenue of its conversions.
        nulls: per journey, journeys that did not convert (1 - conversions for a lead).
        content: per touch, index into ``contents``, -1 when the touch carried no content.
        contents: content ids.
        touched_at: per touch, time of the touch (UTC, naive ``datetime64[ns]``), or None.
        ended_at: per journey, conversion time or last touch (UTC), or None.
        converted_at: per journey, conversion time, NaT when it did not convert, or None.
        dropped: counts of what was left out and why (see the module docstring).
        source: where the journeys came from, for messages.
        ends_at_conversion: a converting journey stops at its conversion and the others at
            their last touch (journeys built from the CRM's interactions), so how a journey ends
            depends on its outcome.
    """

    journey_id: np.ndarray
    offsets: np.ndarray
    channel: np.ndarray
    channels: tuple[str, ...]
    conversions: np.ndarray
    value: np.ndarray
    nulls: np.ndarray
    content: np.ndarray | None = None
    contents: tuple[str, ...] = ()
    touched_at: np.ndarray | None = None
    ended_at: np.ndarray | None = None
    converted_at: np.ndarray | None = None
    dropped: Mapping[str, float] = field(default_factory=dict)
    source: str = ""
    ends_at_conversion: bool = False

    @property
    def n_journeys(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_touches(self) -> int:
        return int(self.offsets[-1])

    @property
    def has_time(self) -> bool:
        return self.touched_at is not None and self.ended_at is not None

    @property
    def has_content(self) -> bool:
        return self.content is not None and len(self.contents) > 0

    @cached_property
    def lengths(self) -> np.ndarray:
        """Touches per journey."""
        return np.diff(self.offsets)

    @cached_property
    def touch_journey(self) -> np.ndarray:
        """Per touch, the index of its journey."""
        return np.repeat(np.arange(self.n_journeys, dtype=np.int64), self.lengths)

    @cached_property
    def position(self) -> np.ndarray:
        """Per touch, its 0-based position within its journey."""
        return np.arange(self.n_touches, dtype=np.int64) - self.offsets[:-1][self.touch_journey]

    @cached_property
    def first_touch(self) -> np.ndarray:
        """Per journey, the index of its first touch."""
        return self.offsets[:-1]

    @cached_property
    def last_touch(self) -> np.ndarray:
        """Per journey, the index of its last touch."""
        return self.offsets[1:] - 1

    @property
    def total_conversions(self) -> float:
        return float(self.conversions.sum())

    @property
    def total_value(self) -> float:
        return float(self.value.sum())

    @property
    def total_journeys(self) -> float:
        """Journeys counted with their weights (conversions + nulls per row)."""
        return float(self.conversions.sum() + self.nulls.sum())

    def select(self, keep: np.ndarray) -> Journeys:
        """The journeys where ``keep`` (a boolean per journey), with their touches."""
        touches = np.repeat(keep, self.lengths)

        def per_touch(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[touches]

        def per_journey(values: np.ndarray | None) -> np.ndarray | None:
            return None if values is None else values[keep]

        return replace(
            self,
            journey_id=self.journey_id[keep],
            offsets=np.concatenate([[0], np.cumsum(self.lengths[keep])]).astype(self.offsets.dtype),
            channel=self.channel[touches],
            conversions=self.conversions[keep],
            value=self.value[keep],
            nulls=self.nulls[keep],
            content=per_touch(self.content),
            touched_at=per_touch(self.touched_at),
            ended_at=per_journey(self.ended_at),
            converted_at=per_journey(self.converted_at),
        )

    def paths(self, sep: str = " > ") -> pd.Series:
        """Per journey, its channels joined by ``sep``."""
        names = np.asarray(self.channels, dtype=object)[self.channel]
        split = np.split(names, self.offsets[1:-1])
        return pd.Series([sep.join(p) for p in split], dtype="string")

    def touches_frame(self) -> pd.DataFrame:
        """One row per touch: journey id, position, channel, content id and time."""
        frame = pd.DataFrame(
            {
                "journey_id": self.journey_id[self.touch_journey],
                "position": self.position,
                "channel": pd.Categorical.from_codes(self.channel, categories=list(self.channels)),
            }
        )
        if self.has_content:
            assert self.content is not None
            ids = np.asarray(self.contents + (None,), dtype=object)
            frame["content_id"] = pd.array(ids[self.content], dtype="string")
        if self.touched_at is not None:
            frame["touched_at"] = pd.to_datetime(self.touched_at).tz_localize("UTC")
        return frame

    def journeys_frame(self) -> pd.DataFrame:
        """One row per journey: id, length, conversions, value, nulls and times when known."""
        frame = pd.DataFrame(
            {
                "journey_id": self.journey_id,
                "length": self.lengths,
                "conversions": self.conversions,
                "value": self.value,
                "nulls": self.nulls,
            }
        )
        if self.touched_at is not None:
            frame["first_touch_at"] = pd.to_datetime(self.touched_at[self.first_touch]).tz_localize(
                "UTC"
            )
        if self.ended_at is not None:
            frame["ended_at"] = pd.to_datetime(self.ended_at).tz_localize("UTC")
        if self.converted_at is not None:
            frame["converted_at"] = pd.to_datetime(self.converted_at).tz_localize("UTC")
        return frame


def _check_weights(
    conversions: np.ndarray,
    value: np.ndarray,
    nulls: np.ndarray,
    source: str,
    error: type[AttributionError],
) -> None:
    for name, values in (("conversions", conversions), ("nulls", nulls)):
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
            raise error(f"{source}, row {row}: {name} must be a count >= 0, got {values[row - 1]}")
    bad = ~np.isfinite(value)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise error(f"{source}, row {row}: value must be a number, got {value[row - 1]}")
    negative = value < 0
    if negative.any():
        row = int(np.flatnonzero(negative)[0]) + 1
        raise NegativeValueError(
            f"{source}, row {row}: conversion value {value[row - 1]} is negative "
            f"({int(negative.sum())} row(s) in all); refunds must be netted before attribution"
        )
    orphan = (value > 0) & (conversions == 0)
    if orphan.any():
        row = int(np.flatnonzero(orphan)[0]) + 1
        raise error(f"{source}, row {row}: value {value[row - 1]} without any conversion")


def _find_column(frame: pd.DataFrame, key: str, source: str, required: bool) -> str | None:
    lower = {str(c).strip().lower(): c for c in frame.columns}
    for name in PATH_COLUMNS[key]:
        if name in lower:
            return lower[name]
    if required:
        raise MalformedPathsError(
            f"{source}: no {key} column (expected one of {PATH_COLUMNS[key]}; "
            f"found {[str(c) for c in frame.columns]})"
        )
    return None


def _numeric(frame: pd.DataFrame, column: str | None, source: str) -> np.ndarray:
    if column is None:
        return np.zeros(len(frame))
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce")
    bad = values.isna() & raw.notna()
    if bad.any() or values.isna().any():
        row = int(np.flatnonzero((bad | values.isna()).to_numpy())[0]) + 1
        raise MalformedPathsError(
            f"{source}, row {row}: {column} {raw.iloc[row - 1]!r} is not a number"
        )
    return values.to_numpy(dtype=np.float64)


def paths_to_journeys(
    frame: pd.DataFrame,
    path_sep: str = ">",
    channels: Iterable[str] | None = None,
    source: str = "paths",
) -> Journeys:
    """Journeys from an aggregated path table (one row per path, with its counts).

    Args:
        frame: columns ``path`` and ``total_conversions`` (or ``conversions``), optionally
            ``total_conversion_value`` (or ``value``; 0 when absent) and ``total_null`` (or
            ``nulls``; 0 when absent, i.e. every journey converted).
        path_sep: separator between channels; spaces around it are ignored.
        channels: when given, the only channel names allowed.
        source: name of the input, for error messages.

    Returns:
        One journey per row, weighted by its counts; duplicate paths stay separate rows (the
        models sum them).

    Raises:
        MalformedPathsError: a missing column, blank path, empty step or bad count (naming the
            1-based data row).
        NegativeValueError: a negative conversion value.
        UnknownChannelError: a channel outside ``channels``.
        EmptyJourneysError: no rows.
    """
    path_col = _find_column(frame, "path", source, required=True)
    conv_col = _find_column(frame, "conversions", source, required=True)
    value_col = _find_column(frame, "value", source, required=False)
    null_col = _find_column(frame, "nulls", source, required=False)
    if len(frame) == 0:
        raise EmptyJourneysError(f"{source}: no paths")
    conversions = _numeric(frame, conv_col, source)
    value = _numeric(frame, value_col, source)
    nulls = _numeric(frame, null_col, source)
    _check_weights(conversions, value, nulls, source, MalformedPathsError)

    raw = frame[path_col]
    text = raw.astype("string").str.strip()
    blank = (text.isna() | (text == "")).to_numpy()
    if blank.any():
        row = int(np.flatnonzero(blank)[0]) + 1
        raise MalformedPathsError(f"{source}, row {row}: path is blank")
    # One regex pass over all paths joined, instead of one call per path.
    unit = "\x1f"
    joined = unit.join(text.to_numpy(dtype=object))
    joined = re.sub(rf"\s*{re.escape(path_sep)}\s*", path_sep, joined)
    normalised = joined.split(unit)
    lengths = np.fromiter(
        (p.count(path_sep) + 1 for p in normalised), dtype=np.int64, count=len(normalised)
    )
    tokens = np.asarray(joined.replace(unit, path_sep).split(path_sep), dtype=object)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    empty = tokens == ""
    if empty.any():
        row = int(np.searchsorted(offsets, np.flatnonzero(empty)[0], side="right"))
        raise MalformedPathsError(
            f"{source}, row {row}: path {raw.iloc[row - 1]!r} has an empty step"
        )
    codes, uniques = pd.factorize(tokens)
    names = tuple(str(u) for u in uniques)
    if channels is not None:
        allowed = set(channels)
        unknown = sorted(set(names) - allowed)
        if unknown:
            raise UnknownChannelError(
                f"{source}: unknown channel(s) {unknown}; allowed: {sorted(allowed)}"
            )
    return Journeys(
        journey_id=np.arange(1, len(frame) + 1).astype(str).astype(object),
        offsets=offsets,
        channel=codes.astype(np.int32),
        channels=names,
        conversions=conversions,
        value=value,
        nulls=nulls,
        source=source,
    )


def read_paths(
    file: Path | str,
    path_sep: str = ">",
    channels: Iterable[str] | None = None,
) -> Journeys:
    """Read an aggregated path file (CSV, ``;`` or ``,`` separated; or Parquet).

    See :func:`paths_to_journeys` for the columns and the errors.
    """
    file = Path(file)
    if not file.exists():
        raise FileNotFoundError(f"{file} does not exist")
    if file.suffix.lower() == ".parquet":
        frame = pd.read_parquet(file)
    else:
        with file.open(encoding="utf-8-sig") as handle:
            header = handle.readline()
        delimiter = ";" if header.count(";") > header.count(",") else ","
        try:
            frame = pd.read_csv(
                file,
                sep=delimiter,
                dtype={"path": "string"},
                encoding="utf-8-sig",
                keep_default_na=True,
            )
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise MalformedPathsError(f"{file}: cannot be read as a path table: {err}") from None
    return paths_to_journeys(frame, path_sep=path_sep, channels=channels, source=str(file))


def _encode(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (-1 when missing) and the distinct values, in order of appearance.

    Dictionary-encodes with Arrow, which is several times faster than hashing Python strings.
    """
    column = pa.Table.from_pandas(
        pd.DataFrame({"v": values.astype("string")}), preserve_index=False
    )["v"].combine_chunks()
    encoded = pc.dictionary_encode(column)
    codes = encoded.indices.fill_null(-1).to_numpy().astype(np.int64)
    return codes, np.asarray(encoded.dictionary.to_pylist(), dtype=object)


def _epoch_ns(values: pd.Series) -> np.ndarray:
    """UTC timestamps as int64 nanoseconds; missing values become NaT's integer."""
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).asi8


def journeys_from_interactions(
    interactions: pd.DataFrame,
    leads: pd.DataFrame,
    opportunities: pd.DataFrame,
    lookback_days: float = DEFAULT_LOOKBACK_DAYS,
    channels: Iterable[str] = CHANNELS,
) -> Journeys:
    """One journey per lead from the CRM tables.

    A lead's journey ends at its conversion (``leads.converted_at``) or, when it did not
    convert, at its last touch; it holds the lead's touches (``interactions`` with its
    ``lead_id``; account-level touches are not part of lead journeys) from ``lookback_days``
    before that end up to the end, ordered by time (ties keep the table's row order). A
    converted journey's value is the sum of ``amount`` over the lead's won opportunities.

    Args:
        interactions: contract table ``interactions``.
        leads: contract table ``leads`` (``lead_id``, ``converted_at``).
        opportunities: contract table ``opportunities`` (``lead_id``, ``amount``, ``won``).
        lookback_days: how far before the end of a journey touches count.
        channels: allowed channel names (the contract's by default).

    Returns:
        Journeys of every lead with at least one touch in its window, in order of first
        appearance in ``leads``; what was left out is counted in ``dropped``.

    Raises:
        UnknownChannelError: a lead touch with a channel outside ``channels`` (or none).
        NegativeValueError: a won opportunity with a negative amount.
        AttributionError: a touch naming a lead that is not in ``leads``, or a won opportunity
            without an amount.
        EmptyJourneysError: no lead has a touch in its window.
    """
    if lookback_days <= 0:
        raise AttributionError(f"lookback_days must be > 0, got {lookback_days}")
    allowed = tuple(channels)

    # Leads: one row each, with conversion time and won revenue.
    lead_index = pd.Index(leads["lead_id"].astype("string").to_numpy(dtype=object))
    converted_ns = _epoch_ns(leads["converted_at"])
    is_converted = converted_ns != NAT
    amount = pd.to_numeric(opportunities["amount"], errors="coerce").to_numpy(dtype=float)
    won = opportunities["won"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    negative = np.nan_to_num(amount, nan=0.0) < 0
    if negative.any():
        first = opportunities["opportunity_id"].to_numpy()[np.flatnonzero(negative)[0]]
        raise NegativeValueError(
            f"opportunities: {int(negative.sum())} opportunity(ies) with a negative amount "
            f"(first: {first}); refunds must be netted before attribution"
        )
    missing_amount = won & np.isnan(amount)
    if missing_amount.any():
        first = opportunities["opportunity_id"].to_numpy()[np.flatnonzero(missing_amount)[0]]
        raise AttributionError(f"opportunities: won opportunity {first} has no amount")
    opp_lead = lead_index.get_indexer(
        opportunities["lead_id"].astype("string").to_numpy(dtype=object)
    )
    credited_opp = won & (opp_lead >= 0)
    revenue = np.bincount(
        opp_lead[credited_opp], weights=amount[credited_opp], minlength=len(lead_index)
    )

    # Touches: lead touches only, as integer codes.
    on_lead = interactions["lead_id"].notna().to_numpy()
    touches = interactions.loc[on_lead]
    lead_code, lead_names = _encode(touches["lead_id"])
    lead_row_of_code = lead_index.get_indexer(lead_names)
    if (lead_row_of_code < 0).any():
        unknown = lead_names[lead_row_of_code < 0]
        count = int(np.isin(lead_code, np.flatnonzero(lead_row_of_code < 0)).sum())
        raise AttributionError(
            f"interactions: {count} touch(es) name a lead not in leads (first: {unknown[0]})"
        )
    channel_code, channel_names = _encode(touches["channel"])
    channel_map = np.array(
        [allowed.index(c) if c in allowed else -1 for c in channel_names], dtype=np.int64
    )
    channel = np.where(channel_code >= 0, channel_map[np.maximum(channel_code, 0)], -1)
    if (channel < 0).any():
        bad = channel < 0
        names = sorted(
            {"<missing>" if c < 0 else str(channel_names[c]) for c in np.unique(channel_code[bad])}
        )
        raise UnknownChannelError(
            f"interactions: {int(bad.sum())} touch(es) with unknown channel(s) {names}; "
            f"allowed: {list(allowed)}"
        )
    lead_row = lead_row_of_code[lead_code]
    at = _epoch_ns(touches["occurred_at"])
    content_code, content_names = _encode(touches["content_id"])

    # Order by lead then time (stable: ties keep the table's order); drop touches after a
    # conversion, then keep each lead's window before its end.
    order = np.lexsort((at, lead_row))
    lead_row, at, channel, content_code = (a[order] for a in (lead_row, at, channel, content_code))
    conv_at = converted_ns[lead_row]
    after = is_converted[lead_row] & (at > conv_at)
    keep = ~after
    lead_row, at, channel, content_code, conv_at = (
        a[keep] for a in (lead_row, at, channel, content_code, conv_at)
    )
    starts = (
        np.flatnonzero(np.r_[True, lead_row[1:] != lead_row[:-1]])
        if len(lead_row)
        else np.zeros(0, dtype=np.int64)
    )
    last = np.maximum.reduceat(at, starts) if len(starts) else np.zeros(0, dtype=np.int64)
    group = (
        np.cumsum(np.r_[False, lead_row[1:] != lead_row[:-1]])
        if len(lead_row)
        else np.zeros(0, dtype=np.int64)
    )
    end = np.where(is_converted[lead_row], conv_at, last[group])
    window = int(round(lookback_days * 86400e9))
    inside = at >= end - window
    before = int((~inside).sum())
    lead_row, at, channel, content_code, end = (
        a[inside] for a in (lead_row, at, channel, content_code, end)
    )

    boundary = (
        np.r_[True, lead_row[1:] != lead_row[:-1]] if len(lead_row) else np.zeros(0, dtype=bool)
    )
    starts = np.flatnonzero(boundary)
    journey_row = lead_row[starts]
    n = len(journey_row)
    has_journey = np.zeros(len(lead_index), dtype=bool)
    has_journey[journey_row] = True
    lost = is_converted & ~has_journey
    dropped = {
        "touches_after_conversion": int(after.sum()),
        "touches_before_lookback": before,
        "conversions_without_touch": int(lost.sum()),
        "value_without_touch": float(revenue[lost].sum()),
        "revenue_without_conversion": float(revenue[~is_converted].sum()),
        "leads_without_touch": int((~has_journey).sum()),
    }
    if n == 0:
        raise EmptyJourneysError(
            f"no lead has a touch within {lookback_days} days before its conversion or last "
            f"touch ({len(touches)} lead touch(es) in interactions)"
        )
    offsets = np.r_[starts, len(lead_row)].astype(np.int64)
    conv = is_converted[journey_row].astype(np.float64)
    # Content ids sorted by name; codes remapped to that order.
    content_order = np.argsort(content_names.astype(str), kind="stable")
    rank = np.empty(len(content_names), dtype=np.int64)
    rank[content_order] = np.arange(len(content_names))
    used = np.unique(content_code[content_code >= 0])
    kept_names = content_names[content_order]
    kept_mask = np.zeros(len(content_names), dtype=bool)
    kept_mask[rank[used]] = True
    compact = np.cumsum(kept_mask) - 1
    content = (
        np.where(content_code >= 0, compact[rank[np.maximum(content_code, 0)]], -1)
        if len(content_names)
        else np.full(len(content_code), -1)
    )
    ended = end[starts]
    return Journeys(
        journey_id=lead_index.to_numpy(dtype=object)[journey_row],
        offsets=offsets,
        channel=channel.astype(np.int32),
        channels=allowed,
        conversions=conv,
        value=revenue[journey_row] * conv,
        nulls=1.0 - conv,
        content=content.astype(np.int32),
        contents=tuple(str(c) for c in kept_names[kept_mask]),
        touched_at=at.astype("datetime64[ns]"),
        ended_at=ended.astype("datetime64[ns]"),
        converted_at=np.where(conv > 0, ended, NAT).astype("datetime64[ns]"),
        dropped=dropped,
        source="interactions",
        ends_at_conversion=True,
    )
