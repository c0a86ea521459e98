"""Feast data sources: the feature tables ``crm-intel features build`` writes.

Built for a data directory by :func:`sources`; the feature views hold them, so this module
declares no module-level source (``feast apply`` would otherwise find each twice, once as
``data_sources`` and once as ``features.data_sources``).
"""

from __future__ import annotations

from pathlib import Path

from feast import FileSource

from features.schema import ENTITIES


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
