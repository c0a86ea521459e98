"""Shared fixtures: small seeded simulations, isolated data dirs and MLflow stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simulator import SimulationConfig, SimulationResult, simulate, write_simulation

# a throwaway PostgreSQL server on loopback for the tests that need one (tests/postgres_server.py)
pytest_plugins = ["postgres_server"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

SMALL = SimulationConfig(seed=11, accounts=400, leads=4_000, months=12)


def pytest_configure(config: pytest.Config) -> None:
    # `make test` runs the suite on two pytest-xdist workers; xdist sets COLUMNS in each worker to
    # the controller's terminal width, so the CLI (run in-process or as a subprocess) would fold
    # its lines at 80 columns, as it never does into a pipe. The tests read its output as a pipe.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.pop("COLUMNS", None)
        _cores_shared_among_workers()


def _cores_shared_among_workers() -> None:
    """Each pytest-xdist worker's numeric libraries get its share of the cores, not all of them.

    OpenBLAS and OpenMP start a thread per core in every process; with a worker per core, two
    workers' threads then contend for the same cores and spin waiting for each other (measured:
    two attribution fits at once took 63 s with their default threads, 38 s with one each). The
    share goes to libraries already loaded (threadpoolctl) and, through the environment, to the
    servers and commands the tests start. Thread counts the caller set are left as they are.
    """
    variables = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    if any(name in os.environ for name in variables):
        return
    from threadpoolctl import threadpool_limits

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    os.environ.update(dict.fromkeys(variables, str(threads)))
    threadpool_limits(limits=threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules with a test marked ``slow`` (or under tests/model) run first, each module's tests
    kept together and in order: with ``-n 2 --dist loadfile`` the longest work starts first and the
    workers finish together; module fixtures are still built once."""
    heavy = {
        item.path
        for item in items
        if item.get_closest_marker("slow") or item.path.parent.name == "model"
    }
    items.sort(key=lambda item: item.path not in heavy)  # stable: order within each group kept


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads or writes the repo's own data/ or mlruns/."""
    monkeypatch.setenv("CRM_INTEL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")


@pytest.fixture(scope="session")
def small_sim() -> SimulationResult:
    """A small seeded demo CRM (4k leads, 400 accounts, 12 months); do not mutate."""
    return simulate(SMALL)


@pytest.fixture(scope="session")
def small_data_dir(tmp_path_factory: pytest.TempPathFactory, small_sim: SimulationResult) -> Path:
    """``small_sim`` written as a data directory (raw/ and truth/); treat as read-only."""
    data_dir = tmp_path_factory.mktemp("small-crm")
    write_simulation(small_sim, data_dir)
    return data_dir


# ------------------------------------------------------------------ what error bodies disclose
# Every error response (status >= 400) any test receives from the service, in-process or live,
# is scanned as it arrives: no server path, no library's name or version, no link. A body that
# discloses one fails the test that received it.
DISCLOSING_WORDS = (
    "bentoml",
    "pydantic",
    "starlette",
    "uvicorn",
    "fastapi",
    "feast",
    "mlflow",
    "lightgbm",
    "sklearn",
    "scikit",
    "sqlite",
    "sqlalchemy",
    "redis",
    "numpy",
    "pandas",
    "shap",
    "skops",
    "httptools",
    "prometheus",
    "opentelemetry",
    "python",
    "traceback",
    "http://",
    "https://",
)
ERROR_BODIES: list[tuple[str, int, str]] = []  # (method and path, status, body) of every one


def disclosed(body: str) -> list[str]:
    """What an error body gives away: paths of this machine, library names, links."""
    import os
    import sys
    import tempfile

    paths = {sys.prefix, str(REPO), os.getcwd(), tempfile.gettempdir() + "/", str(Path.home())}
    found = [p for p in paths if p and p != "/" and p in body]
    lower = body.lower()
    found += [w for w in DISCLOSING_WORDS if w in lower]
    return found


@pytest.fixture(autouse=True, scope="session")
def _scan_error_bodies() -> object:
    import httpx

    def check(request: httpx.Request, response: httpx.Response) -> None:
        if response.status_code < 400 or request.url.host not in ("127.0.0.1", "testserver"):
            return
        body = response.text
        ERROR_BODIES.append((f"{request.method} {request.url.path}", response.status_code, body))
        bad = disclosed(body)
        assert not bad, f"{request.method} {request.url.path} {response.status_code}: {bad}: {body}"

    send, send_async = httpx.Client.send, httpx.AsyncClient.send

    def scanned(self: httpx.Client, request: httpx.Request, **kwargs: object) -> httpx.Response:
        response = send(self, request, **kwargs)  # type: ignore[arg-type]
        if not kwargs.get("stream"):
            check(request, response)
        return response

    async def scanned_async(
        self: httpx.AsyncClient, request: httpx.Request, **kwargs: object
    ) -> httpx.Response:
        response = await send_async(self, request, **kwargs)  # type: ignore[arg-type]
        if not kwargs.get("stream"):
            check(request, response)
        return response

    httpx.Client.send = scanned  # type: ignore[method-assign]
    httpx.AsyncClient.send = scanned_async  # type: ignore[method-assign]
    yield
    httpx.Client.send, httpx.AsyncClient.send = send, send_async  # type: ignore[method-assign]


@pytest.fixture(scope="session")
def error_bodies(_scan_error_bodies: object) -> list[tuple[str, int, str]]:
    """Every error response received so far in the session: (method and path, status, body)."""
    return ERROR_BODIES


@pytest.fixture(scope="session")
def disclosure() -> object:
    """:func:`disclosed`, for tests that scan bodies themselves."""
    return disclosed


@pytest.fixture(scope="session")
def cdnow_sample() -> Path:
    """CDNOW's 2,357-customer sample (``../shared/datasets/cdnow``): master id, sample id,
    YYYYMMDD date, CDs, dollars; no header."""
    return SHARED_DATASETS / "cdnow" / "CDNOW_sample.txt"
