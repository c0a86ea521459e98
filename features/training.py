"""Point-in-time training sets through the models' versioned Feast feature services."""

from __future__ import annotations

import numpy as np
import pandas as pd
from feast import FeatureStore

from crm.settings import Settings
from features.feature_services import SERVICE_ENTITY
from features.schema import ENTITIES
from features.store import FeatureStoreNotReadyError, feature_store

FEATURE_SERVICES: dict[str, str] = {
    "lead_conversion": "lead_conversion_v1",
    "churn_risk": "churn_risk_v1",
}
LABEL_TABLES: dict[str, str] = {"lead_conversion": "lead_labels", "churn_risk": "account_labels"}


class UnknownModelError(ValueError):
    """A model name without a feature service."""


def _entity(model: str) -> str:
    if model not in FEATURE_SERVICES:
        raise UnknownModelError(
            f"unknown model {model!r}: expected one of {sorted(FEATURE_SERVICES)}"
        )
    return SERVICE_ENTITY[model]


def entity_key(model: str) -> str:
    """The join key of a model's rows: ``lead_id`` or ``account_id``."""
    return ENTITIES[_entity(model)][0]


def feature_names(model: str) -> list[str]:
    """The features of a model's feature service, numeric first, then categorical."""
    _, _, numeric, categorical = ENTITIES[_entity(model)]
    return [*numeric, *categorical]


def categorical_features(model: str) -> list[str]:
    """The categorical features of a model (strings; cast to ``category`` with a fixed
    vocabulary in the model, so training and serving agree)."""
    return list(ENTITIES[_entity(model)][3])


def labelled_snapshots(settings: Settings, model: str) -> pd.DataFrame:
    """Entity key, ``event_timestamp`` and ``label`` (0/1 int) of every labelled snapshot."""
    key = entity_key(model)
    path = settings.features_dir / f"{LABEL_TABLES[model]}.parquet"
    if not path.exists():
        raise FeatureStoreNotReadyError(f"{path} does not exist: run `crm-intel features build`")
    labels = pd.read_parquet(path)
    labels = labels[labels["label"].notna()].reset_index(drop=True)
    return pd.DataFrame(
        {
            key: labels[key].astype(str).to_numpy(dtype=object),
            "event_timestamp": pd.to_datetime(labels["event_timestamp"], utc=True),
            "label": labels["label"].astype(np.int64).to_numpy(),
        }
    )


def training_set(
    settings: Settings,
    model: str,
    store: FeatureStore | None = None,
    entity_df: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The labelled snapshots of ``model`` joined point-in-time with its feature service.

    Args:
        settings: the data directory (features built and applied).
        model: ``lead_conversion`` or ``churn_risk``.
        store: a Feast store to use (default: :func:`features.store.feature_store`).
        entity_df: rows to fetch instead of every labelled snapshot (key, ``event_timestamp``,
            ``label``).

    Returns:
        entity key (``lead_id``/``account_id``, ``string``), ``event_timestamp`` (UTC snapshot),
        ``label`` (``int64`` 0/1, only snapshots whose window is over) and
        :func:`feature_names` (numeric ``float32``; categorical ``string`` with ``<NA>``), fetched
        with Feast ``get_historical_features`` through the model's feature service. Sorted by
        ``event_timestamp`` then key.
    """
    key = entity_key(model)
    store = store or feature_store(settings)
    rows = labelled_snapshots(settings, model) if entity_df is None else entity_df
    try:
        service = store.get_feature_service(FEATURE_SERVICES[model])
    except Exception as err:
        raise FeatureStoreNotReadyError(
            f"feature service {FEATURE_SERVICES[model]!r} is not registered: run "
            "`crm-intel features apply`"
        ) from err
    joined = store.get_historical_features(entity_df=rows, features=service).to_df()
    names = feature_names(model)
    out = pd.DataFrame(
        {
            key: joined[key].astype("string[pyarrow]"),
            "event_timestamp": pd.to_datetime(joined["event_timestamp"], utc=True).astype(
                "datetime64[ns, UTC]"
            ),
            "label": joined["label"].astype(np.int64),
        }
    )
    categorical = set(categorical_features(model))
    for name in names:
        column = joined[name]
        out[name] = (
            column.astype("string[pyarrow]")
            if name in categorical
            else pd.to_numeric(column, errors="coerce").astype(np.float32)
        )
    return out.sort_values(["event_timestamp", key], kind="stable").reset_index(drop=True)
