"""The candidates for a bring-your-own table and how each is built and recorded.

The families are those of :mod:`training.selection` (``lightgbm``, ``lightgbm_monotone``,
``logistic``, ``points``), fitted the way small one-row-per-entity tables train: trees early-stopped
and calibrated on an internal split and then refitted on every row, logistic regression on every
row. A candidate's record (family and settings) is what the registry keeps as the ``candidate``
tag and what the promotion gate refits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from training.baselines import Rule, RulePointsScore, applicable_rules
from training.linear import CalibratedLogisticClassifier
from training.model import CalibratedBoostingClassifier
from training.pipeline import SPECS, ModelSpec
from training.selection import Candidate, monotone_directions

# Exported tables are small (thousands of rows): slower learning, small trees, and the trees
# refitted on every row after early stopping on an internal split. The untuned configuration.
TABLE_PARAMS: dict[str, Any] = {
    "learning_rate": 0.04,
    "num_leaves": 15,
    "min_child_samples": 20,
    "colsample_bytree": 0.5,
    "reg_lambda": 5.0,
    "refit_full": True,
}
GRIDS = ("full", "small")


def table_lightgbm_grid(train_rows: int) -> list[dict[str, Any]]:
    """LightGBM settings for a table of ``train_rows``, most promising first (the order in which
    a time limit keeps them): the untuned configuration, then leaves per tree x least rows per
    leaf (20, or 1 % of the rows) x L2 penalty, at the untuned learning rate and column share.
    Every point is refitted on all rows after early stopping (``refit_full``, from
    :data:`TABLE_PARAMS`)."""
    base = {k: TABLE_PARAMS[k] for k in ("learning_rate", "colsample_bytree")}
    large_leaf = int(np.clip(train_rows // 100, 20, 1000))
    grid = [{k: v for k, v in TABLE_PARAMS.items() if k != "refit_full"}]
    for leaves in (4, 15, 8, 31):
        for leaf in (20, large_leaf):
            for l2 in (1.0, 10.0):
                point = {**base, "num_leaves": leaves, "min_child_samples": leaf, "reg_lambda": l2}
                if point not in grid:
                    grid.append(point)
    return grid


LOGISTIC_C = (1.0, 0.1, 0.3, 0.03)


def table_candidates(
    train_rows: int,
    rules: tuple[Rule, ...],
    columns: list[str],
    directions: dict[str, int],
    grid: str = "full",
) -> list[Candidate]:
    """The candidates for a table, in the order the search adds them.

    ``full`` is the LightGBM grid of :func:`table_lightgbm_grid` and logistic regression over
    :data:`LOGISTIC_C`; ``small`` (quick runs and tests) is the untuned LightGBM, one shallow
    LightGBM and logistic regression at ``C=1``. Monotone LightGBM is added only where a direction
    is known; without any, it is the plain one. The points score comes last, where its rules apply.
    """
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {', '.join(GRIDS)}, got {grid!r}")
    trees = table_lightgbm_grid(train_rows)
    if grid == "small":
        trees = [trees[0], trees[1]]
    logistic = [Candidate("logistic", {"C": c}, True) for c in LOGISTIC_C]
    if grid == "small":
        logistic = logistic[:1]
    plain = [Candidate("lightgbm", p, not directions) for p in trees]
    monotone = [Candidate("lightgbm_monotone", p, True) for p in trees] if directions else []
    tree_order = (
        [c for pair in zip(plain, monotone, strict=True) for c in pair] if directions else plain
    )
    per_point = 2 if directions else 1
    # the untuned trees and logistic regression first, then three trees to each further penalty,
    # so that a short time limit still tries every family
    out = [*tree_order[:per_point], logistic[0]]
    rest_trees, rest_logistic = tree_order[per_point:], logistic[1:]
    while rest_trees or rest_logistic:
        out += rest_trees[: 3 * per_point] + rest_logistic[:1]
        rest_trees, rest_logistic = rest_trees[3 * per_point :], rest_logistic[1:]
    if applicable_rules(rules, columns):
        out.append(Candidate("points", {}, True))
    return out


def build(
    candidate: Candidate, directions: dict[str, int], rules: tuple[Rule, ...], seed: int
) -> Any:
    """The unfitted estimator of ``candidate`` as tables train it: trees with
    :data:`TABLE_PARAMS` under the candidate's settings (early stopping and calibration on an
    internal split, then refitted on every row), logistic regression fitted on every row
    (uncalibrated: its own loss calibrates it), the points score mapped on the training rows.

    Settings the estimator does not take (a record written by another version) are ignored.
    """
    if candidate.name.startswith("lightgbm"):
        known = set(CalibratedBoostingClassifier().get_params()) - {"monotone", "random_state"}
        params = {k: v for k, v in {**TABLE_PARAMS, **candidate.params}.items() if k in known}
        monotone = directions if candidate.name == "lightgbm_monotone" else None
        return CalibratedBoostingClassifier(**params, monotone=monotone, random_state=seed)
    if candidate.name == "logistic":
        return CalibratedLogisticClassifier(
            C=float(candidate.params.get("C", 1.0)), monotone=directions or None, random_state=seed
        )
    if candidate.name == "points":
        return RulePointsScore(rules)
    raise ValueError(f"unknown candidate family {candidate.name!r}")


def check_table_name(spec: ModelSpec) -> None:
    """Refuse a table model named as a native model (the service scores their champions).

    Raises:
        ValueError: ``spec.name`` is ``lead_conversion`` or ``churn_risk``.
    """
    if spec.name in SPECS:
        raise ValueError(
            f"a table model cannot be trained as {spec.name!r}: the service scores that model's "
            "champion; give the table model its own name (table_model_name)"
        )


def table_directions(spec: ModelSpec, features: list[str]) -> dict[str, int]:
    """The known directions among ``features`` for the native model the table stands in for
    (none for columns of an arbitrary export)."""
    return monotone_directions(spec.kind or spec.name, features)
