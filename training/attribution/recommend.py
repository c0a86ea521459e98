"""Which model to trust, and why, in plain words: from the likelihood criterion and the intervals.

The recommended model is the data-driven one: the only model here fitted to how journeys
convert, and the one whose form (among the cross-validated candidates) predicts held-out
journeys best, a check that exists on real data. The heuristics and Markov models have no such
check: they are rules. How far each other model is from the recommended one (total variation
distance of channel shares) says how much the choice of model matters on these journeys; the
bootstrap intervals say which channel differences the data can tell apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from training.attribution.credit import Attribution
from training.attribution.evaluate import total_variation_distance

RECOMMENDED = "data_driven"


def recommendation(
    results: Sequence[Attribution], intervals: pd.DataFrame | None = None
) -> dict[str, Any] | None:
    """The recommended model with its evidence, or None when the data-driven model was not run.

    Returns:
        ``model``; ``conversion_model`` (the candidate the cross-validation chose);
        ``cv_log_loss`` and ``cv_auc``; ``candidates`` (each candidate's cross-validated
        log-loss); ``choice`` (why that form, :func:`why_this_form`); ``disagreement`` (TVD of
        every other model from it); ``uncertain_channels`` (channels whose interval includes
        zero); ``reason`` (a paragraph in plain words).
    """
    by_name = {r.model: r for r in results}
    chosen = by_name.get(RECOMMENDED)
    if chosen is None or "cross_validation" not in chosen.details:
        return None
    table = chosen.details["cross_validation"]
    candidates: list[dict[str, Any]] = [
        {"candidate": str(row.candidate), "cv_log_loss": round(float(row.cv_log_loss), 5)}
        for row in table.itertuples()
    ]
    disagreement = {
        r.model: round(
            total_variation_distance(r.by_channel["share"], chosen.by_channel["share"]), 4
        )
        for r in results
        if r.model != RECOMMENDED and not r.channels.empty
    }
    uncertain: list[str] = []
    if intervals is not None and not intervals.empty:
        own = intervals[(intervals["model"] == RECOMMENDED) & intervals["includes_zero"]]
        uncertain = sorted(own["channel"].astype(str))
    name = str(chosen.details.get("model", ""))
    loss = float(chosen.details.get("cv_log_loss", float("nan")))
    auc = float(chosen.details.get("cv_auc", float("nan")))
    choice = why_this_form(table, loss)
    far = [m for m, d in sorted(disagreement.items(), key=lambda kv: -kv[1]) if d >= 0.1]
    reason = (
        f"Trust the data-driven model. It learned how journeys convert ({name}), chosen among "
        f"{len(candidates)} model forms because {choice}; it ranks a converting journey above "
        f"one that did not {auc:.0%} of the time. "
        "It credits each channel with the conversions the model says would be lost without it. "
        "The rule-based models (first, last, linear touch and the like) and Markov chains have no "
        "such check."
    )
    if far:
        named = ", ".join(m.replace("_", " ") for m in far[:4])
        reason += (
            f" {len(far)} of the other models differ from it by 10 points of share or more "
            f"(most: {named}), so the choice of model matters here."
        )
    if uncertain:
        reason += (
            f" The data cannot tell the effect of {', '.join(uncertain)} from none: "
            "their intervals include zero."
        )
    reason += (
        " The intervals show how the credit would move with other journeys of the same kind, "
        "not whether a model's way of crediting is right."
    )
    return {
        "model": RECOMMENDED,
        "conversion_model": name,
        "cv_log_loss": round(loss, 5),
        "cv_auc": round(auc, 4),
        "candidates": candidates,
        "choice": choice,
        "disagreement": disagreement,
        "uncertain_channels": uncertain,
        "reason": reason,
    }


def why_this_form(table: pd.DataFrame, loss: float) -> str:
    """Why the cross-validation chose its form, as a clause for "chosen because ...".

    Either the chosen form predicted held-out journeys best, and the clause says by how much
    against the next form in standard errors of their paired difference (the same journeys and
    folds), so a reader sees whether the data really tell the two apart. Or a richer form did
    a little better, within one standard error, and the simpler form was kept (the one-standard-
    error rule of ``fit_conversion_model``). ``table`` is the model's ``cross_validation``; a
    model reloaded from the registry has none, and ``loss`` is then all there is to say.
    """
    if table.empty or "chosen" not in table or not table["chosen"].any():
        return f"it predicted journeys it had not seen well (held-out log-loss {loss:.4f})"
    chosen = table[table["chosen"]].iloc[0]
    others = table[~table["chosen"]]
    if others.empty:
        return (
            "it was the only form the journeys could be fitted with "
            f"(held-out log-loss {chosen.cv_log_loss:.4f})"
        )
    rival = others.loc[others["cv_log_loss"].idxmin()]
    if rival.cv_log_loss < chosen.cv_log_loss:
        return (
            "it predicted journeys it had not seen as well as the best form tried, within the "
            f"noise of the estimate ({rival.candidate}: held-out log-loss "
            f"{rival.cv_log_loss:.4f} against its {chosen.cv_log_loss:.4f}), and it is simpler"
        )
    said = (
        f"it predicted journeys it had not seen best (held-out log-loss "
        f"{chosen.cv_log_loss:.4f} against {rival.cv_log_loss:.4f} for the next best, "
        f"{rival.candidate}"
    )
    error = float(rival.get("paired_standard_error", float("nan")))
    if not error > 0:
        return said + ")"
    apart = float(rival.minus_chosen) / error
    if apart >= 2:
        return said + f"; {apart:.0f} standard errors of the difference apart, a clear margin)"
    return said + f"; {apart:.1f} standard errors of the difference apart, a thin margin)"
