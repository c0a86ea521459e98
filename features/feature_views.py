"""Feast feature views, one per entity, with the schema of :mod:`features.schema`.

The module-level views read the default data directory (``CRM_INTEL_DATA_DIR`` or ``data/``), so
``feast apply`` inside ``features/`` works; code builds them for any data directory with
:func:`feature_views` (see :func:`features.store.definitions`).
"""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field, FileSource
from feast.types import Float32, String

from crm.settings import get_settings
from features import data_sources, entities
from features.schema import ENTITIES

# A snapshot answers for the week after it; two weeks leaves room for a late build.
TTL = timedelta(days=14)
_ENTITY = {"lead": entities.lead, "account": entities.account, "content": entities.content}


def feature_views(sources: dict[str, FileSource]) -> dict[str, FeatureView]:
    """One feature view per entity, named after its feature table (``lead_features``, …)."""
    views = {}
    for entity, (_, stem, numeric, categorical) in ENTITIES.items():
        views[entity] = FeatureView(
            name=stem,
            entities=[_ENTITY[entity]],
            ttl=TTL,
            schema=[Field(name=n, dtype=Float32) for n in numeric]
            + [Field(name=n, dtype=String) for n in categorical],
            source=sources[entity],
            online=True,
            description=f"Weekly point-in-time features of a {entity}.",
        )
    return views


_default = feature_views(data_sources.sources(get_settings().features_dir))
lead_features = _default["lead"]
account_features = _default["account"]
content_features = _default["content"]
