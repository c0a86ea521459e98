"""Named errors for attribution input that would otherwise give a silently wrong number."""

from __future__ import annotations


class AttributionError(ValueError):
    """Base class: input attribution refuses to credit."""


class EmptyJourneysError(AttributionError):
    """No journey with a touch, or no conversion to credit."""


class UnknownChannelError(AttributionError):
    """A touch names a channel outside the allowed list (the CRM contract's channels)."""


class NegativeValueError(AttributionError):
    """Revenue (a won opportunity's amount or a path's conversion value) below zero."""


class MalformedPathsError(AttributionError):
    """An aggregated path file that cannot be read as paths with counts."""


class UnknownModelError(AttributionError):
    """A model name that :data:`training.attribution.models.MODELS` does not know."""
