"""Monitoring of a model in use: how far the latest period has moved from the training window."""

from monitoring.drift import (
    DRIFT_METHOD,
    DRIFT_THRESHOLD,
    drift_alerts,
    feature_drift,
    score_drift,
)

__all__ = ["DRIFT_METHOD", "DRIFT_THRESHOLD", "drift_alerts", "feature_drift", "score_drift"]
