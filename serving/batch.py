"""Nightly bulk scoring: every lead or account the online store knows → a file for the CRM.

Reads the same online feature vectors and lifecycle rows, decides each row's status with the same
:func:`serving.status.standing` and scores the scorable rows with the same
:func:`serving.scoring.score` as the API, so a lead's file row equals its API answer (status,
probability, score, grade or risk band, reasons, CRM fields). Closed and stale rows are written
too, with empty scores and the reason, so that the CRM can clear a score that no longer applies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from crm.io import atomic_file, write_parquet
from crm.settings import Settings
from features.feature_views import TTL
from features.schema import STATUS_TABLES
from features.store import entity_info, latest_rows
from serving.online import OnlineFeatures
from serving.scoring import MODEL_ENTITIES, VALUE_FEATURE, batch_frame, iter_chunks, score
from serving.status import NOT_A_CUSTOMER, standing
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


def score_batch(
    settings: Settings,
    model_name: str,
    ids: Sequence[str] | None = None,
    top: int | None = None,
    champion: Champion | None = None,
    progress: Callable[[int], None] | None = None,
    allow_stale: bool = False,
) -> tuple[pd.DataFrame, Champion]:
    """Score ``ids`` (default: :func:`batch_ids`) with the current champion.

    Every id gets a row with its status, as in the API: ``scored``, ``closed``, ``stale``
    (scored with ``stale: true`` under ``allow_stale``) or ``unknown`` (ids given that the
    store does not know).

    Returns:
        The rows of :func:`serving.scoring.batch_frame` and the champion used.
    """
    entity, key = MODEL_ENTITIES[model_name]
    champion = champion or load_champion(model_name, settings.tracking_uri())
    ids = list(ids) if ids is not None else batch_ids(settings, entity)
    top = settings.score_reasons if top is None else top
    online = OnlineFeatures(settings, timeout_ms=30_000)
    parts = []
    try:
        ttl = online.ttl(entity)
        for chunk in iter_chunks(ids, CHUNK):
            rows = online.frame(entity, chunk, status=True)
            standings = [
                standing(entity, str(record[key]), record, ttl=ttl, allow_stale=allow_stale)
                for record in _records(rows, key)
            ]
            scorable = np.array([st.scorable for st in standings], dtype=bool)
            scored = None
            if scorable.any():
                chosen = rows[scorable].reset_index(drop=True)
                value = chosen[VALUE_FEATURE].to_numpy(dtype=float) if entity == "account" else None
                scored = score(champion.model, chosen, top, value)
            if len(rows):
                parts.append(
                    batch_frame(
                        entity,
                        rows,
                        scored,
                        model_name,
                        champion.version,
                        settings.crm_field_names,
                        standings,
                    )
                )
            if progress:
                progress(len(chunk))
    finally:
        online.close()
    if not parts:
        return pd.DataFrame(), champion
    return pd.concat(parts, ignore_index=True), champion


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
