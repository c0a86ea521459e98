"""The scoring service in the test's own process, on a deployment: for tests that call it
through Starlette's test client rather than over a socket."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from crm_intel.demo import Deployment


@contextmanager
def service_client(deployment: Deployment, env: dict[str, str]) -> Iterator[Any]:
    """The service in this process (Starlette's test client) on the deployment, with ``env``
    (``CRM_INTEL_*`` settings) set while it runs."""
    from starlette.testclient import TestClient

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRM_INTEL_DATA_DIR", str(deployment.data_dir))
        mp.setenv("MLFLOW_TRACKING_URI", deployment.tracking_uri)
        for key, value in env.items():
            mp.setenv(key, value)
        from serving.service import CRMIntel

        with TestClient(CRMIntel.to_asgi(), raise_server_exceptions=False) as client:
            yield client
