"""Feast feature views, one per entity, with the schema of :mod:`features.schema`, and the
lifecycle views ``lead_status`` / ``account_status`` (:mod:`features.lifecycle`).

The module-level views (what ``feast apply`` / ``feast plan`` discover) read the data directory
of :func:`features.data_sources.repo_data_dir` (``CRM_INTEL_DATA_DIR``, else ``data/``); code
builds them for any data directory with :func:`feature_views` (see
:func:`features.store.definitions`).
"""

from __future__ import annotations

from datetime import timedelta

from feast import FeatureView, Field, FileSource
from feast.types import Float32, String

from features import data_sources, entities
from features.schema import ENTITIES, STATUS_TABLES

# A snapshot answers for the week after it; two weeks leaves room for a late build.
TTL = timedelta(days=14)
# A status row holds until the next build replaces it (Feast reads a zero TTL as "no limit").
STATUS_TTL = timedelta(0)
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


def status_views(sources: dict[str, FileSource]) -> dict[str, FeatureView]:
    """One lifecycle view per entity that has one (``lead_status``, ``account_status``): the
    tables of :mod:`features.lifecycle`, all ``String``. No feature service names them."""
    return {
        entity: FeatureView(
            name=stem,
            entities=[_ENTITY[entity]],
            ttl=STATUS_TTL,
            schema=[Field(name=n, dtype=String) for n in fields],
            source=sources[entity],
            online=True,
            description=f"Where each {entity} stands in the CRM, as of the data's as-of time.",
        )
        for entity, (_, stem, fields) in STATUS_TABLES.items()
    }


_repo_dir = data_sources.repo_data_dir() / "features"
_repo_views = feature_views(data_sources.sources(_repo_dir))
lead_features = _repo_views["lead"]
account_features = _repo_views["account"]
content_features = _repo_views["content"]
_repo_status_views = status_views(data_sources.status_sources(_repo_dir))
lead_status = _repo_status_views["lead"]
account_status = _repo_status_views["account"]
