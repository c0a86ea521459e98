"""Batch scores for a bring-your-own table: a registered table model → one row per entity of a file.

``crm-intel score table`` reads an export shaped like the one the model was trained on, cleans
its features exactly as training cleaned them (:func:`training.table.feature_frame`) and scores
them with :func:`serving.scoring.score`, the function behind the API and the nightly batch, so a
row gets the same probability, 1–99 score, grade and reasons (largest contributions, in words)
whatever the model's family: trees, logistic regression or the points score.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from crm.settings import Settings
from serving.scoring import reasons_text, score
from training.registry import Champion, client_for, load_champion
from training.table import feature_frame, read_any


def categorical_features(model: Any) -> set[str] | None:
    """The features ``model`` treats as categories (trees: their levels; logistic regression:
    its one-hot columns); ``None`` when the model does not say (the points score)."""
    levels = getattr(model, "categories_", None)
    if levels is None:
        levels = getattr(model, "categorical_", None)
    return None if levels is None else set(levels)


def registered_entity_key(tracking_uri: str, champion: Champion) -> str | None:
    """The id column the model was trained with (its run's ``entity_key`` parameter)."""
    run_id = champion.metadata.get("run_id")
    if not run_id:
        return None
    params = client_for(tracking_uri).get_run(str(run_id)).data.params
    return params.get("entity_key")


def score_table(
    raw: pd.DataFrame,
    champion: Champion,
    model_name: str,
    id_column: str,
    top: int = 3,
) -> pd.DataFrame:
    """Score every row of ``raw`` with ``champion``; ``raw`` is not modified.

    Returns:
        One row per input row, in order: the id, the columns of :class:`serving.scoring.Scored`'s
        frame (``probability``, ``score``, ``grade`` and the rest the API returns), ``reasons``
        (JSON: feature, value, contribution, label), ``reasons_text``, ``reasons_up`` and
        ``reasons_down`` (JSON), ``model`` and ``model_version``.

    Raises:
        ValueError: the id column or a feature of the model is not in ``raw``.
    """
    columns = {str(c).strip(): c for c in raw.columns}
    if id_column not in columns:
        raise ValueError(f"id column {id_column!r} not in the table; columns are {list(columns)}")
    model = champion.model
    features = feature_frame(
        raw, list(model.feature_names_in_), categorical_features(model)
    ).reset_index(drop=True)
    scored = score(model, features, top)
    out = pd.DataFrame(
        {id_column: raw[columns[id_column]].astype("string").to_numpy(dtype=object)},
        index=scored.frame.index,
    )
    for name in scored.frame.columns:  # probability, score, grade, ... as the API gives them
        out[name] = scored.frame[name]
    out["reasons"] = [_as_json(rs) for rs in scored.reasons]
    out["reasons_text"] = [reasons_text(rs) for rs in scored.reasons]
    if scored.reasons_up and scored.reasons_down:
        out["reasons_up"] = [_as_json(rs) for rs in scored.reasons_up]
        out["reasons_down"] = [_as_json(rs) for rs in scored.reasons_down]
    out["model"] = model_name
    out["model_version"] = str(champion.version)
    return out


def _as_json(reasons: Any) -> str:
    return json.dumps([r.as_dict() for r in reasons])


def score_table_file(
    settings: Settings,
    model_name: str,
    table: Path,
    id_column: str | None = None,
    top: int | None = None,
) -> tuple[pd.DataFrame, Champion]:
    """Score the rows of ``table`` (CSV, Parquet or Excel) with the champion of ``model_name``.

    Args:
        id_column: the file's id column (default: the one the model was trained with).
        top: reasons per row (default from settings).

    Raises:
        NoChampion: ``model_name`` has no champion.
        ValueError: the id column or a feature is missing from the file.
    """
    uri = settings.tracking_uri()
    champion = load_champion(model_name, uri)
    key = id_column or registered_entity_key(uri, champion)
    if not key:
        raise ValueError(f"{model_name} does not record its id column; pass --id")
    top = settings.score_reasons if top is None else top
    return score_table(read_any(table), champion, model_name, key, top), champion
