"""A Feast offline store whose point-in-time join is one DuckDB ``ASOF LEFT JOIN`` per view.

Feast's own ``duckdb`` offline store needs ``ibis``; the ``file`` store runs the join in dask.
This store keeps everything of the file store (materialisation pulls, file sources, reading saved
datasets back) and replaces :meth:`get_historical_features`: for each entity row it takes the
latest feature row of the same entity with ``feature.event_timestamp <= entity.event_timestamp``
and not older than the view's ttl, exactly Feast's point-in-time semantics. Its retrieval jobs
save datasets (``FeatureStore.create_saved_dataset``) as local Parquet files.
``benchmarks/features.py`` measures it against the file store on the same data.

Configure it with ``offline_store: {type: features.offline_store.DuckDBAsofOfflineStore}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from feast.errors import SavedDatasetLocationAlreadyExists
from feast.feature_view import FeatureView
from feast.infra.offline_stores.dask import DaskOfflineStore, DaskOfflineStoreConfig
from feast.infra.offline_stores.file_source import FileSource, SavedDatasetFileStorage
from feast.infra.offline_stores.offline_store import RetrievalJob, RetrievalMetadata
from feast.infra.offline_stores.offline_utils import DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL
from feast.infra.registry.base_registry import BaseRegistry
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.repo_config import RepoConfig

from crm.io import atomic_dir, atomic_file


class DuckDBAsofOfflineStoreConfig(DaskOfflineStoreConfig):
    """Config of :class:`DuckDBAsofOfflineStore` (a file store with a DuckDB join)."""

    type: Literal["features.offline_store.DuckDBAsofOfflineStore"] = (
        "features.offline_store.DuckDBAsofOfflineStore"  # type: ignore[assignment]
    )


class _ArrowRetrievalJob(RetrievalJob):
    def __init__(
        self,
        compute: Any,
        full_feature_names: bool,
        on_demand_feature_views: list[OnDemandFeatureView],
        metadata: RetrievalMetadata | None,
        repo_path: Path | None = None,
    ):
        self._compute = compute
        self._full_feature_names = full_feature_names
        self._odfvs = on_demand_feature_views
        self._metadata = metadata
        self._repo_path = repo_path

    @property
    def full_feature_names(self) -> bool:
        return self._full_feature_names

    @property
    def on_demand_feature_views(self) -> list[OnDemandFeatureView]:
        return self._odfvs

    def _to_arrow_internal(self, timeout: int | None = None) -> pa.Table:
        return self._compute()

    def _to_df_internal(self, timeout: int | None = None) -> pd.DataFrame:
        return self._compute().to_pandas()

    def persist(
        self, storage: Any, allow_overwrite: bool | None = False, timeout: int | None = None
    ) -> None:
        """Write the result as Parquet to a local :class:`SavedDatasetFileStorage` (a ``.parquet``
        file, else a folder holding ``part-0.parquet``, as the file store writes), atomically.

        Raises:
            SavedDatasetLocationAlreadyExists: the path exists and ``allow_overwrite`` is false.
            ValueError: another kind of storage, or a remote one.
        """
        if not isinstance(storage, SavedDatasetFileStorage):
            raise ValueError(
                f"the ASOF offline store saves datasets to files, not {type(storage).__name__}"
            )
        uri = FileSource.get_uri_for_file_path(self._repo_path, storage.file_options.uri)
        if urlparse(uri).scheme:
            raise ValueError(f"the ASOF offline store saves datasets to local paths, not {uri}")
        path = Path(uri)
        if path.exists() and not allow_overwrite:
            raise SavedDatasetLocationAlreadyExists(location=str(path))
        table = self.to_arrow(timeout=timeout)
        if path.suffix == ".parquet":
            with atomic_file(path) as tmp:
                pq.write_table(table, tmp)
        else:
            with atomic_dir(path) as tmp:
                pq.write_table(table, Path(tmp) / "part-0.parquet")

    @property
    def metadata(self) -> RetrievalMetadata | None:
        return self._metadata


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def asof_join(
    entity_df: pd.DataFrame,
    views: list[tuple[FeatureView, list[str]]],
    full_feature_names: bool = False,
    timestamp_col: str = DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL,
) -> pa.Table:
    """Point-in-time join of ``entity_df`` with each view's Parquet source in DuckDB."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        entity = entity_df.copy()
        ts = entity[timestamp_col]
        if not isinstance(ts.dtype, pd.DatetimeTZDtype):
            entity[timestamp_col] = pd.to_datetime(ts, utc=True)
        entity["__row"] = range(len(entity))
        con.register("entity_df", entity)
        selects = ["e.*"]
        joins = []
        for i, (view, features) in enumerate(views):
            source = view.batch_source
            assert isinstance(source, FileSource)
            keys = [c.name for c in view.entity_columns]
            reverse = {v: k for k, v in (source.field_mapping or {}).items()}
            src_ts = source.timestamp_field
            cols = ", ".join(
                [f"{_quote(reverse.get(k, k))} AS {_quote(k)}" for k in keys]
                + [f"CAST({_quote(src_ts)} AS TIMESTAMPTZ) AS __ts"]
                + [f"{_quote(reverse.get(f, f))} AS {_quote(f)}" for f in features]
            )
            alias = f"f{i}"
            on = " AND ".join(f"e.{_quote(k)} = {alias}.{_quote(k)}" for k in keys)
            joins.append(
                f"ASOF LEFT JOIN (SELECT {cols} FROM read_parquet('{source.path}')) {alias} "
                f"ON {on} AND CAST(e.{_quote(timestamp_col)} AS TIMESTAMPTZ) >= {alias}.__ts"
            )
            ttl = view.ttl.total_seconds() if view.ttl else 0
            for f in features:
                out = f"{view.projection.name_to_use()}__{f}" if full_feature_names else f
                value = f"{alias}.{_quote(f)}"
                if ttl:
                    value = (
                        f"CASE WHEN {alias}.__ts >= CAST(e.{_quote(timestamp_col)} AS "
                        f"TIMESTAMPTZ) - INTERVAL {int(ttl)} SECOND THEN {value} END"
                    )
                selects.append(f"{value} AS {_quote(out)}")
        sql = f"SELECT {', '.join(selects)} FROM entity_df e {' '.join(joins)} ORDER BY e.__row"
        table = con.sql(sql).to_arrow_table()
        return table.drop_columns(["__row"])
    finally:
        con.close()


class DuckDBAsofOfflineStore(DaskOfflineStore):
    """The file (dask) offline store with DuckDB ASOF point-in-time joins."""

    @staticmethod
    def get_historical_features(
        config: RepoConfig,
        feature_views: list[FeatureView],
        feature_refs: list[str],
        entity_df: pd.DataFrame | str | None,
        registry: BaseRegistry,
        project: str,
        full_feature_names: bool = False,
        filter_by_created_timestamp: bool = False,
        **kwargs: Any,
    ) -> RetrievalJob:
        if not isinstance(entity_df, pd.DataFrame):
            raise ValueError("the ASOF offline store needs entity_df as a pandas DataFrame")
        if DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL not in entity_df.columns:
            raise ValueError(f"entity_df needs a '{DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL}' column")
        by_view: dict[str, list[str]] = {}
        for ref in feature_refs:
            view_name, feature = ref.split(":", 1)
            by_view.setdefault(view_name, []).append(feature)
        views = [
            (fv, by_view[fv.projection.name_to_use()])
            for fv in feature_views
            if fv.projection.name_to_use() in by_view
        ]
        ts = pd.to_datetime(entity_df[DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL], utc=True)
        metadata = RetrievalMetadata(
            features=feature_refs,
            keys=[c for c in entity_df.columns if c != DEFAULT_ENTITY_DF_EVENT_TIMESTAMP_COL],
            min_event_timestamp=ts.min().to_pydatetime() if len(ts) else None,
            max_event_timestamp=ts.max().to_pydatetime() if len(ts) else None,
        )
        return _ArrowRetrievalJob(
            lambda: asof_join(entity_df, views, full_feature_names),
            full_feature_names,
            OnDemandFeatureView.get_requested_odfvs(feature_refs, project, registry),
            metadata,
            config.repo_path,
        )
