"""Nightly bulk scoring: every entity in the online store → a Parquet or CSV file for the CRM.

Reads the same online feature vectors and runs the same :func:`serving.scoring.score` as the API,
so a lead's file row equals its API answer (probability, score, grade, reasons, CRM fields).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from crm.io import atomic_file, write_parquet
from crm.settings import Settings
from features.store import entity_info
from serving.online import OnlineFeatures
from serving.scoring import MODEL_ENTITIES, VALUE_FEATURE, batch_frame, iter_chunks, score
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


def score_batch(
    settings: Settings,
    model_name: str,
    ids: Sequence[str] | None = None,
    top: int | None = None,
    champion: Champion | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[pd.DataFrame, Champion]:
    """Score ``ids`` (default: every entity online) with the current champion.

    Ids the online store does not hold are left out (the API reports them as unknown).

    Returns:
        The rows of :func:`serving.scoring.batch_frame` and the champion used.
    """
    entity, _ = MODEL_ENTITIES[model_name]
    champion = champion or load_champion(model_name, settings.tracking_uri())
    ids = list(ids) if ids is not None else entity_ids(settings, entity)
    top = settings.score_reasons if top is None else top
    online = OnlineFeatures(settings, timeout_ms=30_000)
    parts = []
    try:
        for chunk in iter_chunks(ids, CHUNK):
            rows = online.frame(entity, chunk)
            rows = rows[rows["found"].to_numpy(dtype=bool)].reset_index(drop=True)
            if len(rows):
                value = rows[VALUE_FEATURE].to_numpy(dtype=float) if entity == "account" else None
                scored = score(champion.model, rows, top, value)
                parts.append(
                    batch_frame(
                        entity, rows, scored, model_name, champion.version, settings.crm_field_names
                    )
                )
            if progress:
                progress(len(chunk))
    finally:
        online.close()
    if not parts:
        return pd.DataFrame(), champion
    return pd.concat(parts, ignore_index=True), champion


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
