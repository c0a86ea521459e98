"""The scoring API: a BentoML 1.4 service over the MLflow champions and the Feast online store.

Thin wiring: requests are validated by :mod:`serving.schemas`, features read by
:mod:`serving.online`, scored by :mod:`serving.scoring` (no BentoML there, shared with the batch
command) and champions kept current by :mod:`serving.champions`.

Run with ``crm-intel serve`` or ``bentoml serve serving.service:CRMIntel``. Configuration comes
from :class:`crm.settings.Settings` (``CRM_INTEL_*`` and ``MLFLOW_TRACKING_URI``), read when the
server starts, never at import: the decorator below holds BentoML's defaults, and the server's
shape (workers, metrics, access log) reaches BentoML through its own runtime configuration
(``BENTOML_CONFIG_OVERRIDES``, written by :func:`serving.runtime.server_env`).
"""

from __future__ import annotations

# A server process starts here: Feast, imported below, without typeguard's instrumentation of
# its classes (half the service's import time; features.feast_import says why).
from features.feast_import import skip_feast_typechecks

skip_feast_typechecks()

import asyncio
import gc
import json
import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, get_args

import bentoml
from fastapi import FastAPI
from starlette.responses import JSONResponse, Response

from crm.exports.common import SourceIds
from crm.settings import Settings
from features.training import FEATURE_SERVICES
from serving import http_protocol, release
from serving.account_value import LifetimeReferences, value_items
from serving.attribution import (
    AttributionChampion,
    NoAttributionModel,
    NoAttributionRun,
    credit_for_paths,
    period_credit,
)
from serving.auth import KeyChecker, configured_keys
from serving.champions import Champions
from serving.gate import REQUEST_ID, Gate, KeyFirst, Limits, Route
from serving.metrics import process_metrics
from serving.online import OnlineFeatures, OnlineStoreUnavailable
from serving.runtime import SERVICE_NAME, quiet_third_party_warnings
from serving.schemas import (
    AttributionRequest,
    AttributionResponse,
    ModelInfoResponse,
    ScoreAccountsRequest,
    ScoreAccountsResponse,
    ScoreLeadsRequest,
    ScoreLeadsResponse,
    ValueAccountsRequest,
    ValueAccountsResponse,
)
from serving.score_log import ScoreLogWriter, open_log, rows_from_results
from serving.scoring import MODEL_ENTITIES, score_items
from serving.status import STATUSES, api_error
from serving.trend import TrendReferences, add_trends
from training.attribution.errors import AttributionError
from training.attribution.models import LEARNED_MODELS

log = logging.getLogger("crm_intel.serving")
# Third-party deprecation warnings about the libraries' own code (BentoML 1.4.39 reads
# ``model_fields`` from an instance on every request and pydantic 2.11 warns each time, which
# would flood the server log; MLflow's tables at the first registry read): not ours to act on.
# Here, after every import of the service process (Feast's turns deprecation warnings on).
quiet_third_party_warnings()
MODELS = ("lead_conversion", "churn_risk")
READY_CACHE_SECONDS = 1.0

info_app = FastAPI(title="crm-intel", docs_url=None, redoc_url=None, openapi_url=None)


# Every API route: methods, the scope a key needs, the schema its JSON body must meet.
ROUTES: dict[str, Route] = {
    "/score_leads": Route("/score_leads", frozenset({"POST"}), "score", ScoreLeadsRequest),
    "/score_accounts": Route("/score_accounts", frozenset({"POST"}), "score", ScoreAccountsRequest),
    "/value_accounts": Route("/value_accounts", frozenset({"POST"}), "score", ValueAccountsRequest),
    "/attribution": Route("/attribution", frozenset({"POST"}), "attribution", AttributionRequest),
    "/model_info": Route("/model_info", frozenset({"GET"}), "models:read"),
}


class _Gate(Gate):
    """The gate (:mod:`serving.gate`) with keys, limits and metrics from the settings, read
    when the server builds its application (not at import)."""

    def __init__(self, app: Any) -> None:
        settings = Settings()
        # the gate's line per request at INFO (BentoML's server logging leaves other loggers at
        # its root's WARNING)
        project_log = logging.getLogger("crm_intel")
        if project_log.level == logging.NOTSET:
            project_log.setLevel(logging.INFO)
        limits = (
            Limits(
                settings.max_request_bytes,
                settings.request_body_timeout_seconds,
                settings.request_timeout_seconds,
            )
            if settings.request_limits
            else Limits(None, None, None)
        )
        metrics = process_metrics(METRIC_ROUTES) if settings.serve_metrics else None
        super().__init__(
            app,
            ROUTES,
            KeyChecker(configured_keys(settings.api_keys, settings.api_keys_file)),
            limits,
            metrics,
            settings.expose_docs,
            settings.request_log,
        )


METRIC_ROUTES = (*ROUTES, "/healthz", "/livez", "/readyz", "/metrics")


def _key_first(app: Any) -> Any:
    """The key check in front of the whole server (see :mod:`serving.http_protocol`)."""
    settings = Settings()
    keys = KeyChecker(configured_keys(settings.api_keys, settings.api_keys_file))
    metrics = process_metrics(METRIC_ROUTES) if settings.serve_metrics else None
    return KeyFirst(app, keys, frozenset(METRIC_ROUTES), metrics)


# uvicorn reads its protocol table when a worker's server starts, after this module is imported:
# this is the one hook there is. Nothing is read here: the protocol reads the settings at its
# first connection (and adds nothing with request_limits off).
http_protocol.install(front=_key_first)


def _error(status: int, code: str, message: str, fix: str | None = None) -> JSONResponse:
    """An error response in the API's shape (``serving.status.api_error``)."""
    headers = {"Retry-After": "1"} if status == 503 else None
    body = {"error": api_error(code, message, fix=fix)}
    return JSONResponse(body, status_code=status, headers=headers)


def _unavailable(err: OnlineStoreUnavailable) -> JSONResponse:
    """503 in the client's words; the detail (which names the file) goes to the log."""
    log.warning("scoring unavailable: %s", err)
    return _error(503, "scores_unavailable", err.public, err.fix)


# Defaults only: serving.runtime.server_env overrides workers, metrics and the access log from the
# settings at start. Scoring is CPU-bound and runs on the event loop, so one thread per worker
# (BentoML reads ``threads`` from the decorator alone; more threads only contend for the GIL).
@bentoml.service(
    name=SERVICE_NAME,
    traffic={"timeout": 10},
    workers=1,
    threads=1,
    metrics={"enabled": False},  # by raw path: the gate counts by route (serving.metrics)
    logging={"access": {"enabled": False}},
)
@bentoml.asgi_app(info_app, path="/")
class CRMIntel:
    """Lead and churn scores with reasons, and channel attribution, for a CRM."""

    def __init__(self) -> None:
        self.settings = Settings()
        self._source_ids = SourceIds(self.settings.raw_dir)
        self.attribution_champion = AttributionChampion(
            self.settings.tracking_uri(), self.settings.model_refresh_seconds
        )
        self.champions = Champions(
            MODELS,
            self.settings.tracking_uri(),
            self.settings.model_refresh_seconds,
            feature_services=FEATURE_SERVICES,
            challengers=self.settings.release_mode != "off",
        )
        self.lifetimes = LifetimeReferences(self.settings)
        self.score_log: ScoreLogWriter | None = None
        if self.settings.score_log:
            try:
                engine = open_log(self.settings.score_log_url())
                self.score_log = ScoreLogWriter(engine, self.settings.score_log_queue_rows)
                self._trend_references = TrendReferences(engine, self.settings.trend_days)
            except Exception as err:  # scores are still answered; the log says why not kept
                log.error("score log unavailable, scores are not logged: %s", err)
        self._background: set[asyncio.Future[Any]] = set()
        self.online = OnlineFeatures(self.settings)
        problem = self.online.check()
        if problem:
            log.warning("online store not ready at start: %s", problem)
        self._ready: tuple[float, OnlineStoreUnavailable | None] = (time.monotonic(), problem)
        self._ready_lock = threading.Lock()
        self.champions.start()
        # Everything loaded so far (libraries, models, the registry) lives as long as the
        # process: kept out of the collector's full passes, which would otherwise walk it all
        # (hundreds of ms holding the GIL) whenever scoring allocates enough to trigger one.
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self.champions.stop()
        self.online.close()
        if self.score_log is not None:
            self.score_log.close()

    def _store_problem(self) -> OnlineStoreUnavailable | None:
        with self._ready_lock:
            at, problem = self._ready
            if time.monotonic() - at < READY_CACHE_SECONDS:
                return problem
        problem = self.online.check()
        with self._ready_lock:
            self._ready = (time.monotonic(), problem)
        return problem

    def __is_ready__(self) -> bool:
        return self._store_problem() is None

    async def _score(
        self,
        model_name: str,
        ids: list[str],
        overrides: list[dict[str, Any] | None],
        fields: list[str],
        top: int,
        allow_stale: bool,
        response: type[Any],
    ) -> Any:
        champion = self.champions[model_name]  # one reference for the whole request
        entity, _ = MODEL_ENTITIES[model_name]
        inline = len(ids) <= self.settings.score_inline_max_items
        try:
            if inline:
                records = await self.online.rows_async(entity, ids, status=True)
            else:  # a large request: read and score in a thread, the loop keeps answering
                records = await asyncio.to_thread(self.online.rows, entity, ids, True)
            ttl = self.online.ttl(entity)
        except OnlineStoreUnavailable as err:
            with self._ready_lock:
                self._ready = (time.monotonic(), err)
            return _unavailable(err)

        challenger = (
            self.champions.challenger(model_name) if self.settings.release_mode != "off" else None
        )
        lifetimes: dict[str, Any] = {}  # accounts: each answering model's lifetime reference
        if entity == "account":
            try:
                for model in (champion, challenger):
                    if model is not None:
                        lifetimes[model.version] = await self._lifetime_reference(model)
            except OnlineStoreUnavailable as err:
                return _unavailable(err)
        answered_by = release.arms(
            model_name,
            ids,
            self.settings.release_mode,
            self.settings.canary_fraction,
            challenger is not None,
        )
        request_id = REQUEST_ID.get() or "-"
        scored_at = datetime.now(UTC)

        def scored_by(model: Any, chosen: Sequence[int]) -> list[dict[str, Any]]:
            every = len(chosen) == len(ids)
            reference = lifetimes.get(model.version)
            return score_items(
                model_name,
                model.model,
                records if every else [records[i] for i in chosen],
                overrides if every else [overrides[i] for i in chosen],
                top,
                self.settings.crm_field_names,
                ttl=ttl,
                allow_stale=allow_stale,
                fields=fields if every else [fields[i] for i in chosen],
                lifetime_of=(
                    None if reference is None else partial(reference.of_records, model.model)
                ),
            )

        def results_and_counts() -> tuple[list[dict[str, Any]], dict[str, int]]:
            results: list[dict[str, Any]] = [{} for _ in ids]
            for arm, model in (
                (release.CHAMPION_ARM, champion),
                (release.CHALLENGER_ARM, challenger),
            ):
                chosen = [i for i, a in enumerate(answered_by) if a == arm]
                if not chosen or model is None:
                    continue
                for i, r in zip(chosen, scored_by(model, chosen), strict=True):
                    if r["status"] == "scored":
                        r["arm"], r["model_version"] = arm, model.version
                    results[i] = r
            self._with_source_ids(model_name, results)
            self._trend_and_log(model_name, results, request_id, scored_at)
            counts = dict.fromkeys(STATUSES, 0)
            for r in results:
                counts[r["status"]] += 1
            return results, counts

        if challenger is not None and self.settings.release_mode == "shadow":
            self._shadow(model_name, challenger, scored_by, len(ids), request_id, scored_at)

        if inline:
            results, counts = results_and_counts()
            return response.model_validate(
                {
                    "model": model_name,
                    "model_version": champion.version,
                    **counts,
                    "results": results,
                }
            )

        def encoded() -> bytes:
            # Validated and serialised item by item: one call over the whole response would hold
            # the GIL for tens of milliseconds at a time, stalling the event loop as much.
            results, counts = results_and_counts()
            item = get_args(response.model_fields["results"].annotation)[0]
            head = {"model": model_name, "model_version": champion.version, **counts}
            parts = [item.model_validate(r).model_dump_json().encode() for r in results]
            return json.dumps(head).encode()[:-1] + b', "results": [' + b",".join(parts) + b"]}"

        return Response(await asyncio.to_thread(encoded), media_type="application/json")

    async def _lifetime_reference(self, champion: Any) -> Any:
        """The lifetime reference of a churn model version (measured on the book in a thread
        the first time, the loop answering meanwhile)."""
        return await asyncio.to_thread(self.lifetimes.of, champion)

    def _with_source_ids(self, model_name: str, results: list[dict[str, Any]]) -> None:
        """For data imported from a CRM's own export, each result's CRM fields lead with that
        CRM's id (``Id``, ``Record ID``), the key its update uses."""
        entity, key = MODEL_ENTITIES[model_name]
        field_name = self._source_ids.key_field(entity)
        if field_name is None:
            return
        with_fields = [r for r in results if r.get("crm_fields")]
        found = self._source_ids.of(entity, [str(r[key]) for r in with_fields])
        for r, source_id in zip(with_fields, found, strict=True):
            r["crm_fields"] = {field_name: source_id, **r["crm_fields"]}

    def _trend_and_log(
        self,
        model_name: str,
        results: list[dict[str, Any]],
        request_id: str,
        scored_at: datetime,
    ) -> None:
        """Each scored result's trend from the log, then its row queued for the log."""
        if self.score_log is None:
            return
        entity, key = MODEL_ENTITIES[model_name]
        scored = {str(r[key]): int(r["score"]) for r in results if r["status"] == "scored"}
        if scored:
            try:
                found = self._trend_references.trends(
                    entity, scored, scored_at, self.settings.trend_points
                )
            except Exception as err:  # no trend this time; the score itself is unaffected
                log.warning("score trend unavailable: %s", err)
                found = {}
            add_trends(results, found, entity, key, self.settings.crm_field_names)
        for arm in (release.CHAMPION_ARM, release.CHALLENGER_ARM):
            mine = [r for r in results if r.get("arm") == arm]
            if mine:
                self.score_log.put(
                    rows_from_results(
                        mine,
                        entity=entity,
                        key=key,
                        model=model_name,
                        model_version=mine[0]["model_version"],
                        feature_service=FEATURE_SERVICES.get(model_name),
                        arm=arm,
                        source="api",
                        request_id=request_id,
                        scored_at=scored_at,
                    )
                )

    def _shadow(
        self,
        model_name: str,
        challenger: Any,
        scored_by: Any,
        n: int,
        request_id: str,
        scored_at: datetime,
    ) -> None:
        """Score the same items with the challenger after the answer, for the log only."""
        if self.score_log is None:
            return
        writer = self.score_log
        entity, key = MODEL_ENTITIES[model_name]

        def shadow() -> None:
            try:
                results = scored_by(challenger, range(n))
            except Exception as err:  # a shadow never affects what callers get
                log.warning("shadow scoring with %s failed: %s", challenger.version, err)
                return
            writer.put(
                rows_from_results(
                    results,
                    entity=entity,
                    key=key,
                    model=model_name,
                    model_version=challenger.version,
                    feature_service=FEATURE_SERVICES.get(model_name),
                    arm=release.SHADOW_ARM,
                    source="api",
                    request_id=request_id,
                    scored_at=scored_at,
                )
            )

        task = asyncio.get_running_loop().run_in_executor(None, shadow)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # Scoring is async on purpose: a small request is ~1 ms of CPU, and running it on the event
    # loop avoids handing the GIL back and forth with a worker thread, which under concurrency
    # cost more than the scoring itself. A locked store is waited on with asyncio.sleep (up to
    # online_store_timeout_ms), never inside SQLite, so it does not stall other requests. A
    # request of more than score_inline_max_items items is read and scored in a thread, so
    # health checks and small requests are answered meanwhile.
    @bentoml.api(input_spec=ScoreLeadsRequest)
    async def score_leads(
        self,
        lead_ids: list[str] | None = None,
        leads: list[Any] | None = None,
        top_reasons: int = 3,
        allow_stale: bool = False,
    ) -> ScoreLeadsResponse:
        """Lead conversion probability, 1–99 score, grade and signed reasons per lead.

        Send ``lead_ids`` (features from the online store) or ``leads`` with ``features`` that
        override or fill the online ones; up to 1000 per call. Each item has a ``status``:
        ``scored``; ``closed`` (converted or disqualified: not scored); ``stale`` (features
        older than the TTL: not scored unless ``allow_stale``); ``unknown`` (no features).
        """
        ids, overrides, fields = _unpack(lead_ids, leads, "lead_id", "lead")
        return await self._score(
            "lead_conversion", ids, overrides, fields, top_reasons, allow_stale, ScoreLeadsResponse
        )

    @bentoml.api(input_spec=ScoreAccountsRequest)
    async def score_accounts(
        self,
        account_ids: list[str] | None = None,
        accounts: list[Any] | None = None,
        top_reasons: int = 3,
        allow_stale: bool = False,
    ) -> ScoreAccountsResponse:
        """Churn probability, 1–99 score, risk band, revenue at risk and signed reasons per
        account; cancelled accounts are ``closed``, prospects ``unknown``."""
        ids, overrides, fields = _unpack(account_ids, accounts, "account_id", "account")
        return await self._score(
            "churn_risk", ids, overrides, fields, top_reasons, allow_stale, ScoreAccountsResponse
        )

    @bentoml.api(input_spec=ValueAccountsRequest)
    async def value_accounts(
        self, account_ids: list[str], allow_stale: bool = False
    ) -> ValueAccountsResponse:
        """Expected remaining months and lifetime value per account, each with its 80 % range,
        from the churn champion's hazard over the account's next renewals (``crm-intel value
        accounts`` for the whole book)."""
        champion = self.champions["churn_risk"]
        try:
            records = await self.online.rows_async("account", account_ids, status=True)
            ttl = self.online.ttl("account")
            reference = await self._lifetime_reference(champion)
        except OnlineStoreUnavailable as err:
            return _unavailable(err)  # type: ignore[return-value]
        fields = [f"account_ids[{i}]" for i in range(len(account_ids))]
        results = await asyncio.to_thread(
            value_items,
            reference,
            champion.model,
            records,
            ttl=ttl,
            allow_stale=allow_stale,
            fields=fields,
        )
        counts = dict.fromkeys(STATUSES, 0)
        for r in results:
            counts[r["status"]] += 1
        return ValueAccountsResponse.model_validate(
            {
                "model": "churn_risk",
                "model_version": champion.version,
                "persistence": reference.persistence,
                **counts,
                "results": results,
            }
        )

    @bentoml.api(input_spec=AttributionRequest)
    def attribution(
        self, journeys: list[Any] | None = None, period: Any = None, models: list[str] | None = None
    ) -> AttributionResponse:
        """Channel credit for journeys given in the request, or the latest run's for a period."""
        models = list(models or ["markov_1"])
        try:
            if journeys is not None:
                learned = any(m in LEARNED_MODELS for m in models)
                credit = credit_for_paths(
                    [j.model_dump() for j in journeys],
                    models,
                    self.attribution_champion.get() if learned else None,
                )
            else:
                credit = period_credit(
                    self.settings.data_dir / "attribution", period.start, period.end, models
                )
        except AttributionError as err:
            return _error(400, "bad_journeys", str(err))  # type: ignore[return-value]
        except NoAttributionModel as err:
            return _error(  # type: ignore[return-value]
                409,
                "no_attribution_model",
                f"the data-driven models cannot credit these journeys: {err}",
                "ask for other models, or have an operator register one with "
                "`crm-intel attribution run` (the data-driven model is registered as "
                "content_attribution)",
            )
        except NoAttributionRun as err:
            return _error(  # type: ignore[return-value]
                404,
                "no_attribution_run",
                err.public,
                "ask for one of those periods, or have an operator credit this one with "
                f"`crm-intel attribution run --start {period.start} --end {period.end} --out "
                f"attribution/{period.start}_{period.end}/credit.parquet` (a folder under the "
                "data directory)",
            )
        out: dict[str, Any] = {
            "source": credit.source,
            "run": credit.run,
            "channels": credit.channels,
            "credited_by": credit.credited_by,
        }
        if credit.period:
            out["period"] = {"start": credit.period[0], "end": credit.period[1]}
        return AttributionResponse.model_validate(out)

    @info_app.get("/model_info", response_model=ModelInfoResponse)
    def model_info(self) -> dict[str, Any]:
        """The champions being served (version, features, run) and the online store's state."""
        problem = self._store_problem()
        return {
            "models": self.champions.info(),
            "online_store": problem.public if problem else "ready",
            "online_store_ready": problem is None,
            "crm_field_names": self.settings.crm_field_names,
            "release_mode": self.settings.release_mode,
            "canary_fraction": (
                self.settings.canary_fraction if self.settings.release_mode == "canary" else None
            ),
            "score_log": None if self.score_log is None else self.score_log.counters(),
        }


# The first of the service's own middlewares, in front of BentoML's routes (BentoML's own
# metrics, which would label requests by raw path, are turned off by serving.runtime).
CRMIntel.add_asgi_middleware(_Gate)  # type: ignore[attr-defined]  # bentoml.Service method


def _unpack(
    ids: list[str] | None, items: list[Any] | None, key: str, entity: str
) -> tuple[list[str], list[dict[str, Any] | None], list[str]]:
    """Ids, per-item request features and the request field naming each item."""
    if ids is not None:
        return list(ids), [None] * len(ids), [f"{entity}_ids[{i}]" for i in range(len(ids))]
    assert items is not None  # the request schema guarantees one of them
    out_ids, overrides = [], []
    for item in items:
        out_ids.append(getattr(item, key))
        # an empty features object stays {} (not None): an unknown id sent with it is told so
        given = None if item.features is None else item.features.model_dump(exclude_unset=True)
        overrides.append(given)
    return out_ids, overrides, [f"{entity}s[{i}].{key}" for i in range(len(items))]
