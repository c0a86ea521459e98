"""``crm-intel report …``: pages people read, written from the data directory (no server)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from crm_intel.commands.common import (
    DataDirOption,
    JsonOption,
    console,
    emit_json,
    fail,
    settings_for,
)

if TYPE_CHECKING:
    import pandas as pd

    from crm.settings import Settings

app = typer.Typer(
    help="Pages for sales and marketing: self-contained HTML files that open offline.",
    no_args_is_help=True,
)

OutOption = Annotated[
    Path, typer.Option("--out", help="The HTML page to write (replaced atomically).")
]
# The models whose batch scores the funnel page shows: the entity each scores, how to train it
SCORED = {
    "lead_conversion": ("lead", "crm-intel train lead"),
    "churn_risk": ("account", "crm-intel train churn"),
}


def batch_scores(settings: Settings) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Each champion's batch scores (``serving.batch.score_batch``), the scored rows only; a model
    that cannot be scored now (no features, no champion, no online store) is left out with a
    note saying why. Nothing here fails the page."""
    from features.schema import ENTITIES

    frames: dict[str, pd.DataFrame] = {}
    notes: dict[str, str] = {}
    for model, (entity, train) in SCORED.items():
        if not (settings.features_dir / f"{ENTITIES[entity][1]}.parquet").exists():
            notes[model] = (
                "no features yet: run `crm-intel features build`, `features apply` and "
                "`features materialize`"
            )
            continue
        # heavy (Feast, MLflow): only once there are features to score
        from features.online_store import FeatureStoreNotReadyError
        from serving.batch import score_batch
        from serving.online import OnlineStoreUnavailable
        from training.registry import NoChampion

        try:
            frame, champion = score_batch(settings, model)
        except NoChampion:
            notes[model] = f"no champion model yet: run `{train}`"
            continue
        except (FeatureStoreNotReadyError, OnlineStoreUnavailable, FileNotFoundError):
            notes[model] = "the feature store is not ready: run `crm-intel features materialize`"
            continue
        except Exception as err:  # the page is the product: a scoring failure is a note on it
            notes[model] = f"scoring failed ({type(err).__name__})"
            console.print(f"[yellow]warning:[/] {model} scores left out: {err}", highlight=False)
            continue
        scored = frame[frame["status"] == "scored"] if len(frame) else frame
        if not len(scored):
            notes[model] = f"the champion (version {champion.version}) had nothing open to score"
            continue
        frames[model] = scored
    return frames, notes


@app.command()
def funnel(
    out: OutOption = Path("funnel.html"),
    data_dir: DataDirOption = None,
    json_: JsonOption = False,
) -> None:
    """Write the funnel cockpit, a self-contained HTML page (--json: its figures too).

    Lead → opportunity → won; conversion and stage velocity by source, segment and month; KPI
    cards for the latest complete month; the lead and churn models' scores, when trained.
    """
    from features.pipeline import FeatureInputError
    from reports.funnel import build_funnel_page, write_funnel_page
    from training.funnel import funnel_json, load_funnel

    settings = settings_for(data_dir)
    started = time.perf_counter()
    try:
        figures = load_funnel(settings.raw_dir)
    except (FileNotFoundError, FeatureInputError) as err:
        raise fail(str(err)) from None
    frames, notes = batch_scores(settings)
    for model, note in notes.items():
        console.print(f"{model}: no scores on the page ({note})", highlight=False)
    page = build_funnel_page(
        figures,
        scores=frames,
        notes=notes,
        currency=settings.currency,
    )
    write_funnel_page(page, out)
    seconds = time.perf_counter() - started
    totals = figures.totals
    console.print(
        f"{totals['leads']:,} leads, {totals['opportunities']:,} reached opportunity, "
        f"{totals['won']:,} won; funnel page ({len(page.encode()) / 1e6:.1f} MB) → {out}",
        highlight=False,
    )
    if json_:
        emit_json(
            {
                **funnel_json(figures),
                "out": str(out),
                "scores": {m: len(f) for m, f in frames.items()},
                "score_notes": notes,
                "seconds": round(seconds, 3),
            }
        )
