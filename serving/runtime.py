"""How a server process is started: the settings that shape it, handed to BentoML at start.

BentoML reads a service's shape (workers, metrics, access log) when the server starts, from the
decorator's defaults merged with ``BENTOML_CONFIG_OVERRIDES``, its documented runtime override.
Writing the settings there keeps ``serving.service`` free of work at import.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Mapping
from typing import Any, TextIO

from crm.settings import Settings, deep_merged

SERVICE_NAME = "crm_intel"
OVERRIDES_ENV = "BENTOML_CONFIG_OVERRIDES"
# Libraries that report usage over the network are told not to: loopback only.
QUIET_ENV = {
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "FEAST_USAGE": "False",
}

# Deprecation warnings raised inside libraries about the libraries' own code: crm-intel can
# neither act on them nor fix them, yet they printed on every command (Feast's import turns every
# DeprecationWarning on, once). Exactly these are ignored: (category, package the warning is
# raised from, message).
THIRD_PARTY_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    # SQLAlchemy's SADeprecationWarning, where MLflow 3.17's tracking store declares a
    # relationship lazy="noload" (its tables are configured on the first registry call)
    (DeprecationWarning, "mlflow", r"The ``noload`` loader strategy is deprecated"),
    # pydantic 2.11's PydanticDeprecatedSince211, where BentoML 1.4.39 builds its IO models
    # (at every server start) and each time its server reads ``model_fields`` from a request's
    # instance (which would flood the server log)
    (
        DeprecationWarning,
        "_bentoml_sdk",
        r"The `__get_pydantic_core_schema__` method of the `BaseModel` class is deprecated",
    ),
    (
        DeprecationWarning,
        "_bentoml_impl",
        r"Accessing the 'model_fields' attribute on the instance",
    ),
    # Tornado's, where BentoML's process manager (circus) stops the server on a signal
    (DeprecationWarning, "tornado", r"add_callback_from_signal is deprecated"),
)


def _third_party(message: Warning | str, category: type[Warning], filename: str) -> bool:
    return any(
        issubclass(category, kind)
        and re.search(rf"[/\\]{package}[/\\]", filename) is not None
        and re.match(text, str(message)) is not None
        for kind, package, text in THIRD_PARTY_WARNINGS
    )


def quiet_third_party_warnings() -> None:
    """Ignore exactly :data:`THIRD_PARTY_WARNINGS`, whatever a library does to the filters later.

    Filters come first; and since a library imported afterwards can put a broader filter in
    front of them (Feast's ``simplefilter("once", DeprecationWarning)`` at its import, which a
    command reaches only after this runs), the same warnings are also dropped where warnings
    are shown (``warnings.showwarning``, which the warnings module lets a program replace).
    """
    for kind, package, text in THIRD_PARTY_WARNINGS:
        warnings.filterwarnings("ignore", text, kind, rf"{re.escape(package)}\.")
    show = warnings.showwarning
    if getattr(show, "quiets_third_party", False):
        return

    def shown(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if not _third_party(message, category, filename):
            show(message, category, filename, lineno, file, line)

    shown.quiets_third_party = True  # type: ignore[attr-defined]
    warnings.showwarning = shown


def bentoml_overrides(settings: Settings) -> dict[str, Any]:
    """The service's BentoML configuration taken from ``settings``."""
    return {
        "services": {
            SERVICE_NAME: {
                "workers": settings.serve_workers,
                # a backstop: the gate answers a late scoring request 504 itself, in the API's
                # words, at request_timeout_seconds (serving.gate.Limits)
                "traffic": {"timeout": settings.request_timeout_seconds + 5},
                # BentoML's metrics label requests by raw path, one series per URL a client
                # invents: off; the gate counts by route instead (serving.metrics)
                "metrics": {"enabled": False},
                # BentoML's request timeout leaves a timer per request for `traffic.timeout`
                # seconds (never cancelled), holding the request's context and so its trace
                # span (~5 KB, recorded even at sample rate 0): 5 MB per 1,000 requests at
                # any time. No span is made where no trace is exported: a deployment that
                # exports traces sets its own tracing options in BENTOML_CONFIG_OVERRIDES.
                "tracing": {"excluded_urls": ["."]},
                "logging": {"access": {"enabled": settings.serve_access_log}},
            }
        }
    }


def server_env(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a ``bentoml serve`` process: ``environ`` (default: this process's) plus
    the quiet flags, the data directory, the tracking URI and the BentoML overrides.

    Overrides the user already set in ``BENTOML_CONFIG_OVERRIDES`` win over the settings.
    """
    env = dict(os.environ if environ is None else environ)
    user = json.loads(env[OVERRIDES_ENV]) if env.get(OVERRIDES_ENV) else {}
    return {
        **env,
        **QUIET_ENV,
        "CRM_INTEL_DATA_DIR": str(settings.data_dir),
        "MLFLOW_TRACKING_URI": settings.tracking_uri(),
        OVERRIDES_ENV: json.dumps(deep_merged(bentoml_overrides(settings), user)),
    }
