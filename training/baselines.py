"""Baselines every run is compared with: logistic regression and a CRM-style points score.

The points scores are written the way CRMs ship them (HubSpot/Marketo-style lead scoring, a
Gainsight-style churn health score): fixed points for behaviours and attributes, summed. Each rule
names the features it needs; rules whose features are absent are skipped, and when none applies
the baseline reports itself as unavailable. Points are turned into a probability by an isotonic
fit on the training rows so that Brier score and calibration can be compared too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler


def as_text(X: pd.DataFrame) -> pd.DataFrame:
    return X.astype("string").fillna("missing").astype(object)


def as_number(X: pd.DataFrame) -> pd.DataFrame:
    return X.apply(pd.to_numeric, errors="coerce").astype("float64")


def logistic_baseline(
    numeric: list[str], categorical: list[str], random_state: int = 0
) -> Pipeline:
    """Logistic regression on standardised numbers (median-imputed, with missing flags) and
    one-hot categories."""
    parts = []
    if numeric:
        parts.append(
            (
                "numeric",
                make_pipeline(
                    FunctionTransformer(as_number, feature_names_out="one-to-one"),
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    StandardScaler(),
                ),
                numeric,
            )
        )
    if categorical:
        parts.append(
            (
                "categorical",
                make_pipeline(
                    FunctionTransformer(as_text, feature_names_out="one-to-one"),
                    OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20),
                ),
                categorical,
            )
        )
    return Pipeline(
        [
            ("columns", ColumnTransformer(parts)),
            ("model", LogisticRegression(C=1.0, max_iter=5000, random_state=random_state)),
        ]
    )


@dataclass(frozen=True)
class Rule:
    """``points`` awarded where ``when(frame)`` holds; needs ``features`` to exist."""

    name: str
    features: tuple[str, ...]
    points: float
    when: Callable[[pd.DataFrame], pd.Series]


def _num(frame: pd.DataFrame, col: str) -> pd.Series:
    return pd.to_numeric(frame[col], errors="coerce")


def _in(frame: pd.DataFrame, col: str, values: tuple[str, ...]) -> pd.Series:
    return frame[col].astype("string").isin(values).fillna(False).astype(bool)


# A lead score in the shape marketing-automation tools ship: behaviour points (capped by
# counting at most a few touches), recency decay, and fit points for title and company size.
LEAD_RULES: tuple[Rule, ...] = (
    Rule(
        "demo request (90 d)",
        ("touches_demo_request_90d",),
        30,
        lambda f: _num(f, "touches_demo_request_90d") >= 1,
    ),
    Rule(
        "pricing page (30 d)",
        ("touches_pricing_page_view_30d",),
        15,
        lambda f: _num(f, "touches_pricing_page_view_30d") >= 1,
    ),
    Rule(
        "meeting (90 d)",
        ("touches_meeting_90d",),
        20,
        lambda f: _num(f, "touches_meeting_90d") >= 1,
    ),
    Rule(
        "form submit (90 d)",
        ("touches_form_submit_90d",),
        10,
        lambda f: _num(f, "touches_form_submit_90d") >= 1,
    ),
    Rule(
        "webinar or event (90 d)",
        ("touches_webinar_attend_90d", "touches_event_attend_90d"),
        10,
        lambda f: (
            (_num(f, "touches_webinar_attend_90d") + _num(f, "touches_event_attend_90d")) >= 1
        ),
    ),
    Rule(
        "email click (30 d)",
        ("touches_email_click_30d",),
        5,
        lambda f: _num(f, "touches_email_click_30d") >= 1,
    ),
    Rule(
        "content download (90 d)",
        ("touches_content_download_90d",),
        5,
        lambda f: _num(f, "touches_content_download_90d") >= 1,
    ),
    Rule(
        "active last 7 d",
        ("days_since_last_touch",),
        10,
        lambda f: _num(f, "days_since_last_touch") <= 7,
    ),
    Rule(
        "quiet over 30 d",
        ("days_since_last_touch",),
        -10,
        lambda f: _num(f, "days_since_last_touch") > 30,
    ),
    Rule(
        "director or above",
        ("seniority",),
        10,
        lambda f: _in(f, "seniority", ("director", "vp", "c_level")),
    ),
    Rule(
        "mid-size company",
        ("account_employee_band",),
        10,
        lambda f: _in(f, "account_employee_band", ("51-200", "201-1000")),
    ),
    Rule(
        "referral or event source",
        ("source",),
        10,
        lambda f: _in(f, "source", ("referral", "event")),
    ),
    Rule("bought list", ("source",), -10, lambda f: _in(f, "source", ("list_import",))),
)

# A churn-risk health score: risk points for falling usage, support trouble and a near renewal.
CHURN_RULES: tuple[Rule, ...] = (
    Rule(
        "active users falling",
        ("active_users_trend",),
        15,
        lambda f: _num(f, "active_users_trend") < 0,
    ),
    Rule(
        "low adoption",
        ("active_user_ratio_28d",),
        20,
        lambda f: _num(f, "active_user_ratio_28d") < 0.3,
    ),
    Rule("logins falling", ("logins_trend",), 10, lambda f: _num(f, "logins_trend") < 0),
    Rule(
        "key feature use falling",
        ("key_feature_events_trend",),
        10,
        lambda f: _num(f, "key_feature_events_trend") < 0,
    ),
    Rule("3+ tickets (90 d)", ("tickets_90d",), 10, lambda f: _num(f, "tickets_90d") >= 3),
    Rule(
        "high-priority ticket (90 d)",
        ("high_priority_tickets_90d",),
        15,
        lambda f: _num(f, "high_priority_tickets_90d") >= 1,
    ),
    Rule(
        "unhappy (CSAT < 3)",
        ("mean_satisfaction_90d",),
        15,
        lambda f: _num(f, "mean_satisfaction_90d") < 3,
    ),
    Rule(
        "renewal within 90 d", ("days_to_renewal",), 20, lambda f: _num(f, "days_to_renewal") <= 90
    ),
    Rule("first year", ("tenure_days",), 10, lambda f: _num(f, "tenure_days") < 365),
    Rule("starter plan", ("plan",), 5, lambda f: _in(f, "plan", ("starter",))),
)

RULES: dict[str, tuple[Rule, ...]] = {"lead_conversion": LEAD_RULES, "churn_risk": CHURN_RULES}


def applicable_rules(rules: tuple[Rule, ...], columns: list[str]) -> tuple[Rule, ...]:
    """The rules whose features are all present."""
    have = set(columns)
    return tuple(r for r in rules if set(r.features) <= have)


def points(frame: pd.DataFrame, rules: tuple[Rule, ...]) -> np.ndarray:
    """Total points per row; a rule whose features are missing for a row awards nothing."""
    total = np.zeros(len(frame))
    for rule in rules:
        total += rule.points * rule.when(frame).fillna(False).to_numpy(dtype=bool)
    return total


class RulePointsScore(ClassifierMixin, BaseEstimator):
    """A fixed points score, mapped to a probability by isotonic regression.

    The map is fitted on the validation rows when ``fit`` is given them (the rows every other
    candidate is calibrated on), else on the training rows. As a served model its reasons are the
    rules that fired, each rule's points shared among the features it names (``contribution`` is
    in points, not log-odds).

    Args:
        rules: The scoring rules; only those whose features exist in ``fit``'s frame are used.
    """

    family = "points"

    def __init__(self, rules: tuple[Rule, ...] = ()) -> None:
        self.rules = rules

    def fit(
        self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame | None = None, y_val: Any = None
    ) -> RulePointsScore:
        self.rules_ = applicable_rules(self.rules, list(X.columns))
        if not self.rules_:
            raise ValueError("no scoring rule applies to these columns")
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        self.classes_ = np.array([0, 1])
        rows, labels = (X, y) if X_val is None else (X_val, y_val)
        self.calibrator_ = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(
            points(rows, self.rules_), np.asarray(labels, dtype=int)
        )
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return points(X, self.rules_)

    def margin(self, X: pd.DataFrame) -> np.ndarray:
        """Total points: the sum of the contributions."""
        return points(X, self.rules_)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = np.clip(self.calibrator_.predict(points(X, self.rules_)), 1e-6, 1 - 1e-6)
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Points per feature (each fired rule's points shared among its features) and a zero
        ``bias``; they sum to the row's total points."""
        out = pd.DataFrame(0.0, index=X.index, columns=[*self.feature_names_in_, "bias"])
        for rule in self.rules_:
            fired = rule.when(X).fillna(False).to_numpy(dtype=bool) * rule.points
            for feature in rule.features:
                out[feature] = out[feature].to_numpy() + fired / len(rule.features)
        return out

    def metadata(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "feature_names": list(self.feature_names_in_),
            "rules": [{"name": r.name, "points": r.points} for r in self.rules_],
        }

    # Rules hold their condition as code, which no safe serialiser stores: a saved score keeps
    # the rules' names and finds them again in RULES_BY_NAME when loaded.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["rules"] = [r.name for r in self.rules]
        if "rules_" in state:
            state["rules_"] = [r.name for r in state["rules_"]]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        state["rules"] = tuple(RULES_BY_NAME[name] for name in state["rules"])
        if "rules_" in state:
            state["rules_"] = tuple(RULES_BY_NAME[name] for name in state["rules_"])
        self.__dict__.update(state)


RULES_BY_NAME: dict[str, Rule] = {r.name: r for rules in RULES.values() for r in rules}
assert len(RULES_BY_NAME) == sum(map(len, RULES.values())), "rule names must be unique"
