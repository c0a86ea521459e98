"""The ``crm-intel`` command line: CRM data → features → training → serving.

Each command is thin wiring over a stage function; heavy imports happen inside commands so that
``--help`` stays fast.
"""

from __future__ import annotations

import typer

from crm_intel.commands import (
    attribution,
    backtesting,
    comparing,
    deduping,
    features,
    importing,
    keys,
    monitoring,
    privacy,
    pushing,
    quickstart,
    reporting,
    runs,
    scores,
    simulating,
    training,
    valuing,
)
from crm_intel.commands import serving as serving_cmd

app = typer.Typer(
    name="crm-intel",
    help="ML intelligence for CRMs: lead conversion, churn risk, content and channel attribution.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _quiet() -> None:
    # Before any command: third-party libraries' deprecation warnings about their own code
    # (MLflow's, BentoML's) are not ours to act on and buried every command's output.
    from serving.runtime import quiet_third_party_warnings

    quiet_third_party_warnings()


app.command("quickstart")(quickstart.quickstart)
app.command("simulate")(simulating.simulate)
app.command("import")(importing.import_)
# Later stages register below, one line each.
app.add_typer(features.app, name="features")
app.add_typer(attribution.app, name="attribution")
app.add_typer(training.train_app, name="train")
app.add_typer(training.models_app, name="models")
training.models_app.command("compare")(comparing.compare)
app.add_typer(backtesting.app, name="backtest")
app.add_typer(serving_cmd.app, name="score")
app.command("serve")(serving_cmd.serve)
app.add_typer(keys.app, name="keys")
app.add_typer(scores.app, name="scores")
app.add_typer(runs.app, name="run")
app.command("erase")(privacy.erase)
app.command("audit")(privacy.audit)
app.command("monitor")(monitoring.monitor)
app.add_typer(pushing.app, name="push")
app.add_typer(reporting.app, name="report")
app.add_typer(valuing.app, name="value")
app.add_typer(deduping.app, name="dedupe")


def main() -> None:
    """The ``crm-intel`` program: the commands above, in a process that imports Feast quickly
    (:func:`features.feast_import.skip_feast_typechecks`; ``app`` itself, as tests and
    ``quickstart`` invoke it in their own process, leaves typeguard as it is)."""
    from features.feast_import import skip_feast_typechecks

    skip_feast_typechecks()
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
