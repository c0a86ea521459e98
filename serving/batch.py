"""Nightly bulk scoring: every lead or account the online store knows → a file for the CRM.

Reads the same online feature vectors and lifecycle rows, decides each row's status with the same
:func:`serving.status.standing` and scores the scorable rows with the same
:func:`serving.scoring.score` as the API, so a lead's file row equals its API answer (status,
probability, score, grade or risk band, reasons, CRM fields). Closed and stale rows are written
too, with empty scores and the reason, so that the CRM can clear a score that no longer applies.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crm.exports.common import SourceIds
from crm.io import atomic_file, write_parquet
from crm.settings import Settings
from features.feature_views import TTL
from features.lifecycle import account_status_table, lead_status_table
from features.schema import STATUS_TABLES
from features.store import entity_info, latest_rows
from features.training import FEATURE_SERVICES
from serving.lifetime import LifetimeReference, lifetime_reference
from serving.online import OnlineFeatures
from serving.score_log import append, open_log, rows_from_results
from serving.scoring import (
    MODEL_ENTITIES,
    MODEL_OF_ENTITY,
    batch_frame,
    iter_chunks,
    score,
)
from serving.status import NOT_A_CUSTOMER, Standing, standing
from serving.trend import trends
from training.registry import Champion, load_champion

CHUNK = 2000  # ids per online read: one SQLite query each


class UnsupportedOutput(ValueError):
    """An output file whose suffix is neither ``.parquet`` nor ``.csv``."""


@dataclass(frozen=True)
class BatchResult:
    model: str
    version: str
    rows: int
    out: Path | None


def entity_ids(settings: Settings, entity: str) -> list[str]:
    """Every id of ``entity`` with a feature row (what materialisation put online), sorted."""
    key, table, _, _ = entity_info(entity)
    path = settings.features_dir / f"{table}.parquet"
    ids = pq.read_table(path, columns=[key])[key].to_pandas().astype(str)
    return sorted(ids.unique().tolist())


def batch_ids(settings: Settings, entity: str) -> list[str]:
    """The ids the nightly batch covers, sorted: every ``entity`` with a feature row or a
    lifecycle row, but prospects (accounts that never subscribed, outside churn's reach)."""
    ids = set(entity_ids(settings, entity))
    if entity in STATUS_TABLES:
        key, stem, _ = STATUS_TABLES[entity]
        path = settings.features_dir / f"{stem}.parquet"
        if path.exists():
            status = pq.read_table(path, columns=[key, "status"]).to_pandas()
            keep = status["status"].astype(str) != NOT_A_CUSTOMER
            ids |= set(status.loc[keep, key].astype(str))
    return sorted(ids)


def scorable_ids(settings: Settings, entity: str) -> list[str]:
    """The ids the service would score now from the online store, sorted: open leads (live
    customers) whose newest features are within the feature view's TTL, by the same
    :func:`serving.status.standing` the service uses. Read from the feature and lifecycle tables,
    no model needed (e.g. for an example request or a benchmark's leads)."""
    key, table, _, _ = entity_info(entity)
    latest = latest_rows(settings.features_dir / f"{table}.parquet", key).select(
        [key, "event_timestamp"]
    )
    stamps = dict(
        zip(
            latest[key].to_pylist(),
            latest["event_timestamp"].cast(pa.timestamp("us", tz="UTC")).to_pylist(),
            strict=True,
        )
    )
    lifecycle: dict[str, dict[str, object]] = {}
    if entity in STATUS_TABLES:
        _, stem, fields = STATUS_TABLES[entity]
        path = settings.features_dir / f"{stem}.parquet"
        if path.exists():
            frame = pd.read_parquet(path)
            for row in frame.to_dict("records"):
                row["as_of"] = row.pop("event_timestamp").to_pydatetime()
                lifecycle[str(row.pop(key))] = {
                    k: (None if pd.isna(v) else v) for k, v in row.items()
                }
    out = []
    for entity_id, stamp in stamps.items():
        record = {"found": True, "event_timestamp": stamp, "lifecycle": lifecycle.get(entity_id)}
        if standing(entity, entity_id, record, ttl=TTL).scorable:
            out.append(str(entity_id))
    return sorted(out)


class AsOfFeatures:
    """Feature rows and lifecycle as they stood at a past time, read like the online store.

    The features are each entity's latest feature-table row at or before ``as_of`` (what the
    online store held then); the lifecycle is recomputed from the raw tables as of that time: a
    lead is open when created by then and not converted by then (the CRM's current status, such
    as disqualified, has no date and is not used), an account is a customer when a subscription
    was live then.
    """

    def __init__(self, settings: Settings, entity: str, as_of: datetime):
        self.entity = entity
        self.as_of = as_of
        key, table, self.numeric, self.categorical = entity_info(entity)
        self.key = key
        latest = latest_rows(settings.features_dir / f"{table}.parquet", key, end=as_of)
        frame = latest.to_pandas()
        frame[key] = frame[key].astype(str)
        self.features = frame.set_index(key)
        self.lifecycle = _lifecycle_as_of(settings, entity, pd.Timestamp(as_of))

    def ids(self) -> list[str]:
        """Every id the CRM had then, sorted, but prospects (accounts never subscribed)."""
        keep = {i for i, row in self.lifecycle.items() if row["status"] != NOT_A_CUSTOMER}
        return sorted(keep)

    def ttl(self, entity: str) -> timedelta:
        return TTL

    def frame(self, entity: str, ids: Sequence[str], status: bool = True) -> pd.DataFrame:
        """The rows of ``ids`` in the layout of :meth:`serving.online.OnlineFeatures.frame`."""
        ids = [str(i) for i in ids]
        known = self.features.reindex(ids)
        present = pd.Index(ids).isin(self.features.index)
        columns: dict[str, Any] = {
            self.key: pd.array(ids, dtype="string[pyarrow]"),
            "event_timestamp": pd.to_datetime(known["event_timestamp"], utc=True).to_numpy(),
            "found": np.asarray(present, dtype=bool),
        }
        for name in self.numeric:
            columns[name] = known[name].to_numpy(dtype=np.float64, na_value=np.nan)
        for name in self.categorical:
            columns[name] = pd.array(known[name].to_numpy(dtype=object), dtype="string[pyarrow]")
        columns["lifecycle"] = pd.Series([self.lifecycle.get(i) for i in ids], dtype=object)
        out = pd.DataFrame(columns, copy=False)
        out["event_timestamp"] = pd.to_datetime(out["event_timestamp"], utc=True)
        return out

    def close(self) -> None:
        pass


def _lifecycle_as_of(
    settings: Settings, entity: str, as_of: pd.Timestamp
) -> dict[str, dict[str, Any]]:
    """Id → lifecycle row (``as_of``, ``status`` and the status fields) at ``as_of``."""
    table = lifecycle_table_as_of(settings, entity, as_of)
    key = STATUS_TABLES[entity][0]
    stamp = as_of.to_pydatetime()
    out: dict[str, dict[str, Any]] = {}
    for row in table.drop(columns=["event_timestamp"]).to_dict("records"):
        entity_id = str(row.pop(key))
        out[entity_id] = {
            "as_of": stamp,
            **{k: (None if pd.isna(v) else v) for k, v in row.items()},
        }
    return out


def lifecycle_table_as_of(settings: Settings, entity: str, as_of: pd.Timestamp) -> pd.DataFrame:
    """The lifecycle table of ``entity`` (``lead`` or ``account``) as it stood at ``as_of``,
    recomputed from the raw tables (see :class:`AsOfFeatures`): the join key,
    ``event_timestamp`` (``as_of``) and the status fields."""
    raw = settings.raw_dir
    if entity == "lead":
        leads = pd.read_parquet(
            raw / "leads.parquet", columns=["lead_id", "created_at", "converted_at"]
        )
        leads = leads[leads["created_at"] <= as_of].copy()
        leads["converted_at"] = leads["converted_at"].where(leads["converted_at"] <= as_of)
        table = lead_status_table(leads.reset_index(drop=True), as_of, None)
    else:
        accounts = pd.read_parquet(raw / "accounts.parquet")
        subscriptions = pd.read_parquet(raw / "subscriptions.parquet")
        subscriptions = subscriptions[subscriptions["start"] <= as_of]
        table = account_status_table(accounts, subscriptions, as_of)
    return table


def score_batch(
    settings: Settings,
    model_name: str,
    ids: Sequence[str] | None = None,
    top: int | None = None,
    champion: Champion | None = None,
    progress: Callable[[int], None] | None = None,
    allow_stale: bool = False,
    as_of: datetime | None = None,
) -> tuple[pd.DataFrame, Champion]:
    """Score ``ids`` (default: :func:`batch_ids`) with the current champion.

    Every id gets a row with its status, as in the API: ``scored``, ``closed``, ``stale``
    (scored with ``stale: true`` under ``allow_stale``) or ``unknown`` (ids given that the
    store does not know).

    With ``as_of``, the features and lifecycle are those of that time (:class:`AsOfFeatures`)
    instead of the online store's, and the default ids every entity the CRM had then: a back-fill
    of the scores the batch would have given that day.

    Returns:
        The rows of :func:`serving.scoring.batch_frame` (with the source CRM's id beside the
        key, for data imported from a CRM's export) and the champion used.
    """
    entity, key = MODEL_ENTITIES[model_name]
    champion = champion or load_champion(model_name, settings.tracking_uri())
    top = settings.score_reasons if top is None else top
    online: OnlineFeatures | AsOfFeatures
    if as_of is not None:
        online = AsOfFeatures(settings, entity, as_of)
        ids = list(ids) if ids is not None else online.ids()
    else:
        online = OnlineFeatures(settings, timeout_ms=30_000)
        ids = list(ids) if ids is not None else batch_ids(settings, entity)
    # accounts: their remaining lifetime, measured against the whole book once (serving.lifetime)
    reference = (
        lifetime_reference(settings, champion.model, scorable_rows(settings, entity, as_of), as_of)
        if entity == "account"
        else None
    )
    parts = []
    try:
        ttl = online.ttl(entity)
        for chunk in iter_chunks(ids, CHUNK):
            rows = online.frame(entity, chunk, status=True)
            if len(rows):
                parts.append(
                    score_rows(
                        model_name,
                        rows,
                        champion,
                        top,
                        settings.crm_field_names,
                        ttl=ttl,
                        allow_stale=allow_stale,
                        reference=reference,
                    )
                )
            if progress:
                progress(len(chunk))
    finally:
        online.close()
    if not parts:
        return pd.DataFrame(), champion
    frame = pd.concat(parts, ignore_index=True)
    # data imported from a CRM's own export: its id (Salesforce Id, HubSpot Record ID) beside ours
    source_ids = SourceIds(settings.raw_dir)
    source_key = source_ids.key_field(entity)
    if source_key is not None:
        frame.insert(1, source_key, source_ids.of(entity, frame[key].astype(str)))
    return frame, champion


def scorable_rows(settings: Settings, entity: str, as_of: datetime | None = None) -> pd.DataFrame:
    """The feature rows of every ``entity`` the batch would score, as :func:`score_batch` reads
    them: from the online store now, or as they stood at ``as_of`` (:class:`AsOfFeatures`);
    closed, stale and unknown ones left out."""
    online: OnlineFeatures | AsOfFeatures
    if as_of is not None:
        online = AsOfFeatures(settings, entity, as_of)
        ids = online.ids()
    else:
        online = OnlineFeatures(settings, timeout_ms=30_000)
        ids = batch_ids(settings, entity)
    parts = []
    try:
        ttl = online.ttl(entity)
        for chunk in iter_chunks(ids, CHUNK):
            rows = online.frame(entity, chunk, status=True)
            keep = [st.scorable for st in standings(entity, rows, ttl)]
            parts.append(rows[np.asarray(keep, dtype=bool)])
    finally:
        online.close()
    if not parts:
        return pd.DataFrame()
    return pd.concat(parts, ignore_index=True)


def score_rows(
    model_name: str,
    rows: pd.DataFrame,
    champion: Champion,
    top: int,
    names: Mapping[str, str],
    ttl: timedelta | None,
    allow_stale: bool = False,
    reference: LifetimeReference | None = None,
) -> pd.DataFrame:
    """One chunk of the batch: each row's status, the scorable rows scored, the file's rows.

    Args:
        rows: online rows of :meth:`serving.online.OnlineFeatures.frame` with ``status=True``
            (or :meth:`AsOfFeatures.frame`), at least one.
        names: output name → CRM field name (``settings.crm_field_names``).
        ttl: how long a feature row answers for.
        reference: accounts: what their remaining lifetime is measured against.

    Returns:
        :func:`serving.scoring.batch_frame` of ``rows``, in their order.
    """
    entity, _ = MODEL_ENTITIES[model_name]
    states = standings(entity, rows, ttl, allow_stale)
    scorable = np.array([st.scorable for st in states], dtype=bool)
    scored = None
    if scorable.any():
        chosen = rows[scorable].reset_index(drop=True)
        lifetime = reference.values(champion.model, chosen) if reference is not None else None
        scored = score(champion.model, chosen, top, lifetime)
    return batch_frame(entity, rows, scored, model_name, champion.version, names, states)


def standings(
    entity: str, rows: pd.DataFrame, ttl: timedelta | None, allow_stale: bool = False
) -> list[Standing]:
    """:func:`serving.status.standing` of each online row (layout of :func:`score_rows`)."""
    key = MODEL_ENTITIES[MODEL_OF_ENTITY[entity]][1]
    return [
        standing(entity, str(record[key]), record, ttl=ttl, allow_stale=allow_stale)
        for record in _records(rows, key)
    ]


def _records(rows: pd.DataFrame, key: str) -> list[dict[str, object]]:
    """What :func:`serving.status.standing` reads of each online row."""
    stamps = [None if pd.isna(t) else t.to_pydatetime() for t in rows["event_timestamp"]]
    columns = (rows[key].astype(str), rows["found"], stamps, rows["lifecycle"])
    return [
        {key: entity_id, "found": bool(found), "event_timestamp": stamp, "lifecycle": lifecycle}
        for entity_id, found, stamp, lifecycle in zip(*columns, strict=True)
    ]


def write_scores(frame: pd.DataFrame, out: Path) -> Path:
    """Write to ``out`` by its suffix (``.parquet`` or ``.csv``), atomically."""
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise UnsupportedOutput(f"--out {out}: use a .parquet or .csv file")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        if suffix == ".parquet":
            write_parquet(frame, tmp)
        else:
            frame.to_csv(tmp, index=False)
    return out


def trend_and_log(
    settings: Settings,
    frame: pd.DataFrame,
    model_name: str,
    champion: Champion,
    scored_at: datetime,
    request_id: str,
) -> int:
    """Add each scored row's trend (columns ``trend``, ``trend_change`` and their CRM fields)
    from the score log, then append the scored rows to the log as the champion's, given at
    ``scored_at`` (now, or the ``--as-of`` date of a back-fill). Returns the rows logged."""
    entity, key = MODEL_ENTITIES[model_name]
    names = settings.crm_field_names
    engine = open_log(settings.score_log_url())
    if not len(frame):
        return 0
    scored = frame[frame["status"] == "scored"]
    now_scores = dict(zip(scored[key].astype(str), scored["score"].astype(int), strict=True))
    found: dict[str, tuple[str, int]] = {}
    for chunk in iter_chunks(list(now_scores), 5_000):
        part = {i: now_scores[i] for i in chunk}
        found |= trends(engine, entity, part, scored_at, settings.trend_days, settings.trend_points)
    ids = frame[key].astype(str)
    trend = ids.map(lambda i: found.get(i, (None, None))[0])
    change = ids.map(lambda i: found.get(i, (None, None))[1]).astype("Int64")
    frame["trend"] = trend.where(frame["status"] == "scored", None)
    frame["trend_change"] = change.where(frame["status"] == "scored")
    frame[names[f"{entity}_trend"]] = frame["trend"]
    frame[names[f"{entity}_trend_change"]] = frame["trend_change"]
    rows = rows_from_results(
        scored.to_dict("records"),
        entity=entity,
        key=key,
        model=model_name,
        model_version=champion.version,
        feature_service=FEATURE_SERVICES.get(model_name),
        arm="champion",
        source="batch",
        request_id=request_id,
        scored_at=scored_at,
    )
    logged = 0
    for start in range(0, len(rows), 5_000):
        logged += append(engine, rows[start : start + 5_000])
    return logged
