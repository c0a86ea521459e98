"""Which entities can be scored: each request item's status from its online row and lifecycle.

Pure functions (no BentoML, no store), shared by the API and the nightly batch. An item is

* ``closed``: the CRM says the lead converted or was disqualified, or the account cancelled
  (lifecycle row, :mod:`features.lifecycle`); never scored, whatever features it has;
* ``unknown``: no features to score it with: the id is not in the CRM data at all, the account is
  a prospect (churn needs a subscription), or the CRM has it but no feature row is online yet;
  sending its features in the request scores it anyway (an empty ``features`` object sends none:
  ``empty_features``);
* ``stale``: its newest online features are older than the feature view's TTL at the time the
  CRM data describes (the lifecycle row's timestamp, the data's as-of time); scored only when
  the request says ``allow_stale``, and then ``scored`` with ``stale: true``;
* ``scored`` otherwise (online features, request features, or both).

A lead created since the last weekly snapshot has a creation row online (``crm-intel features
build``), so it is scored from what was known when it was created (``feature_row: creation``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from features.schema import CLOSED_STATUSES

STATUSES = ("scored", "unknown", "closed", "stale")
NOT_A_CUSTOMER = "prospect"


@dataclass(frozen=True)
class Standing:
    """What the service does with one item, and why.

    Attributes:
        status: ``scored``, ``unknown``, ``closed`` or ``stale``.
        stale: the online features are older than the TTL (True on a ``stale`` item, and on a
            ``scored`` one scored with ``allow_stale``).
        lifecycle: the CRM's status of the entity (lead: open, recycled, converted,
            disqualified; account: customer, cancelled, prospect), None when unknown.
        closed_at: when it closed (converted / cancelled), None when not closed or not recorded.
        data_as_of: the time the CRM data describes (the lifecycle row's timestamp).
        feature_row: ``snapshot`` (a weekly snapshot) or ``creation`` (the lead as created);
            None without online features.
        error: why it is not scored, in the API's error shape; None when scored.
    """

    status: str
    stale: bool = False
    lifecycle: str | None = None
    closed_at: datetime | None = None
    data_as_of: datetime | None = None
    feature_row: str | None = None
    error: dict[str, Any] | None = None

    @property
    def scorable(self) -> bool:
        return self.status == "scored"


def api_error(code: str, message: str, field: str | None = None, fix: str | None = None) -> dict:
    """The API's error shape: ``{"code", "field", "message", "fix"}``."""
    return {"code": code, "field": field, "message": message, "fix": fix}


def parse_time(value: Any) -> datetime | None:
    """A lifecycle timestamp (ISO string or datetime) as an aware UTC datetime; None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    stamp = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def _day(stamp: datetime | None) -> str:
    return "an unrecorded date" if stamp is None else stamp.date().isoformat()


def _closed(entity: str, entity_id: str, status: str, lifecycle: Mapping[str, Any]) -> Standing:
    since = parse_time(lifecycle.get("converted_at" if entity == "lead" else "cancelled_at"))
    when = f" on {since.date().isoformat()}" if since else " (date not recorded)"
    message = f"{entity} {entity_id!r} is {status}{when}: closed {entity}s are not scored"
    fix = (
        "none needed: lead scores are for open leads (reopen it in the CRM to score it again)"
        if entity == "lead"
        else "none needed: churn risk is for live customers"
    )
    return Standing(
        "closed",
        lifecycle=status,
        closed_at=since,
        data_as_of=parse_time(lifecycle.get("as_of")),
        error=api_error("closed", message, fix=fix),
    )


def _empty_features(entity: str, entity_id: str, field: str | None, known: bool) -> dict:
    """The error of an item sent with ``"features": {}`` that has no features of its own."""
    # the item's field is ``leads[2].lead_id``: its features are the sibling ``features``
    where = f"{field.rpartition('.')[0]}.features" if field and "." in field else "features"
    why = (
        "crm-intel has not computed its features yet"
        if known
        else "it is not in the CRM data crm-intel last loaded"
    )
    lead_example, account_example = '{"touches_30d": 4}', '{"seats": 25, "tenure_days": 400}'
    example = lead_example if entity == "lead" else account_example
    return api_error(
        "empty_features",
        f"{where} is an empty object, and {entity} {entity_id!r} has no features to score it "
        f"with: {why}",
        where,
        f"send the {entity}'s feature values in {where}, e.g. {example} (the API description "
        "lists them all), or leave 'features' out once crm-intel has its data",
    )


def standing(
    entity: str,
    entity_id: str,
    record: Mapping[str, Any],
    given: bool = False,
    ttl: timedelta | None = None,
    allow_stale: bool = False,
    field: str | None = None,
    empty_features: bool = False,
    data_as_of: datetime | None = None,
) -> Standing:
    """The status of one item.

    Args:
        entity: ``lead`` or ``account``.
        record: its online row (:meth:`features.store.OnlineReader.rows` with ``status=True``:
            ``found``, ``event_timestamp``, ``lifecycle``).
        given: the request sent features for it.
        ttl: how long a feature row answers for (the feature view's TTL); None: no limit.
        allow_stale: score features older than ``ttl`` anyway.
        field: the request field naming the item, for errors (e.g. ``lead_ids[2]``, or
            ``leads[2].lead_id`` for an item sent with its features).
        empty_features: the request sent an empty ``features`` object for it (``{}``).
        data_as_of: the time the loaded CRM data describes, when known from other rows (an
            unknown id has no lifecycle row to tell it); named in ``unknown_id`` errors.
    """
    lifecycle = record.get("lifecycle") or None
    status = None if lifecycle is None else lifecycle.get("status")
    as_of = None if lifecycle is None else parse_time(lifecycle.get("as_of"))
    if status in CLOSED_STATUSES.get(entity, ()):
        assert lifecycle is not None
        return _closed(entity, entity_id, str(status), lifecycle)
    found = bool(record.get("found"))
    if not found and not given:
        if empty_features:
            error = _empty_features(entity, entity_id, field, known=lifecycle is not None)
        elif status == NOT_A_CUSTOMER and entity == "account":
            error = api_error(
                "not_a_customer",
                f"account {entity_id!r} is a prospect (no subscription): churn risk does not apply",
                field,
                "score it once it subscribes, or send its features in 'accounts'",
            )
        elif lifecycle is not None:
            error = api_error(
                "no_features",
                f"{entity} {entity_id!r} is in the CRM data but crm-intel has not computed its "
                "features yet",
                field,
                f"send its features in '{entity}s' to score it now, or retry after the next "
                "feature update (an operator runs `crm-intel features build` and "
                "`crm-intel features materialize`)",
            )
        else:
            loaded = "" if data_as_of is None else f" (data as of {data_as_of.date().isoformat()})"
            error = api_error(
                "unknown_id",
                f"{entity} {entity_id!r} is not in the CRM data crm-intel last loaded{loaded}",
                field,
                f"check the id, or send its features in '{entity}s' to score it anyway",
            )
        return Standing("unknown", lifecycle=status, data_as_of=as_of, error=error)
    if not found:  # scored from the request's features alone
        return Standing("scored", lifecycle=status, data_as_of=as_of)
    feature_ts = parse_time(record.get("event_timestamp"))
    row = "snapshot"
    created = None if lifecycle is None else parse_time(lifecycle.get("created_at"))
    # a creation row is stamped at created_at rounded up to the second; created_at is kept to
    # the second (rounded down)
    if created and feature_ts and 0 <= (feature_ts - created).total_seconds() <= 1:
        row = "creation"
    base = Standing("scored", lifecycle=status, data_as_of=as_of, feature_row=row)
    if ttl is None or as_of is None or feature_ts is None or as_of - feature_ts <= ttl:
        return base
    age = (as_of - feature_ts).days
    message = (
        f"the newest features of {entity} {entity_id!r} are from {_day(feature_ts)}, {age} days "
        f"before the CRM data's as-of time {_day(as_of)}: older than the feature view's "
        f"{ttl.days}-day TTL"
    )
    if allow_stale:
        return Standing("scored", True, status, data_as_of=as_of, feature_row=row)
    error = api_error(
        "stale_features",
        message,
        field,
        'send "allow_stale": true to score it anyway, or retry after the next feature update '
        "(an operator runs `crm-intel features build` and `crm-intel features materialize`)",
    )
    return Standing("stale", True, status, data_as_of=as_of, feature_row=row, error=error)
