"""Content and channel attribution: journeys, models, checks against truth (analytics only;
the report renders in :mod:`reports.attribution`).

Typical use::

    from training.attribution import load_journeys, run_models, credit_table

    journeys = load_journeys(raw_dir=settings.raw_dir)
    results = run_models(journeys, ["last_touch", "markov_1", "shapley", "data_driven"])
    table = credit_table(results)
"""

from training.attribution.credit import Attribution
from training.attribution.errors import (
    AttributionError,
    EmptyJourneysError,
    MalformedPathsError,
    NegativeValueError,
    UnknownChannelError,
    UnknownModelError,
)
from training.attribution.evaluate import read_truth, total_variation_distance, tvd_table
from training.attribution.journeys import (
    DEFAULT_LOOKBACK_DAYS,
    NO_CONTENT,
    Journeys,
    journeys_from_interactions,
    paths_to_journeys,
    read_paths,
)
from training.attribution.models import (
    DEFAULT_MODELS,
    MODELS,
    ModelOptions,
    credit_table,
    parse_models,
    run_model,
    run_models,
)
from training.attribution.pipeline import (
    load_journeys,
    load_marketing,
    run_summary,
    write_credit_table,
)

__all__ = [
    "DEFAULT_LOOKBACK_DAYS",
    "DEFAULT_MODELS",
    "MODELS",
    "NO_CONTENT",
    "Attribution",
    "AttributionError",
    "EmptyJourneysError",
    "Journeys",
    "MalformedPathsError",
    "ModelOptions",
    "NegativeValueError",
    "UnknownChannelError",
    "UnknownModelError",
    "credit_table",
    "journeys_from_interactions",
    "load_journeys",
    "load_marketing",
    "parse_models",
    "paths_to_journeys",
    "read_paths",
    "read_truth",
    "run_model",
    "run_models",
    "run_summary",
    "total_variation_distance",
    "tvd_table",
    "write_credit_table",
]
