"""The monitoring page: a self-contained HTML file (Plotly's script inlined once, works offline).

For each model: the alerts in plain words, the features that moved most (PSI, bars coloured by
whether they crossed the threshold), realised ROC AUC per week beside the version's expected
figure, and served probability against the observed rate per week.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from crm.io import atomic_file

TOP_FEATURES = 25
NAMES = {"lead_conversion": "Lead conversion", "churn_risk": "Churn risk"}


def _drift_figure(rows: list[dict[str, Any]], threshold: float) -> go.Figure | None:
    scored = [r for r in rows if r.get("score") is not None]
    if not scored:
        return None
    top = sorted(scored, key=lambda r: r["score"], reverse=True)[:TOP_FEATURES][::-1]
    figure = go.Figure(
        go.Bar(
            x=[r["score"] for r in top],
            y=[r["feature"].replace("_", " ") for r in top],
            orientation="h",
            marker_color=["#c0392b" if r["drifted"] else "#5d8aa8" for r in top],
            hovertemplate="%{y}: PSI %{x:.3f}<extra></extra>",
        )
    )
    figure.add_vline(x=threshold, line_dash="dash", annotation_text=f"alert at {threshold:g}")
    figure.update_layout(
        title="How far each feature moved since training (PSI; red: alert)",
        height=max(320, 22 * len(top) + 120),
        margin={"l": 260, "r": 30, "t": 60, "b": 40},
        xaxis_title="population stability index",
    )
    return figure


def _weekly_figure(
    rows: list[dict[str, Any]], field: str, title: str, expected: float | None = None
) -> go.Figure | None:
    if not rows:
        return None
    figure = go.Figure()
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((str(r["model_version"]), str(r["arm"])), []).append(r)
    for (version, arm), part in sorted(groups.items()):
        figure.add_trace(
            go.Scatter(
                x=[r["week"] for r in part],
                y=[r[field] for r in part],
                mode="lines+markers",
                name=f"v{version} ({arm})",
                customdata=[[r["n"], r["positives"]] for r in part],
                hovertemplate="week of %{x}: %{y:.3f} (%{customdata[0]} scored, "
                "%{customdata[1]} positive)<extra></extra>",
            )
        )
        if field == "mean_predicted":
            figure.add_trace(
                go.Scatter(
                    x=[r["week"] for r in part],
                    y=[r["observed_rate"] for r in part],
                    mode="lines+markers",
                    line_dash="dot",
                    name=f"observed, v{version} ({arm})",
                )
            )
    if expected is not None:
        figure.add_hline(y=expected, line_dash="dash", annotation_text="expected (held-out test)")
    figure.update_layout(title=title, height=380, margin={"t": 60, "b": 40}, xaxis_title="week")
    return figure


def render(report: dict[str, Any], out: Path) -> Path:
    """Write the page for a :func:`monitoring.monitor.monitor` report to ``out``, atomically."""
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>crm-intel monitoring</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;"
        "padding:0 1em;color:#222}h1{font-size:1.6em}h2{margin-top:2em}"
        ".alert{background:#fdecea;border-left:4px solid #c0392b;padding:.5em 1em;margin:.4em 0}"
        ".ok{background:#eaf7ee;border-left:4px solid #2e8b57;padding:.5em 1em}"
        ".note{color:#555}</style></head><body>",
        "<h1>Model monitoring</h1>",
        f"<p class='note'>Generated {html.escape(str(report['generated_at']))}. Drift compares "
        "each model's training window with the latest period; realised performance joins the "
        "scores that were served to what happened after them, once the outcome window closed."
        "</p>",
    ]
    script_included = False

    def embed(figure: go.Figure | None) -> None:
        nonlocal script_included
        if figure is None:
            return
        parts.append(
            pio.to_html(
                figure,
                full_html=False,
                include_plotlyjs=not script_included,
                config={"displaylogo": False},
            )
        )
        script_included = True

    thresholds = report["thresholds"]
    for model, result in report["models"].items():
        parts.append(f"<h2>{html.escape(NAMES.get(model, model))}</h2>")
        if "skipped" in result:
            parts.append(f"<p class='note'>Not monitored: {html.escape(result['skipped'])}</p>")
            continue
        spans = result["windows"]
        parts.append(
            f"<p class='note'>Champion v{html.escape(result['champion_version'])}. Training "
            f"window {spans['reference_start'][:10]} to {spans['reference_end'][:10]}; latest "
            f"period {spans['current_start'][:10]} to {spans['current_end'][:10]}.</p>"
        )
        if result["alerts"]:
            parts += [
                f"<div class='alert'>{html.escape(a['message'])}</div>" for a in result["alerts"]
            ]
        else:
            parts.append("<div class='ok'>No threshold crossed.</div>")
        embed(_drift_figure(result.get("feature_drift", []), thresholds["feature_psi"]))
        weekly = result.get("realised_by_week", [])
        if weekly:
            embed(
                _weekly_figure(
                    weekly,
                    "roc_auc",
                    "Realised ranking quality of served scores (ROC AUC per week)",
                    result.get("expected_roc_auc"),
                )
            )
            embed(
                _weekly_figure(
                    weekly,
                    "mean_predicted",
                    "Served probability against what happened (per week)",
                )
            )
        else:
            parts.append(
                "<p class='note'>No served score has a closed outcome window yet: realised "
                "performance appears once it has.</p>"
            )
    parts.append("</body></html>")
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        Path(tmp).write_text("\n".join(parts), encoding="utf-8")
    return out
