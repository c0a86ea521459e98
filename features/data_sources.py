"""Feast data sources: the feature tables ``crm-intel features build`` writes.

Built for a data directory by :func:`sources`; the feature views hold them, so this module
declares no module-level source (``feast apply`` would otherwise find each twice, once as
``data_sources`` and once as ``features.data_sources``). :func:`repo_data_dir` is the data
directory Feast's own CLI works on.
"""

from __future__ import annotations

import os
from pathlib import Path

from feast import FileSource

from features.schema import ENTITIES, STATUS_TABLES


def sources(features_dir: Path) -> dict[str, FileSource]:
    """One Parquet source per entity (``lead``, ``account``, ``content``) under ``features_dir``."""
    return {
        entity: FileSource(
            name=stem,
            path=str(Path(features_dir) / f"{stem}.parquet"),
            timestamp_field="event_timestamp",
            description=f"Weekly point-in-time {entity} features.",
        )
        for entity, (_, stem, _, _) in ENTITIES.items()
    }


def status_sources(features_dir: Path) -> dict[str, FileSource]:
    """One Parquet source per entity with a lifecycle table (``lead``, ``account``): the
    ``lead_status`` / ``account_status`` tables of :mod:`features.lifecycle`."""
    return {
        entity: FileSource(
            name=stem,
            path=str(Path(features_dir) / f"{stem}.parquet"),
            timestamp_field="event_timestamp",
            description=f"Where each {entity} stands in the CRM, as of the data's as-of time.",
        )
        for entity, (_, stem, _) in STATUS_TABLES.items()
    }


def repo_data_dir() -> Path:
    """The data directory of the Feast repo's module-level objects (``feast apply`` here).

    ``CRM_INTEL_DATA_DIR``, as ``feature_store.yaml`` reads it (a relative one is relative to
    this folder, as Feast takes the YAML's paths), else ``data/`` at the project root. Read from
    the environment when Feast imports the repo, never from the settings object.
    """
    here = Path(__file__).resolve().parent
    value = os.environ.get("CRM_INTEL_DATA_DIR")
    return here / value if value else here.parent / "data"
