"""Request and response schemas of the scoring API (pydantic), declared once.

The feature objects a request may send are built from :mod:`features.schema`, so the OpenAPI spec
lists every feature with its type and an unknown feature name is a 400 naming it.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from crm.contract import CHANNELS
from features.schema import (
    ACCOUNT_CATEGORICAL,
    ACCOUNT_NUMERIC,
    LEAD_CATEGORICAL,
    LEAD_NUMERIC,
    numeric_domain,
)

MAX_IDS = 1000  # entities per scoring call
MAX_TOP_REASONS = 10  # reasons per list: bounds a response to about 5 MB
MAX_PATHS = 1000  # journeys per attribution call
MAX_PATH_LENGTH = 100  # touches per journey

# CRM record ids: Salesforce (15/18 chars), HubSpot (digits), UUIDs, the simulator's L000123.
EntityId = Annotated[
    str,
    Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:@#/+-]+$", examples=["L0000001"]),
]
Category = Annotated[str, Field(max_length=200)]


class Strict(BaseModel):
    """Unknown fields are an error, numbers must be finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def _in_domain(feature: str) -> Any:
    """A finite number within the feature's domain (:func:`features.schema.numeric_domain`),
    which the OpenAPI spec shows as its minimum and maximum."""
    low, high = numeric_domain(feature)
    return Annotated[float, Field(ge=low, le=high, allow_inf_nan=False)]


def _features_model(
    name: str, numeric: tuple[str, ...], categorical: tuple[str, ...], doc: str
) -> type[BaseModel]:
    fields: dict[str, Any] = {n: (_in_domain(n) | None, None) for n in numeric}
    fields.update({c: (Category | None, None) for c in categorical})
    model = create_model(name, __base__=Strict, **fields)
    model.__doc__ = doc
    return model


LeadFeatures = _features_model(
    "LeadFeatures",
    LEAD_NUMERIC,
    LEAD_CATEGORICAL,
    "Lead features to use instead of (or where missing, besides) those crm-intel computed from "
    "the CRM data; send at least one.",
)
AccountFeatures = _features_model(
    "AccountFeatures",
    ACCOUNT_NUMERIC,
    ACCOUNT_CATEGORICAL,
    "Account features to use instead of (or where missing, besides) those crm-intel computed "
    "from the CRM data; send at least one.",
)

TopReasons = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_TOP_REASONS,
        description="Length of each of reasons, reasons_up and reasons_down (0 for none).",
    ),
]
AllowStale = Annotated[
    bool,
    Field(
        description="Score entities whose newest online features are older than the feature "
        "view's TTL (status 'scored' with stale: true) instead of reporting them 'stale'."
    ),
]


class LeadInput(Strict):
    lead_id: EntityId
    features: LeadFeatures | None = None  # type: ignore[valid-type]


class AccountInput(Strict):
    account_id: EntityId
    features: AccountFeatures | None = None  # type: ignore[valid-type]


def _one_of(ids: list[str] | None, items: list[Any] | None, ids_name: str, items_name: str) -> None:
    if (ids is None) == (items is None):
        raise ValueError(f"give exactly one of {ids_name!r} or {items_name!r}")


class ScoreLeadsRequest(Strict):
    """Leads by id (features crm-intel computed from the CRM data) or with features given."""

    lead_ids: Annotated[list[EntityId], Field(min_length=1, max_length=MAX_IDS)] | None = None
    leads: Annotated[list[LeadInput], Field(min_length=1, max_length=MAX_IDS)] | None = None
    top_reasons: TopReasons = 3
    allow_stale: AllowStale = False

    @model_validator(mode="after")
    def _exactly_one(self) -> ScoreLeadsRequest:
        _one_of(self.lead_ids, self.leads, "lead_ids", "leads")
        return self


class ScoreAccountsRequest(Strict):
    """Accounts by id (features crm-intel computed from the CRM data) or with features
    given."""

    account_ids: Annotated[list[EntityId], Field(min_length=1, max_length=MAX_IDS)] | None = None
    accounts: Annotated[list[AccountInput], Field(min_length=1, max_length=MAX_IDS)] | None = None
    top_reasons: TopReasons = 3
    allow_stale: AllowStale = False

    @model_validator(mode="after")
    def _exactly_one(self) -> ScoreAccountsRequest:
        _one_of(self.account_ids, self.accounts, "account_ids", "accounts")
        return self


class Reason(BaseModel):
    feature: str
    value: float | str | None
    contribution: float = Field(
        description="The feature's part in raw_margin, in margin_unit (> 0 raises the score)."
    )
    label: str = Field(
        description="The reason in plain words; a category the model never saw in training is "
        "labelled '(not seen in training)'."
    )


class ApiError(BaseModel):
    """An error in the API's words: what went wrong, where, and what to do about it."""

    code: str = Field(description="Stable machine-readable code, e.g. 'unknown_id', 'closed'.")
    field: str | None = Field(None, description="The request field at fault, if any.")
    message: str
    fix: str | None = Field(None, description="What to do about it.")


CrmValue = int | float | str | None
Status = Literal["scored", "unknown", "closed", "stale"]


class _Scored(BaseModel):
    status: Status = Field(
        description="scored; unknown (no features: not in the CRM data, a prospect account, or "
        "no feature row yet); closed (converted or disqualified lead, cancelled account: not "
        "scored); stale (newest features older than the feature view's TTL: not scored "
        "unless allow_stale)."
    )
    stale: bool = Field(
        False,
        description="The online features are older than the TTL (true on 'stale' items and on "
        "items scored with allow_stale).",
    )
    error: ApiError | None = Field(None, description="Why this item was not scored.")
    lifecycle: str | None = Field(
        None,
        description="The entity's status in the CRM (lead: open, recycled, converted, "
        "disqualified; account: customer, cancelled, prospect).",
    )
    closed_at: datetime | None = Field(
        None, description="When a closed entity converted or cancelled, if recorded."
    )
    data_as_of: datetime | None = Field(
        None, description="The time the CRM data describes; staleness is measured against it."
    )
    probability: float | None = Field(
        None, description="Calibrated probability: the champion's calibrator applied to raw_margin."
    )
    score: int | None = Field(None, description="1–99: the calibrated probability in percent.")
    reasons: list[Reason] = Field(
        default_factory=list, description="The features with the largest |contribution|."
    )
    reasons_up: list[Reason] = Field(
        default_factory=list,
        description="The features raising the score most (contribution > 0, largest first).",
    )
    reasons_down: list[Reason] = Field(
        default_factory=list,
        description="The features lowering the score most (contribution < 0, largest first).",
    )
    raw_margin: float | None = Field(
        None,
        description="The model's margin before calibration: base_value plus every feature's "
        "contribution. Not the probability's log-odds: the probability comes from the "
        "calibrator.",
    )
    margin_unit: Literal["log-odds before calibration", "points"] | None = Field(
        None, description="Unit of raw_margin, base_value and contributions."
    )
    base_value: float | None = Field(
        None, description="The margin before any feature: raw_margin minus every contribution."
    )
    feature_timestamp: datetime | None = Field(
        None, description="When the online features describe the entity (snapshot or creation)."
    )
    feature_row: Literal["snapshot", "creation"] | None = Field(
        None,
        description="snapshot: a weekly snapshot; creation: a lead created since the last "
        "snapshot, described as it was created.",
    )
    features_source: Literal["online", "online+request", "request"] | None = None
    trend: Literal["improving", "declining", "steady"] | None = Field(
        None,
        description="The score now against the first one given in the last 30 days (a "
        "setting): improving or declining by 5 points or more (a setting), else steady; none "
        "without an earlier score. For churn risk, improving means the risk fell.",
    )
    trend_change: int | None = Field(
        None, description="Score now minus the first score in the trend window, in points."
    )
    arm: Literal["champion", "challenger"] | None = Field(
        None,
        description="Which model answered: the champion, or the challenger for the share of "
        "ids in a canary release (sticky by id).",
    )
    model_version: str | None = Field(None, description="The version that gave this score.")
    crm_fields: dict[str, CrmValue] = Field(
        default_factory=dict,
        description="CRM field → value; emptied (null score) with the reason for closed and "
        "stale items, none for unknown ones.",
    )


class LeadScore(_Scored):
    lead_id: str
    grade: Literal["A", "B", "C", "D"] | None = Field(
        None, description="A ≥ 50, B 25–49, C 10–24, D < 10."
    )


class AccountScore(_Scored):
    account_id: str
    risk_band: Literal["high", "medium", "low"] | None = Field(
        None, description="Churn risk band: high ≥ 50, medium 25–49, low < 25."
    )
    revenue_at_risk: float | None = Field(
        None,
        description="What the account's churn would cost: churn probability × lifetime_value.",
    )
    expected_remaining_months: float | None = Field(
        None, description="Months the account is expected to stay, from the churn model."
    )
    lifetime_value: float | None = Field(
        None,
        description="Remaining lifetime value: gross margin × MRR over the months it is "
        "expected to stay, discounted to today (see POST /value_accounts).",
    )
    lifetime_value_low: float | None = Field(
        None, description="Lifetime value if it stays as long as 9 accounts in 10 like it."
    )
    lifetime_value_high: float | None = Field(
        None, description="Lifetime value if it stays as long as 1 account in 10 like it."
    )
    rfm_segment: str | None = Field(
        None,
        description="The account's RFM segment from its won deals: champion (2+ deals, the last "
        "within 90 days), loyal (2+, the last within a year), recent (one, within 180 days), "
        "at_risk (one, 180–365 days ago), lapsed (the last over a year ago), no_deals.",
    )


class _Batch(BaseModel):
    model: str
    model_version: str
    scored: int
    unknown: int
    closed: int = 0
    stale: int = 0


class ScoreLeadsResponse(_Batch):
    results: list[LeadScore]


class ScoreAccountsResponse(_Batch):
    results: list[AccountScore]


Channel = Literal[CHANNELS]  # type: ignore[valid-type]


class ValueAccountsRequest(Strict):
    """Accounts by id, valued from the features crm-intel computed from the CRM data."""

    account_ids: Annotated[list[EntityId], Field(min_length=1, max_length=MAX_IDS)]
    allow_stale: AllowStale = False


class AccountValue(BaseModel):
    account_id: str
    status: Status = Field(description="As in /score_accounts: only scored items are valued.")
    stale: bool = False
    error: ApiError | None = Field(None, description="Why this item was not valued.")
    lifecycle: str | None = None
    closed_at: datetime | None = None
    data_as_of: datetime | None = None
    churn_probability_next_renewal: float | None = Field(
        None, description="The churn model's probability that it leaves at its next renewal."
    )
    mrr: float | None = Field(None, description="Monthly recurring revenue now.")
    expected_remaining_months: float | None = Field(
        None, description="Months it is expected to stay (up to 20 years)."
    )
    remaining_months_low: float | None = Field(
        None, description="Months 9 accounts in 10 like it stay at least."
    )
    remaining_months_high: float | None = Field(
        None, description="Months 1 account in 10 like it stays at least."
    )
    lifetime_value: float | None = Field(
        None,
        description="Gross margin × MRR over the months it is expected to stay, discounted to "
        "today (settings value_gross_margin, value_discount_rate).",
    )
    lifetime_value_low: float | None = Field(None, description="Value at remaining_months_low.")
    lifetime_value_high: float | None = Field(None, description="Value at remaining_months_high.")
    plan: str | None = None
    rfm_segment: str | None = None
    feature_timestamp: datetime | None = None
    feature_row: Literal["snapshot", "creation"] | None = None


class ValueAccountsResponse(_Batch):
    persistence: float = Field(
        description="How much of an account's standing carries from one renewal to the next, "
        "measured on the CRM's history (1: all of it)."
    )
    results: list[AccountValue]


class JourneyPath(Strict):
    """One journey (or many identical ones): channels in order and what they led to."""

    channels: Annotated[list[Channel], Field(min_length=1, max_length=MAX_PATH_LENGTH)]
    conversions: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] = 1.0
    value: Annotated[float, Field(ge=0, le=1e12, allow_inf_nan=False)] = 0.0
    nulls: Annotated[float, Field(ge=0, le=1e9, allow_inf_nan=False)] = 0.0


class Period(Strict):
    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end < self.start:
            raise ValueError("period end is before its start")
        return self


AttributionModel = Literal[
    "first_touch",
    "last_touch",
    "linear",
    "time_decay",
    "position_based",
    "markov_1",
    "markov_2",
    "markov_3",
    "shapley",
    "data_driven",
    "data_driven_shapley",
]


class AttributionRequest(Strict):
    """Credit for journeys given here, or the latest attribution run's credit for a period."""

    journeys: Annotated[list[JourneyPath], Field(min_length=1, max_length=MAX_PATHS)] | None = None
    period: Period | None = None
    models: Annotated[list[AttributionModel], Field(min_length=1, max_length=11)] = Field(
        default_factory=lambda: list[AttributionModel](["markov_1"])
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> AttributionRequest:
        if (self.journeys is None) == (self.period is None):
            raise ValueError("give exactly one of 'journeys' or 'period'")
        return self


class ChannelCredit(BaseModel):
    model: str
    channel: str
    conversions: float
    value: float
    share: float
    value_share: float
    share_low: float | None = Field(
        None,
        description="Lower end of the share's 90 % bootstrap interval (journeys resampled): "
        "sampling spread, not model bias. Null when the run computed no intervals.",
    )
    share_high: float | None = Field(None, description="Upper end of that interval.")
    includes_zero: bool | None = Field(
        None,
        description="The interval includes zero: the data cannot tell this channel's "
        "effect from none.",
    )


class AttributionResponse(BaseModel):
    source: Literal["request", "latest_run"]
    run: str | None = Field(None, description="The attribution run the credit comes from.")
    credited_by: str | None = Field(
        None,
        description="For journeys in the request with a data-driven model: the registered "
        "conversion model that credited them (name and version, the champion). It is not "
        "refitted on the request's journeys.",
    )
    period: Period | None = None
    channels: list[ChannelCredit]


class ModelInfo(BaseModel):
    version: str
    run_id: str | None
    feature_service: str | None
    expected_feature_service: str | None = Field(
        None, description="The feature service this service scores with."
    )
    features: list[str]
    calibration: str | None
    roc_auc: float | None
    loaded_at: float | None
    refresh_error: str | None = Field(
        None, description="Why the version the champion alias points to is not served."
    )
    refused_version: str | None = Field(
        None, description="A champion version refused (trained for another feature service)."
    )
    challenger_version: str | None = Field(
        None, description="The challenger in a shadow or canary release, if one is loaded."
    )
    challenger_error: str | None = Field(
        None, description="Why the challenger alias's version is not used."
    )


class ScoreLogInfo(BaseModel):
    """This server process's score log writer."""

    written: int = Field(description="Rows appended to the log.")
    dropped: int = Field(description="Rows not logged because the writer's queue was full.")
    failed: int = Field(description="Rows the database refused (after a retry).")
    queued: int = Field(description="Rows waiting to be written.")


class ModelInfoResponse(BaseModel):
    models: dict[str, ModelInfo]
    online_store: str
    online_store_ready: bool
    crm_field_names: dict[str, str]
    release_mode: Literal["off", "shadow", "canary"] = "off"
    canary_fraction: float | None = None
    score_log: ScoreLogInfo | None = Field(
        None, description="The score log writer's counters (none when logging is off)."
    )


class ErrorResponse(BaseModel):
    error: ApiError
