"""Feast feature services: one versioned service per model, naming exactly its features."""

from __future__ import annotations

from feast import FeatureService, FeatureView

from features import feature_views as fv

# model → feature service; bump the version whenever a model's feature list changes
SERVICE_NAMES: dict[str, str] = {
    "lead_conversion": "lead_conversion_v1",
    "churn_risk": "churn_risk_v1",
    "content_report": "content_report_v1",
}
SERVICE_ENTITY: dict[str, str] = {
    "lead_conversion": "lead",
    "churn_risk": "account",
    "content_report": "content",
}


def feature_services(views: dict[str, FeatureView]) -> dict[str, FeatureService]:
    """model name → its versioned feature service over ``views`` (entity → feature view)."""
    return {
        model: FeatureService(
            name=SERVICE_NAMES[model],
            features=[views[entity]],
            description=f"Features of the {model} model, version 1.",
        )
        for model, entity in SERVICE_ENTITY.items()
    }


_repo_services = feature_services(
    {"lead": fv.lead_features, "account": fv.account_features, "content": fv.content_features}
)
lead_conversion_v1 = _repo_services["lead_conversion"]
churn_risk_v1 = _repo_services["churn_risk"]
content_report_v1 = _repo_services["content_report"]
