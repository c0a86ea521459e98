"""The attribution models by name, and running several into one long credit table."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from training.attribution.credit import Attribution
from training.attribution.data_driven import ConversionModel, data_driven, fit_conversion_model
from training.attribution.errors import UnknownModelError
from training.attribution.heuristics import (
    first_touch,
    last_touch,
    linear,
    position_based,
    time_decay,
)
from training.attribution.intervals import DEFAULT_LEVEL, bootstrap_intervals
from training.attribution.journeys import Journeys
from training.attribution.markov import markov
from training.attribution.model_shapley import model_shapley
from training.attribution.shapley import MAX_EXACT_PLAYERS, shapley


@dataclass(frozen=True)
class ModelOptions:
    """Tunable parameters of the models (defaults are the documented ones)."""

    half_life_days: float = 7.0
    half_life_touches: float = 2.0
    position_first: float = 0.4
    position_last: float = 0.4
    shapley_game: str = "rate"
    shapley_prior_strength: float = 100.0
    shapley_max_exact: int = MAX_EXACT_PLAYERS
    shapley_permutations: int = 200
    seed: int = 0
    content: bool = True
    conversion_model: ConversionModel | None = None  # fitted already: credit without fitting


# The models that credit with a fitted conversion model (one per journeys, or a registered one)
LEARNED_MODELS = ("data_driven", "data_driven_shapley")

# The data-driven model and model-based Shapley credit with one fitted conversion model: fitted
# once per journeys object and seed (journeys are immutable, so the object is the key).
_FITTED: weakref.WeakKeyDictionary[Journeys, dict[int, ConversionModel]] = (
    weakref.WeakKeyDictionary()
)


def conversion_model(journeys: Journeys, seed: int = 0) -> ConversionModel:
    """The conversion model chosen by cross-validation for ``journeys`` (fitted once per seed)."""
    per_seed = _FITTED.setdefault(journeys, {})
    if seed not in per_seed:
        per_seed[seed] = fit_conversion_model(journeys, seed=seed)
    return per_seed[seed]


def _registry() -> dict[str, Callable[[Journeys, ModelOptions], Attribution]]:
    return {
        "first_touch": lambda j, o: first_touch(j),
        "last_touch": lambda j, o: last_touch(j),
        "linear": lambda j, o: linear(j),
        "time_decay": lambda j, o: time_decay(j, o.half_life_days, o.half_life_touches),
        "position_based": lambda j, o: position_based(j, o.position_first, o.position_last),
        "markov_1": lambda j, o: markov(j, order=1, content=o.content),
        "markov_2": lambda j, o: markov(j, order=2, content=o.content),
        "markov_3": lambda j, o: markov(j, order=3, content=o.content),
        "shapley": lambda j, o: shapley(
            j,
            o.shapley_game,
            o.shapley_prior_strength,
            o.shapley_max_exact,
            o.shapley_permutations,
            o.seed,
            o.content,
        ),
        "data_driven": lambda j, o: data_driven(
            j, random_state=o.seed, model=o.conversion_model or conversion_model(j, o.seed)
        ),
        "data_driven_shapley": lambda j, o: model_shapley(
            j,
            o.conversion_model or conversion_model(j, o.seed),
            o.shapley_max_exact,
            o.shapley_permutations,
            o.seed,
        ),
    }


MODELS: tuple[str, ...] = tuple(_registry())
DEFAULT_MODELS: tuple[str, ...] = MODELS
ALIASES = {
    "markov": "markov_1",
    "first": "first_touch",
    "last": "last_touch",
    "linear_touch": "linear",
    "position": "position_based",
    "u_shaped": "position_based",
    "data-driven": "data_driven",
    "datadriven": "data_driven",
    "model_shapley": "data_driven_shapley",
    "shapley_model": "data_driven_shapley",
}


def parse_models(models: str | Iterable[str] | None) -> list[str]:
    """Model names from a comma-separated list (or an iterable), aliases resolved, in order.

    Raises:
        UnknownModelError: a name that is neither a model nor an alias.
    """
    if models is None:
        return list(DEFAULT_MODELS)
    items = models.split(",") if isinstance(models, str) else list(models)
    names: list[str] = []
    for item in items:
        name = item.strip().lower()
        if not name:
            continue
        name = ALIASES.get(name, name)
        if name not in MODELS:
            raise UnknownModelError(f"unknown model {item.strip()!r}; known: {', '.join(MODELS)}")
        if name not in names:
            names.append(name)
    if not names:
        raise UnknownModelError(f"no model given; known: {', '.join(MODELS)}")
    return names


def run_model(journeys: Journeys, name: str, options: ModelOptions | None = None) -> Attribution:
    """Run one model by name (see :data:`MODELS`)."""
    (resolved,) = parse_models([name])
    return _registry()[resolved](journeys, options or ModelOptions())


def run_models(
    journeys: Journeys,
    models: str | Iterable[str] | None = None,
    options: ModelOptions | None = None,
) -> list[Attribution]:
    """Run several models on the same journeys, in the order given."""
    return [run_model(journeys, name, options) for name in parse_models(models)]


def model_intervals(
    journeys: Journeys,
    models: Iterable[str],
    options: ModelOptions | None = None,
    replicates: int = 20,
    level: float = DEFAULT_LEVEL,
    on_replicate: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Bootstrap intervals of every model's channel shares
    (:func:`training.attribution.intervals.bootstrap_intervals`); the data-driven models refit
    the conversion model chosen on ``journeys``."""
    options = options or ModelOptions()
    names = parse_models(models)
    learned = any(name in LEARNED_MODELS for name in names)
    chosen = options.conversion_model or (
        conversion_model(journeys, options.seed) if learned else None
    )
    channel_only = replace(options, content=False)

    def run(sample: Journeys, model: ConversionModel | None) -> list[Attribution]:
        return [
            run_model(sample, name, replace(channel_only, conversion_model=model)) for name in names
        ]

    return bootstrap_intervals(journeys, run, chosen, replicates, level, options.seed, on_replicate)


CREDIT_TABLE_COLUMNS = (
    "model",
    "level",
    "channel",
    "content_id",
    "conversions",
    "value",
    "share",
    "value_share",
    "std_error",
    "share_low",
    "share_high",
    "includes_zero",
)


def credit_table(
    results: Iterable[Attribution], intervals: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per (model, channel) and per (model, content item).

    Columns: ``model``, ``level`` (``"channel"`` or ``"content"``), ``channel`` (null on content
    rows), ``content_id`` (null on channel rows), ``conversions`` and ``value`` credited,
    ``share`` and ``value_share`` within the model and level, ``std_error`` of
    ``conversions`` (null unless the model sampled), and on channel rows the bootstrap
    interval of the share (``share_low``, ``share_high``, ``includes_zero``; null without
    ``intervals`` from :func:`model_intervals`).
    """
    frames = []
    for result in results:
        for level, frame in (("channel", result.channels), ("content", result.content)):
            if frame.empty:
                continue
            part = frame.copy()
            part.insert(0, "level", level)
            part.insert(0, "model", result.model)
            frames.append(part)
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="float64") for c in CREDIT_TABLE_COLUMNS})
    table = pd.concat(frames, ignore_index=True)
    for column in ("channel", "content_id"):
        if column not in table:
            table[column] = pd.NA
        table[column] = table[column].astype("string")
    if "std_error" not in table:
        table["std_error"] = np.nan
    table = _with_intervals(table, intervals)
    table["model"] = table["model"].astype("string")
    table["level"] = table["level"].astype("string")
    return table[list(CREDIT_TABLE_COLUMNS)]


def _with_intervals(table: pd.DataFrame, intervals: pd.DataFrame | None) -> pd.DataFrame:
    keys = ["model", "channel"]
    if intervals is None or intervals.empty:
        table["share_low"] = np.nan
        table["share_high"] = np.nan
        table["includes_zero"] = pd.array([pd.NA] * len(table), dtype="boolean")
        return table
    found = intervals[[*keys, "share_low", "share_high", "includes_zero"]].astype(
        {"model": "string", "channel": "string"}
    )
    merged = table.merge(found, on=keys, how="left")
    content = merged["level"] == "content"
    merged.loc[content, ["share_low", "share_high"]] = np.nan
    merged["includes_zero"] = merged["includes_zero"].astype("boolean")
    merged.loc[content, "includes_zero"] = pd.NA
    return merged
