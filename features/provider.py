"""The project's Feast provider: the local provider, with materialisation as store generations.

Configure it with ``provider: features.provider.CrmProvider`` (Feast imports a provider given as
a class path; ``local`` is :class:`feast.infra.passthrough_provider.PassthroughProvider`).
``feast materialize`` and ``FeatureStore.materialize`` call :meth:`materialize_single_feature_view`
once per view, and Feast's engine then calls the online store's ``online_write_batch`` once per
batch; here each view's batches go into one new generation of the
:class:`~features.online_store.CrmSqliteOnlineStore`, switched in atomically when the view is
complete, so a failed or killed run leaves the store serving what it served before. With the
Redis store (:class:`~features.redis_store.CrmRedisOnlineStore`) the batches are written as they
come, and the view is marked materialised once all are in.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime
from typing import Any

from feast import FeatureView, OnDemandFeatureView
from feast.infra.passthrough_provider import PassthroughProvider
from feast.infra.registry.base_registry import BaseRegistry
from feast.repo_config import RepoConfig

from features.online_store import CrmSqliteOnlineStore
from features.redis_store import CrmRedisOnlineStore


class CrmProvider(PassthroughProvider):
    """Feast's local provider; a view's materialisation is one online store generation."""

    def materialize_single_feature_view(
        self,
        config: RepoConfig,
        feature_view: FeatureView | OnDemandFeatureView,
        start_date: datetime,
        end_date: datetime,
        registry: BaseRegistry,
        project: str,
        tqdm_builder: Callable[[int], Any],
        disable_event_timestamp: bool = False,
    ) -> None:
        online = self.online_store
        generation = (
            online.generation(config)
            if isinstance(online, CrmSqliteOnlineStore)
            and isinstance(feature_view, FeatureView)
            and feature_view.online
            else nullcontext()
        )
        with generation:
            super().materialize_single_feature_view(
                config,
                feature_view,
                start_date,
                end_date,
                registry,
                project,
                tqdm_builder,
                disable_event_timestamp,
            )
        if isinstance(online, CrmRedisOnlineStore) and isinstance(feature_view, FeatureView):
            online.mark_materialized(config, [feature_view])
