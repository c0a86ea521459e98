"""Scheduled runs: ``nightly`` (import → features → batch scores → CRM write-back) and ``retrain``
(back-test → train → gate), one at a time, each step recorded in the run ledger.

A run is an ordered tuple of named steps (:class:`Step`; :data:`NIGHTLY`, :data:`RETRAIN`); each
step calls the stage functions the CLI calls (no subprocesses) and returns a :class:`Done`, or
raises to stop the run. Adding a step is one line in the tuple.

- **One at a time**: a run holds ``<data_dir>/run.lock`` (:mod:`filelock`, an OS lock the kernel
  drops when the process dies); a second run meanwhile is refused with :class:`RunLocked`.
- **The ledger**: table ``runs`` in the score log's database, on its own metadata. Each step of
  an attempt is a row (``started``, then ``done``, ``failed`` or ``skipped``) and the attempt
  itself a row whose step is :data:`WHOLE_RUN`. A row left ``started`` by a killed process is
  marked ``failed`` by the next run on that host.
- **Once per date**: a ``(kind, run_date)`` whose attempt finished is not run again (nothing is
  written, not even a ledger row); after a failed or killed attempt the next one runs in full.
- **Previous outputs keep serving** until a step replaces them whole: feature tables and the
  online store are swapped by their own stages, and the write-back files are both written to
  temporary files first and renamed only once both are complete.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock, Timeout
from sqlalchemy.engine import Engine

from crm.exports.common import SourceIds
from crm.io import atomic_file
from crm.settings import Settings
from crm_intel.run_ledger import (
    WHOLE_RUN,
    close_abandoned,
    finish_step,
    finished_at,
    holder,
    now_utc,
    open_ledger,
    start_step,
)

log = logging.getLogger(__name__)

KINDS = ("nightly", "retrain")
LOCK_FILE = "run.lock"
WRITEBACK_DIR = "writeback"
MONITOR_DIR = "monitor"
# model → (entity, join key, write-back file)
WRITEBACK = {
    "lead_conversion": ("lead", "lead_id", "leads.csv"),
    "churn_risk": ("account", "account_id", "accounts.csv"),
}
WRITTEN_BACK = ("scored", "stale")  # open leads and live accounts; closed ones are not
LIVE_LIFECYCLES = ("open", "recycled", "customer")  # in the CRM as open or live
BACKTEST_CUTOFFS = 4  # as `crm-intel backtest`
SEED = 0


class RunLocked(RuntimeError):
    """Another run holds the data directory's run lock."""


class StepFailed(RuntimeError):
    """A step's expected failure (e.g. bad input), said in its message; no traceback logged."""


@dataclass(frozen=True)
class Done:
    """What a step did: one line for people and the ledger, figures for ``--json``."""

    message: str
    figures: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class RunContext:
    """One attempt: its settings and identity, and what its steps hand to later steps."""

    settings: Settings
    kind: str
    run_date: date
    run_id: str
    source: Path | None = None  # nightly: the export folder to import (--from)
    source_format: str = "contract"  # its shape (--format)
    mapping: Path | None = None  # salesforce or hubspot: the user's mapping (--mapping)
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """A named step: ``run`` does it (raises to stop the run); ``skip`` gives a reason not to."""

    name: str
    run: Callable[[RunContext], Done]
    skip: Callable[[RunContext], str | None] = lambda _ctx: None


@dataclass(frozen=True)
class StepOutcome:
    step: str
    status: str  # done | failed | skipped
    seconds: float
    message: str
    figures: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOutcome:
    """An attempt's end: ``done``, ``failed`` (at ``failed_step``) or ``already_done`` (an
    earlier attempt for the date finished at ``finished_at``; nothing was run)."""

    kind: str
    run_date: date
    run_id: str | None
    status: str
    steps: tuple[StepOutcome, ...] = ()
    failed_step: str | None = None
    message: str = ""
    finished_at: datetime | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["run_date"] = self.run_date.isoformat()
        for item in (out, *out["steps"]):
            item["seconds"] = round(item["seconds"], 3)
        return out


# ------------------------------------------------------------------------------ nightly steps


def _no_source(ctx: RunContext) -> str | None:
    return None if ctx.source is not None else "no --from folder given: raw tables kept as they are"


def import_step(ctx: RunContext) -> Done:
    """Import the export folder (``--format``'s shape) into ``raw/``, all or nothing."""
    from crm.contract import TABLES, ContractError
    from crm.importer import import_export

    assert ctx.source is not None
    try:
        counts = import_export(
            ctx.source,
            ctx.settings.raw_dir,
            ctx.source_format,
            ctx.mapping,
            lead_identity=ctx.settings.lead_identity,
        )
    except ContractError as err:
        first = "; ".join(str(p) for p in err.problems[:3])
        raise StepFailed(
            f"{ctx.source} breaks the data contract ({len(err.problems)} problem(s); first: "
            f"{first}); nothing was imported"
        ) from None
    tables = {name: rows for name, rows in counts.items() if name in TABLES}
    return Done(
        f"{sum(tables.values()):,} rows in {len(tables)} tables from {ctx.source}",
        {"tables": tables},
    )


def build_features(ctx: RunContext) -> Done:
    from features.store import build

    counts = build(ctx.settings)
    return Done(f"{sum(counts.values()):,} rows in {len(counts)} feature tables", {"rows": counts})


def apply_features(ctx: RunContext) -> Done:
    from features.store import apply

    names = apply(ctx.settings)
    return Done(f"{len(names)} Feast objects applied", {"applied": names})


def materialize_features(ctx: RunContext) -> Done:
    from features.store import materialize

    result = materialize(ctx.settings)
    return Done(
        f"{sum(result.rows.values()):,} rows online ({result.rows_per_second:,.0f} rows/s)",
        {"rows": result.rows},
    )


def _score(ctx: RunContext, model_name: str) -> Done:
    """Batch-score every lead (account) the store knows with the champion, log the scored ones
    with their trend, and hand the frame to the write-back."""
    from serving.batch import score_batch, trend_and_log

    frame, champion = score_batch(ctx.settings, model_name)
    logged = 0
    if ctx.settings.score_log:
        logged = trend_and_log(
            ctx.settings, frame, model_name, champion, datetime.now(UTC), ctx.run_id
        )
    ctx.outputs[model_name] = frame
    statuses = frame["status"].value_counts().to_dict() if len(frame) else {}
    said = ", ".join(f"{n:,} {status}" for status, n in sorted(statuses.items()))
    return Done(
        f"{len(frame):,} rows ({said or 'none'}) with {model_name} v{champion.version}; "
        f"{logged:,} logged",
        {"model_version": champion.version, "statuses": statuses, "logged": logged},
    )


def writeback_frame(
    frame: pd.DataFrame,
    model_name: str,
    names: Mapping[str, str],
    source_ids: SourceIds | None = None,
    duplicate_of: pd.Series | None = None,
) -> pd.DataFrame:
    """The CRM's update from a batch frame: the id and the CRM fields of the model's entity,
    one row per open lead or live account: ``scored``; ``stale`` with emptied scores and the
    reason; or, for one the CRM has as open or live but with no features yet (an account that
    subscribed since the last weekly snapshot), emptied scores and that reason. Closed ones and
    ids the CRM does not have as open or live are left out.

    Data imported from a CRM's own export (``source_ids`` has its key field) is keyed by that
    CRM's ids (Salesforce ``Id``, HubSpot ``Record ID``): the file is that CRM's update import.

    ``duplicate_of`` (duplicate lead id → its surviving lead, from ``crm-intel dedupe leads``)
    fills ``Duplicate_Of__c``; a duplicate the batch did not score at all (its engagement was
    merged onto its survivor) gets a row of its own with emptied scores and that reason.
    """
    entity, key, _ = WRITEBACK[model_name]
    columns = [key, *(name for item, name in names.items() if item.startswith(f"{entity}_"))]
    if not len(frame) and duplicate_of is None:
        return pd.DataFrame(columns=columns)
    not_yet = (frame["status"] == "unknown") & frame["lifecycle"].isin(LIVE_LIFECYCLES)
    keep = frame["status"].isin(WRITTEN_BACK) | not_yet
    rows = frame[keep].reindex(columns=columns)
    reasons = names[f"{entity}_reasons"]
    rows[reasons] = rows[reasons].astype(object)
    rows.loc[not_yet[keep].to_numpy(), reasons] = (
        f"Not scored yet: new since the last weekly update; the next one scores this {entity}"
    )
    if entity == "lead" and duplicate_of is not None:
        rows = _with_duplicates(rows, frame, key, names, duplicate_of)
    # whole points, also beside the emptied scores of stale rows (else written as 12.0)
    for item in (f"{entity}_score", f"{entity}_trend_change"):
        rows[names[item]] = pd.to_numeric(rows[names[item]]).round().astype("Int64")
    source_key = source_ids.key_field(entity) if source_ids is not None else None
    if source_key is not None and source_ids is not None:
        rows[key] = source_ids.of(entity, rows[key].astype(str))
        if entity == "lead":
            survivor = rows[names["lead_duplicate_of"]]
            rows[names["lead_duplicate_of"]] = [
                None if pd.isna(v) else source_ids.of(entity, [str(v)])[0] for v in survivor
            ]
        rows = rows.rename(columns={key: source_key})
    return rows.reset_index(drop=True)


def _with_duplicates(
    rows: pd.DataFrame,
    frame: pd.DataFrame,
    key: str,
    names: Mapping[str, str],
    duplicate_of: pd.Series,
) -> pd.DataFrame:
    """Lead rows with ``Duplicate_Of__c``, and a row for each duplicate the batch left out."""
    unscored = duplicate_of.index.difference(pd.Index(frame[key].astype(str)))
    if len(unscored):
        extra = pd.DataFrame({key: unscored}).reindex(columns=rows.columns)
        extra[names["lead_reasons"]] = [
            f"Not scored: a duplicate of {duplicate_of[i]}, whose score covers this record"
            for i in unscored
        ]
        rows = pd.concat([rows, extra.astype(object)], ignore_index=True)
    rows[names["lead_duplicate_of"]] = rows[key].astype(str).map(duplicate_of).astype(object)
    return rows


def write_back(ctx: RunContext) -> Done:
    """Write ``writeback/leads.csv`` and ``accounts.csv``: both to temporary files first, renamed
    over the previous ones only once both are complete. Leads name their surviving lead in
    ``Duplicate_Of__c`` when ``crm-intel dedupe leads`` wrote its default output."""
    from features.duplicates import duplicate_of

    folder = ctx.settings.data_dir / WRITEBACK_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(".*.tmp-*"):  # left by a killed run; the run lock is ours
        stale.unlink(missing_ok=True)
    frames = {}
    source_ids = SourceIds(ctx.settings.raw_dir)
    duplicates = duplicate_of(ctx.settings.duplicate_leads_path)
    for model_name, (entity, _, file_name) in WRITEBACK.items():
        if model_name not in ctx.outputs:
            raise RuntimeError(f"no {model_name} scores to write back (its score step did not run)")
        frames[file_name] = writeback_frame(
            ctx.outputs[model_name],
            model_name,
            ctx.settings.crm_field_names,
            source_ids,
            duplicates if entity == "lead" else None,
        )
    with ExitStack() as stack:
        for file_name, frame in frames.items():
            tmp = stack.enter_context(atomic_file(folder / file_name))
            frame.to_csv(tmp, index=False)
    rows = {file_name: len(frame) for file_name, frame in frames.items()}
    said = ", ".join(f"{file_name} {n:,} rows" for file_name, n in rows.items())
    return Done(f"{said} → {folder}", {"rows": rows, "folder": str(folder)})


def monitor_step(ctx: RunContext) -> Done:
    """``crm-intel monitor``: the report beside the write-back (``monitor/monitor.json`` and
    ``monitor.html``). Alerts do not fail the run (its outputs are good); they are its message."""
    from monitoring.monitor import monitor
    from monitoring.page import render

    folder = ctx.settings.data_dir / MONITOR_DIR
    report = monitor(ctx.settings)
    render(report, folder / "monitor.html")
    with atomic_file(folder / "monitor.json") as tmp:
        tmp.write_text(json.dumps(report, default=str, indent=1), encoding="utf-8")
    alerts = report["alerts"]
    said = (
        f"{len(alerts)} alert(s): " + "; ".join(a["message"] for a in alerts[:3])
        if alerts
        else "no alerts"
    )
    return Done(f"{said} → {folder / 'monitor.html'}", {"alerts": len(alerts)})


NIGHTLY: tuple[Step, ...] = (
    Step("import", import_step, skip=_no_source),
    Step("features_build", build_features),
    Step("features_apply", apply_features),
    Step("materialize", materialize_features),
    Step("score_leads", lambda ctx: _score(ctx, "lead_conversion")),
    Step("score_accounts", lambda ctx: _score(ctx, "churn_risk")),
    Step("write_back", write_back),
    Step("monitor", monitor_step),
)


# ------------------------------------------------------------------------------ retrain steps


def _training_inputs(ctx: RunContext, model_name: str) -> tuple[Any, Any, Any, Any]:
    """The model's labelled snapshots, spec, purged protocol and (simulated data) truth, read
    once per run."""
    if model_name not in ctx.outputs.get("training_inputs", {}):
        from crm_intel.commands.training import protocol_for
        from features.training import training_set
        from simulator.truth import read_probability_truth
        from training.pipeline import SPECS

        spec = SPECS[model_name]
        ctx.outputs.setdefault("training_inputs", {})[model_name] = (
            training_set(ctx.settings, model_name),
            spec,
            protocol_for(ctx.settings, model_name),
            read_probability_truth(ctx.settings.truth_dir, spec.truth_table),
        )
    inputs: tuple[Any, Any, Any, Any] = ctx.outputs["training_inputs"][model_name]
    return inputs


def _backtest(ctx: RunContext, model_name: str) -> Done:
    """Back-test at rolling cutoffs (full selection at each) and log it, as `crm-intel
    backtest`."""
    from training.backtest import backtest
    from training.tracking import log_backtest

    frame, spec, protocol, truth = _training_inputs(ctx, model_name)
    result = backtest(frame, spec, protocol, BACKTEST_CUTOFFS, truth, SEED)
    run_id = log_backtest(result, ctx.settings.tracking_uri())
    summary = result.summary
    said = f"{model_name}: champion ROC AUC {summary.get('model_roc_auc', float('nan')):.4f}"
    if "lift_over_best_baseline" in summary:
        said += f", {summary['lift_over_best_baseline']:+.4f} over {summary['best_baseline']}"
    return Done(
        f"{said} ({summary.get('cutoffs', BACKTEST_CUTOFFS)} cutoffs); MLflow run {run_id}",
        {"summary": summary, "mlflow_run_id": run_id},
    )


def _train(ctx: RunContext, model_name: str) -> Done:
    """Select, test and refit under the purged protocol, then the short back-test of the winner,
    as `crm-intel train`; registering and gating are the next step's."""
    from training.backtest import backtest
    from training.selection import candidate_from_record
    from training.snapshots import train_time_split

    frame, spec, protocol, truth = _training_inputs(ctx, model_name)
    result = train_time_split(frame, spec, protocol, truth=truth, random_state=SEED)
    cutoffs = ctx.settings.train_backtest_cutoffs  # as `crm-intel train` before it registers
    if result.metrics and cutoffs:
        try:
            done = backtest(
                frame,
                spec,
                protocol,
                cutoffs,
                truth,
                SEED,
                candidate_from_record(result.candidate),
            )
            result.backtest = {"summary": done.summary, "rows": done.rows.to_dict("records")}
        except ValueError as err:
            result.notes.append(f"no short back-test: {err}")
    ctx.outputs[f"trained:{model_name}"] = result
    summary = result.summary()
    roc_auc = summary.get("roc_auc")
    tested = "untested" if roc_auc is None else f"test ROC AUC {roc_auc:.4f}"
    return Done(
        f"{model_name}: {summary.get('candidate') or summary.get('family')}, {tested}",
        {"summary": summary},
    )


def _gate(ctx: RunContext, model_name: str) -> Done:
    """Log and register the trained model; the promotion gate makes it champion only when it
    beats the champion by the settings' margin, as `crm-intel train` does."""
    from training.tracking import log_training_run

    result = ctx.outputs.get(f"trained:{model_name}")
    if result is None:
        raise RuntimeError(f"no trained {model_name} to gate (its train step did not run)")
    record = log_training_run(
        result, ctx.settings.tracking_uri(), ctx.settings.promotion_margin, register=True
    )
    decision = record.get("decision") or {}
    verdict = "promoted to champion" if decision.get("promoted") else "kept as challenger"
    return Done(
        f"{model_name} v{record['model_version']} {verdict}: {decision.get('reason', '')}",
        {
            "model_version": record["model_version"],
            "mlflow_run_id": record["run_id"],
            "promotion": decision,
        },
    )


RETRAIN: tuple[Step, ...] = (
    Step("backtest_lead", lambda ctx: _backtest(ctx, "lead_conversion")),
    Step("backtest_churn", lambda ctx: _backtest(ctx, "churn_risk")),
    Step("train_lead", lambda ctx: _train(ctx, "lead_conversion")),
    Step("train_churn", lambda ctx: _train(ctx, "churn_risk")),
    Step("gate_lead", lambda ctx: _gate(ctx, "lead_conversion")),
    Step("gate_churn", lambda ctx: _gate(ctx, "churn_risk")),
)

STEPS: dict[str, tuple[Step, ...]] = {"nightly": NIGHTLY, "retrain": RETRAIN}


# ---------------------------------------------------------------------------------- executor


def lock_path(settings: Settings) -> Path:
    return settings.data_dir / LOCK_FILE


@contextmanager
def run_lock(settings: Settings, engine: Engine) -> Iterator[None]:
    """Hold the data directory's run lock, or raise :class:`RunLocked` at once."""
    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise RunLocked(
            f"another crm-intel run holds {path}: {holder(engine)}; this one did nothing"
        ) from None
    try:
        yield
    finally:
        lock.release()


OnStep = Callable[[int, int, str, StepOutcome | None], None]


def _quiet(_index: int, _total: int, _step: str, _outcome: StepOutcome | None) -> None:
    pass


def execute(
    settings: Settings,
    kind: str,
    run_date: date,
    steps: tuple[Step, ...] | None = None,
    source: Path | None = None,
    on_step: OnStep = _quiet,
    source_format: str = "contract",
    mapping: Path | None = None,
) -> RunOutcome:
    """Run ``steps`` (default: :data:`STEPS` of ``kind``) in order, under the run lock, each
    recorded in the ledger; stop at the first that fails.

    Args:
        run_date: the day the run stands for; when an attempt for it finished, nothing runs.
        source: nightly's export folder (``--from``), of ``source_format``'s shape, read with
            ``mapping`` (salesforce, hubspot).
        on_step: called before each step (outcome None) and after it.

    Raises:
        RunLocked: another run holds the lock.
    """
    if kind not in STEPS:
        raise ValueError(f"unknown run kind {kind!r}: use one of {', '.join(KINDS)}")
    steps = STEPS[kind] if steps is None else steps
    engine = open_ledger(settings)
    with run_lock(settings, engine):
        done_at = finished_at(engine, kind, run_date)
        if done_at is not None:
            return RunOutcome(
                kind,
                run_date,
                None,
                "already_done",
                message=f"the {kind} run for {run_date} finished at "
                f"{done_at:%Y-%m-%d %H:%M:%S} UTC; nothing to do",
                finished_at=done_at,
            )
        close_abandoned(engine)
        run_id = f"{kind}-{run_date:%Y%m%d}-{uuid.uuid4().hex[:8]}"
        ctx = RunContext(settings, kind, run_date, run_id, source, source_format, mapping)
        started = time.perf_counter()
        whole = start_step(engine, ctx.run_id, ctx.kind, ctx.run_date, WHOLE_RUN)
        outcomes: list[StepOutcome] = []
        try:
            for index, step in enumerate(steps, start=1):
                on_step(index, len(steps), step.name, None)
                outcome = _run_step(engine, ctx, step)
                outcomes.append(outcome)
                on_step(index, len(steps), step.name, outcome)
                if outcome.status == "failed":
                    message = f"step {step.name} failed: {outcome.message}"
                    finish_step(engine, whole, "failed", message)
                    return RunOutcome(
                        kind,
                        run_date,
                        run_id,
                        "failed",
                        tuple(outcomes),
                        step.name,
                        message,
                        seconds=time.perf_counter() - started,
                    )
        except BaseException:  # Ctrl-C, SystemExit: recorded, then let through
            finish_step(engine, whole, "failed", "interrupted")
            raise
        seconds = time.perf_counter() - started
        message = f"{len(steps)} steps in {seconds:.1f}s"
        finish_step(engine, whole, "done", message)
        return RunOutcome(
            kind, run_date, run_id, "done", tuple(outcomes), None, message, now_utc(), seconds
        )


def _run_step(engine: Engine, ctx: RunContext, step: Step) -> StepOutcome:
    reason = step.skip(ctx)
    if reason is not None:
        row = start_step(engine, ctx.run_id, ctx.kind, ctx.run_date, step.name, "skipped")
        finish_step(engine, row, "skipped", reason)
        return StepOutcome(step.name, "skipped", 0.0, reason)
    row = start_step(engine, ctx.run_id, ctx.kind, ctx.run_date, step.name)
    started = time.perf_counter()
    try:
        done = step.run(ctx)
    except Exception as err:  # noqa: BLE001 - any failure stops the run, with its reason
        if not isinstance(err, StepFailed):  # unexpected: the traceback, for the log
            log.warning("step %s failed", step.name, exc_info=True)
        message = str(err) or type(err).__name__
        finish_step(engine, row, "failed", message)
        return StepOutcome(step.name, "failed", time.perf_counter() - started, message)
    except BaseException:  # Ctrl-C, SystemExit: recorded, then let through
        finish_step(engine, row, "failed", "interrupted")
        raise
    finish_step(engine, row, "done", done.message)
    return StepOutcome(step.name, "done", time.perf_counter() - started, done.message, done.figures)
