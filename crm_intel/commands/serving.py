"""``crm-intel score leads|accounts`` (nightly bulk file), ``crm-intel score table`` (a
bring-your-own table model over a file) and ``crm-intel serve`` (the API)."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from crm_intel.commands.common import (
    DataDirOption,
    JsonOption,
    console,
    emit_json,
    fail,
    settings_for,
)

app = typer.Typer(
    help="Bulk scoring for the CRM's nightly update: same fields as the API, to Parquet or CSV.",
    no_args_is_help=True,
)

OutOption = Annotated[
    Path, typer.Option("--out", help="Output file: .parquet or .csv.", show_default=False)
]
TopOption = Annotated[
    int | None, typer.Option("--top-reasons", help="Reasons per score (default from settings).")
]


AsOfOption = Annotated[
    datetime | None,
    typer.Option(
        "--as-of",
        help="Score as of a past date: the features and lifecycle of that day (a back-fill of "
        "the score log), logged with that date.",
        formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
        show_default=False,
    ),
]
EngineOption = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="duckdb: score in this process; spark: score in Spark's executors at "
        "CRM_INTEL_SPARK_MASTER (same rows). Default from settings (CRM_INTEL_ENGINE).",
        show_default=False,
    ),
]
VersionOption = Annotated[
    str | None,
    typer.Option(
        "--model-version",
        help="Score with this registered version instead of the champion (e.g. the version "
        "that was serving on the --as-of date).",
        show_default=False,
    ),
]


def _score(
    model: str,
    out: Path,
    data_dir: Path | None,
    top: int | None,
    json_: bool,
    as_of: datetime | None = None,
    version: str | None = None,
    engine: str | None = None,
) -> None:
    from mlflow.exceptions import MlflowException

    from features.spark_session import SparkUnavailableError
    from features.store import FeatureStoreNotReadyError
    from serving.batch import UnsupportedOutput, trend_and_log, write_scores
    from serving.online import OnlineStoreUnavailable
    from training.registry import NoChampion, load_version

    settings = settings_for(data_dir)
    engine = (engine or settings.engine).lower()
    if engine not in ("duckdb", "spark"):
        raise fail(f"--engine {engine}: use duckdb (in this process) or spark")
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise fail(f"--out {out}: use a .parquet or .csv file")
    started = time.perf_counter()
    when = as_of.replace(tzinfo=UTC) if as_of is not None else datetime.now(UTC)
    logged = 0
    try:
        champion = None
        if version is not None:
            try:
                champion = load_version(settings.tracking_uri(), model, version)
            except MlflowException:
                raise fail(
                    f"--model-version {version}: {model} has no such version "
                    "(`crm-intel models list` shows them)"
                ) from None
        frame, champion = _batch(engine)(
            settings, model, top=top, champion=champion, as_of=None if as_of is None else when
        )
        if settings.score_log:
            logged = trend_and_log(
                settings, frame, model, champion, when, f"batch-{when:%Y%m%dT%H%M%S}"
            )
        write_scores(frame, out)
    except (
        NoChampion,
        OnlineStoreUnavailable,
        FeatureStoreNotReadyError,
        FileNotFoundError,
        UnsupportedOutput,
        SparkUnavailableError,
    ) as err:
        raise fail(str(err)) from None
    seconds = time.perf_counter() - started
    statuses = frame["status"].value_counts().to_dict() if len(frame) else {}
    said = ", ".join(f"{n:,} {status}" for status, n in sorted(statuses.items()))
    dated = f" as of {when:%Y-%m-%d}" if as_of is not None else ""
    console.print(
        f"{len(frame):,} rows ({said or 'none'}) with {model} v{champion.version}{dated} → {out} "
        f"({seconds:.1f}s; {logged:,} logged)"
    )
    if json_:
        band = "risk_band" if "risk_band" in frame.columns else "grade"
        scored = frame[frame["status"] == "scored"] if len(frame) else frame
        bands = scored[band].value_counts().to_dict() if len(scored) else {}
        emit_json(
            {
                "model": model,
                "model_version": champion.version,
                "rows": len(frame),
                "statuses": statuses,
                "out": str(out),
                "seconds": round(seconds, 3),
                "logged": logged,
                "as_of": None if as_of is None else when.isoformat(),
                ("risk_bands" if band == "risk_band" else "grades"): bands,
            }
        )


def _batch(engine: str) -> Callable[..., tuple[Any, Any]]:
    """The batch scorer of ``engine``: in process (duckdb) or in Spark's executors (spark)."""
    if engine == "spark":
        from serving.spark_batch import score_batch_spark

        return score_batch_spark
    from serving.batch import score_batch

    return score_batch


@app.command()
def leads(
    out: OutOption,
    data_dir: DataDirOption = None,
    top_reasons: TopOption = None,
    json_: JsonOption = False,
    as_of: AsOfOption = None,
    model_version: VersionOption = None,
    engine: EngineOption = None,
) -> None:
    """Score every lead in the online store with the lead_conversion champion."""
    _score("lead_conversion", out, data_dir, top_reasons, json_, as_of, model_version, engine)


@app.command()
def accounts(
    out: OutOption,
    data_dir: DataDirOption = None,
    top_reasons: TopOption = None,
    json_: JsonOption = False,
    as_of: AsOfOption = None,
    model_version: VersionOption = None,
    engine: EngineOption = None,
) -> None:
    """Score every account in the online store with the churn_risk champion."""
    _score("churn_risk", out, data_dir, top_reasons, json_, as_of, model_version, engine)


@app.command()
def table(
    name: Annotated[
        str,
        typer.Option(
            "--name",
            help="Registered table model (crm-intel train ... --table --name).",
            show_default=False,
        ),
    ],
    table_file: Annotated[
        Path,
        typer.Option(
            "--table",
            help="Rows to score (CSV, Parquet or Excel) with the columns the model was trained on.",
            exists=True,
            dir_okay=False,
            show_default=False,
        ),
    ],
    out: OutOption,
    id_col: Annotated[
        str | None,
        typer.Option(
            "--id", help="Id column of --table (default: the one the model was trained with)."
        ),
    ] = None,
    data_dir: DataDirOption = None,
    top_reasons: TopOption = None,
    json_: JsonOption = False,
) -> None:
    """Score every row of a table with the champion of a bring-your-own table model."""
    from serving.batch import UnsupportedOutput, write_scores
    from serving.table_scoring import score_table_file
    from training.registry import NoChampion

    settings = settings_for(data_dir)
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise fail(f"--out {out}: use a .parquet or .csv file")
    started = time.perf_counter()
    try:
        frame, champion = score_table_file(settings, name, table_file, id_col, top_reasons)
        write_scores(frame, out)
    except (NoChampion, UnsupportedOutput, ValueError) as err:
        raise fail(str(err)) from None
    seconds = time.perf_counter() - started
    console.print(
        f"scored {len(frame):,} rows of {table_file.name} with {name} v{champion.version} "
        f"→ {out} ({seconds:.1f}s)"
    )
    if json_:
        emit_json(
            {
                "model": name,
                "model_version": champion.version,
                "rows": len(frame),
                "out": str(out),
                "seconds": round(seconds, 3),
                "grades": frame["grade"].value_counts().to_dict() if len(frame) else {},
            }
        )


def _example_lead(settings: Any) -> str:
    """A lead the service scores now (open, with fresh features), for the curl example."""
    from serving.batch import scorable_ids

    try:
        ids = scorable_ids(settings, "lead")
    except (OSError, ValueError, KeyError):
        ids = []
    return ids[0] if ids else "L0000001"


def serve(
    port: Annotated[
        int | None, typer.Option(help="Port (default 3000, or CRM_INTEL_SERVE_PORT).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface (default 127.0.0.1).")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Serve the scoring API (BentoML) on localhost with the MLflow champions.

    Needs API keys in CRM_INTEL_API_KEYS; without them one key is generated for this run and
    printed once, so that the curl example works. The address and the example are printed once
    the server answers /readyz (loading takes about half a minute); a line says it is starting.
    """
    from serving.runtime import server_env
    from training.registry import MODEL_NAMES, champion_version

    settings = settings_for(data_dir)
    port = port or settings.serve_port
    host = host or settings.serve_host
    uri = settings.tracking_uri()
    missing = [m for m in MODEL_NAMES if champion_version(uri, m) is None]
    if missing:
        raise fail(
            f"no champion for {', '.join(missing)} in {uri}: train with "
            "`crm-intel train lead` and `crm-intel train churn` first"
        )
    env = server_env(settings)
    key_shown = "$CRM_INTEL_API_KEY"
    if not settings.api_keys and settings.api_keys_file is None:
        key = secrets.token_urlsafe(24)
        env["CRM_INTEL_API_KEYS"] = key
        key_shown = key
        console.print("[yellow]CRM_INTEL_API_KEYS is not set: generated a key for this run.[/]")
    root = Path(__file__).resolve().parents[2]
    example = _example_lead(settings)
    docs = (
        "OpenAPI at /docs.json"
        if settings.expose_docs
        else "CRM_INTEL_EXPOSE_DOCS=1 for /docs.json"
    )
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:CRMIntel",
        "--host",
        host,
        "--port",
        str(port),
        "--working-dir",
        str(root),
    ]
    console.print(
        f"starting the scoring API on http://{host}:{port} (it loads the champions and the "
        "features first, about half a minute)…",
        highlight=False,
    )
    server = subprocess.Popen(command, env=env)
    # a stop asked of this command is passed on to the server (Ctrl-C reaches both already)
    signal.signal(signal.SIGTERM, lambda *_: server.send_signal(signal.SIGTERM))
    try:
        if _wait_ready(server, _probe_url(host, port)):
            console.print(f"ready: serving on http://{host}:{port} ({docs}); try:")
            sys.stdout.write(
                f"curl -s -X POST http://{host}:{port}/score_leads "
                f"-H 'Authorization: Bearer {key_shown}' -H 'Content-Type: application/json' "
                f'-d \'{{"lead_ids": ["{example}"]}}\'\n'
            )
            sys.stdout.flush()
        else:
            console.print(
                f"[bold red]error:[/] the server stopped before it was ready (exit code "
                f"{server.returncode}); its log is above",
                highlight=False,
            )
        code = server.wait()
    except KeyboardInterrupt:  # the server got the same Ctrl-C: let it shut down
        code = server.wait()
    raise typer.Exit(code)


READY_POLL_SECONDS = 0.5
NOT_READY_NOTE_SECONDS = 15.0  # a server up but not ready this long: say why, once


def _probe_url(host: str, port: int) -> str:
    """The readiness URL this machine reaches the server at (any-address binds via loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/readyz"


def _wait_ready(server: subprocess.Popen[bytes], url: str) -> bool:
    """Poll ``url`` until the server is ready (True) or exits (False)."""
    import json
    import urllib.error
    import urllib.request

    not_ready_since: float | None = None
    noted = False
    while server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return True
        except urllib.error.HTTPError as err:  # up, not ready: 503 {"ready": false, "error"}
            not_ready_since = not_ready_since or time.monotonic()
            if not noted and time.monotonic() - not_ready_since >= NOT_READY_NOTE_SECONDS:
                try:
                    why = json.loads(err.read())["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    why = f"/readyz answers {err.code}"
                console.print(f"[yellow]not ready yet:[/] {why}; still waiting", highlight=False)
                noted = True
        except OSError:  # not listening yet (URLError is an OSError)
            pass
        time.sleep(READY_POLL_SECONDS)
    return False
