"""How a server process is started: the settings that shape it, handed to BentoML at start.

BentoML reads a service's shape (workers, metrics, access log) when the server starts, from the
decorator's defaults merged with ``BENTOML_CONFIG_OVERRIDES``, its documented runtime override.
Writing the settings there keeps ``serving.service`` free of work at import.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from crm.settings import Settings

SERVICE_NAME = "crm_intel"
OVERRIDES_ENV = "BENTOML_CONFIG_OVERRIDES"
# Libraries that report usage over the network are told not to: loopback only.
QUIET_ENV = {
    "BENTOML_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "FEAST_USAGE": "False",
}


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


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


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
        OVERRIDES_ENV: json.dumps(_merge(bentoml_overrides(settings), user)),
    }
