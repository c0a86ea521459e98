"""Plain-words labels for score reasons: a feature's name and value → a sentence a rep can read.

Labels are built from the feature names of :mod:`features.schema` (e.g.
``touches_pricing_page_view_30d`` with value 3 → "Viewed the pricing page 3 times in the last 30
days"). A feature this module does not know gets a generic "<words>: <value>" label, so a new
feature never breaks scoring.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from crm.contract import CHANNELS, CONTENT_TYPES, INTERACTION_TYPES

# Interaction type → (verb phrase with {n} and a count noun, or a "{times}" phrase).
_ACTIONS: dict[str, str] = {
    "email_open": "Opened {n} {emails}",
    "email_click": "Clicked {n} {emails}",
    "email_reply": "Replied to {n} {emails}",
    "page_view": "Viewed {n} web {pages}",
    "pricing_page_view": "Viewed the pricing page {times}",
    "form_submit": "Submitted {n} {forms}",
    "content_download": "Downloaded {n} content {items}",
    "webinar_attend": "Attended {n} {webinars}",
    "event_attend": "Attended {n} {events}",
    "call": "Had {n} {calls}",
    "meeting": "Had {n} {meetings}",
    "demo_request": "Requested a demo {times}",
}
_NOUNS = {
    "emails": "email",
    "pages": "page",
    "forms": "form",
    "items": "item",
    "webinars": "webinar",
    "events": "event",
    "calls": "call",
    "meetings": "meeting",
}
_CHANNEL_WORDS: dict[str, str] = {
    "email": "email",
    "paid_search": "paid search",
    "organic_search": "organic search",
    "social": "social media",
    "display": "display ads",
    "event": "events",
    "webinar": "webinars",
    "referral": "referrals",
    "partner": "partners",
    "direct": "direct visits",
    "sales": "sales outreach",
}
_CONTENT_WORDS: dict[str, tuple[str, str | None]] = {
    "blog": ("blog post", None),
    "whitepaper": ("whitepaper", None),
    "case_study": ("case study", "case studies"),
    "webinar": ("webinar", None),
    "video": ("video", None),
    "ebook": ("e-book", None),
}
_CATEGORY_WORDS: dict[str, str] = {
    "seniority": "Seniority",
    "source": "Lead source",
    "country": "Country",
    "purchase_timeframe": "Stated purchase timeframe",
    "account_employee_band": "Company size (employees)",
    "account_industry": "Industry",
    "account_region": "Region",
    "title_rank": "Job title rank",
    "title_department": "Job title department",
    "plan": "Plan",
    "rfm_segment": "Customer segment",
    "employee_band": "Company size (employees)",
    "industry": "Industry",
    "region": "Region",
}
# The job title features (features.job_titles) read as sentences about the person.
_TITLE_RANK_WORDS: dict[str, str] = {
    "individual": "an individual contributor",
    "manager": "manager",
    "director": "director",
    "vp": "VP",
    "c_level": "C-level",
}
_TITLE_DEPARTMENT_WORDS: dict[str, str] = {
    "customer_success": "customer success",
    "it": "IT",
    "hr": "HR",
    "executive": "general management",
}


def _title_rank(value: str) -> str:
    if value == "unknown":
        return "Job title gives no rank"
    return f"Job title ranks as {_TITLE_RANK_WORDS.get(value, value.replace('_', ' '))}"


def _title_department(value: str) -> str:
    if value == "unknown":
        return "Job title names no department"
    if value == "other":
        return "Works outside the usual business departments"
    return f"Works in {_TITLE_DEPARTMENT_WORDS.get(value, value.replace('_', ' '))}"


_CATEGORY_SENTENCES: dict[str, Callable[[str], str]] = {
    "title_rank": _title_rank,
    "title_department": _title_department,
}


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):  # a category: never NaN (and no exception to raise and catch)
        return False
    try:
        return bool(math.isnan(value))
    except TypeError:
        return False


def _int(value: float) -> int:
    return int(round(float(value)))


def _plural(n: int, singular: str, plural: str | None = None) -> str:
    if n == 1:
        return singular
    if plural:
        return plural
    return f"{singular}es" if singular.endswith(("ch", "sh", "s", "x")) else f"{singular}s"


def _times(n: int) -> str:
    return {0: "no times", 1: "once", 2: "twice"}.get(n, f"{n} times")


def _days(window: str) -> str:
    return f"in the last {window} days"


def _count(n: int, noun: str) -> str:
    return f"{n} {_plural(n, noun)}"


def _action(kind: str, n: int) -> str:
    template = _ACTIONS[kind]
    words = {key: _plural(n, single, key) for key, single in _NOUNS.items()}
    return template.format(n=n, times=_times(n), **words)


def _percent(value: float) -> str:
    return f"{100 * float(value):.0f}%"


def _change(value: float) -> str:
    pct = 100 * float(value)
    if abs(pct) < 0.5:
        return "unchanged"
    return f"{'up' if pct > 0 else 'down'} {abs(pct):.0f}%"


def _money(value: float) -> str:
    return f"{float(value):,.0f}"


_Rule = tuple[re.Pattern[str], Callable[[re.Match[str], Any], str]]
_TYPES = "|".join(sorted(INTERACTION_TYPES, key=len, reverse=True))
_CHANNELS = "|".join(sorted(CHANNELS, key=len, reverse=True))
_CONTENT = "|".join(sorted(CONTENT_TYPES, key=len, reverse=True))

# Rules are tried in order on the full feature name; the first match labels it. Each gets the
# match and a value that is known not to be missing.
_RULES: list[_Rule] = [
    (
        re.compile(rf"touches_({_TYPES})_(\d+)d"),
        lambda m, v: f"{_action(m[1], _int(v))} {_days(m[2])}",
    ),
    (
        re.compile(rf"touches_({_CHANNELS})_(\d+)d"),
        lambda m, v: (
            f"{_count(_int(v), 'touch')} via {_CHANNEL_WORDS.get(m[1], m[1])} {_days(m[2])}"
        ),
    ),
    (
        re.compile(r"touches_prev_(\d+)d"),
        lambda m, v: f"{_count(_int(v), 'touch')} in the {m[1]} days before the last {m[1]}",
    ),
    (re.compile(r"touches_(\d+)d"), lambda m, v: f"{_count(_int(v), 'touch')} {_days(m[1])}"),
    (
        re.compile(r"touch_velocity_(\d+)d"),
        lambda m, v: (
            f"{_count(abs(_int(v)), 'touch')} "
            f"{'more' if v >= 0 else 'fewer'} in the last {m[1]} days than the {m[1]} "
            "before"
        ),
    ),
    (
        re.compile(rf"content_({_CONTENT})_touches"),
        lambda m, v: (
            f"Engaged with {_int(v)} {_plural(_int(v), *_CONTENT_WORDS.get(m[1], (m[1], None)))}"
        ),
    ),
    (
        re.compile(r"distinct_content"),
        lambda m, v: f"Engaged with {_int(v)} different content {_plural(_int(v), 'item')}",
    ),
    (
        re.compile(r"distinct_topics"),
        lambda m, v: f"Engaged with {_int(v)} different {_plural(_int(v), 'topic')}",
    ),
    (
        re.compile(r"email_(click|reply)_rate_(\d+)d"),
        lambda m, v: (
            f"{'Clicked' if m[1] == 'click' else 'Replied to'} {_percent(v)} of opened "
            f"emails {_days(m[2])}"
        ),
    ),
    (re.compile(r"(calls|meetings)_total"), lambda m, v: f"{_count(_int(v), m[1][:-1])} so far"),
    (re.compile(r"days_since_created"), lambda m, v: f"Lead created {_count(_int(v), 'day')} ago"),
    (re.compile(r"days_since_last_touch"), lambda m, v: f"Last touch {_count(_int(v), 'day')} ago"),
    (
        re.compile(r"days_since_last_high_intent"),
        lambda m, v: f"Last viewed pricing or asked for a demo {_count(_int(v), 'day')} ago",
    ),
    (
        re.compile(r"account_is_customer"),
        lambda m, v: (
            "Company is already a customer" if v >= 0.5 else "Company is not a customer yet"
        ),
    ),
    (re.compile(r"mrr"), lambda m, v: f"Monthly recurring revenue of {_money(v)}"),
    (re.compile(r"seats"), lambda m, v: f"{_count(_int(v), 'seat')} licensed"),
    (re.compile(r"tenure_days"), lambda m, v: f"Customer for {_count(_int(v), 'day')}"),
    (re.compile(r"days_to_renewal"), lambda m, v: f"Renewal in {_count(_int(v), 'day')}"),
    (
        re.compile(r"active_user_ratio_(\d+)d"),
        lambda m, v: f"{_percent(v)} of seats active {_days(m[1])}",
    ),
    (
        re.compile(r"active_users_prev_(\d+)d"),
        lambda m, v: f"{_count(_int(v), 'active user')} in the {m[1]} days before the last {m[1]}",
    ),
    (
        re.compile(r"active_users_(\d+)d"),
        lambda m, v: f"{_count(_int(v), 'active user')} {_days(m[1])}",
    ),
    (
        re.compile(r"active_users_trend"),
        lambda m, v: f"Active users {_change(v)} on the previous 28 days",
    ),
    (
        re.compile(r"logins_prev_(\d+)d"),
        lambda m, v: f"{_count(_int(v), 'login')} in the {m[1]} days before the last {m[1]}",
    ),
    (re.compile(r"logins_(\d+)d"), lambda m, v: f"{_count(_int(v), 'login')} {_days(m[1])}"),
    (re.compile(r"logins_trend"), lambda m, v: f"Logins {_change(v)} on the previous 28 days"),
    (
        re.compile(r"key_feature_events_prev_(\d+)d"),
        lambda m, v: (
            f"Used key features {_times(_int(v))} in the {m[1]} days before the last {m[1]}"
        ),
    ),
    (
        re.compile(r"key_feature_events_(\d+)d"),
        lambda m, v: f"Used key features {_times(_int(v))} {_days(m[1])}",
    ),
    (
        re.compile(r"key_feature_events_trend"),
        lambda m, v: f"Key feature use {_change(v)} on the previous 28 days",
    ),
    (
        re.compile(r"high_priority_tickets_(\d+)d"),
        lambda m, v: f"{_count(_int(v), 'high-priority support ticket')} {_days(m[1])}",
    ),
    (
        re.compile(r"tickets_(\d+)d"),
        lambda m, v: f"{_count(_int(v), 'support ticket')} {_days(m[1])}",
    ),
    (
        re.compile(r"mean_satisfaction_(\d+)d"),
        lambda m, v: f"Average support satisfaction {float(v):.1f} {_days(m[1])}",
    ),
    (re.compile(r"open_tickets"), lambda m, v: f"{_count(_int(v), 'open support ticket')}"),
    (
        re.compile(r"open_ticket_mean_age_days"),
        lambda m, v: f"Open support tickets are {_count(_int(v), 'day')} old on average",
    ),
    (re.compile(r"rfm_recency_days"), lambda m, v: f"Last deal won {_count(_int(v), 'day')} ago"),
    (re.compile(r"rfm_frequency"), lambda m, v: f"{_count(_int(v), 'deal')} won"),
    (re.compile(r"rfm_monetary"), lambda m, v: f"Won deals worth {_money(v)}"),
    (
        re.compile(r"account_touches_(\d+)d"),
        lambda m, v: f"{_count(_int(v), 'marketing touch')} with the company {_days(m[1])}",
    ),
]

# What a missing value means, where it means something.
_MISSING: dict[str, str] = {
    "days_since_last_touch": "No touch yet",
    "days_since_last_high_intent": "Never viewed pricing or asked for a demo",
    "email_click_rate_90d": "No opened emails in the last 90 days",
    "email_reply_rate_90d": "No opened emails in the last 90 days",
    "mean_satisfaction_90d": "No rated support tickets in the last 90 days",
    "rfm_recency_days": "No deal won yet",
    "active_users_trend": "No active users in the previous 28 days",
    "logins_trend": "No logins in the previous 28 days",
    "key_feature_events_trend": "No key feature use in the previous 28 days",
    "open_ticket_mean_age_days": "No open support tickets",
    "title_rank": "No job title",
    "title_department": "No job title",
}


def _words(feature: str) -> str:
    text = feature.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _format_value(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


UP_SIGN = "+"
DOWN_SIGN = "\u2212"  # the minus sign, not a hyphen


def label(feature: str, value: Any, unseen: bool = False) -> str:
    """A plain-words sentence for ``feature`` having ``value`` (None or NaN when missing).

    ``unseen``: ``value`` is a category the model never saw in training (it scores it as
    missing), which the sentence says.

    Examples:
        >>> label("touches_pricing_page_view_7d", 3.0)
        'Viewed the pricing page 3 times in the last 7 days'
        >>> label("seniority", "director")
        'Seniority: director'
        >>> label("title_department", "finance")
        'Works in finance'
        >>> label("source", "tiktok", unseen=True)
        'Lead source "tiktok" (not seen in training)'
    """
    if _missing(value) or (isinstance(value, str) and value in ("", "(missing)")):
        if feature in _MISSING:
            return _MISSING[feature]
        name = _CATEGORY_WORDS.get(feature) or _words(feature)
        return f"{name}: not known"
    if unseen:
        name = _CATEGORY_WORDS.get(feature) or _words(feature)
        return f'{name} "{value}" (not seen in training)'
    if feature in _CATEGORY_SENTENCES:
        return _CATEGORY_SENTENCES[feature](str(value))
    if feature in _CATEGORY_WORDS:
        return f"{_CATEGORY_WORDS[feature]}: {str(value).replace('_', ' ')}"
    if isinstance(value, str):
        return f"{_words(feature)}: {value}"
    for pattern, make in _RULES:
        match = pattern.fullmatch(feature)
        if match:
            return make(match, float(value))
    return f"{_words(feature)}: {_format_value(value)}"


def signed(text: str, contribution: float) -> str:
    """A reason's label with the way it moves the score: ``+ …`` raises it, ``− …`` lowers it."""
    return f"{UP_SIGN if contribution > 0 else DOWN_SIGN} {text}"
