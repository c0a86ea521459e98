"""Push a CSV to Salesforce with the Bulk API 2.0 ingest protocol (upsert or update).

A file goes in one job per ``rows_per_job`` rows (and at most :data:`MAX_JOB_BYTES`): create the
job, upload its CSV (``PUT …/batches``), close it (``UploadComplete``), poll it until it ends,
then read its successful, failed and unprocessed records. HTTP is the standard library's.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OPERATIONS = ("upsert", "update")
FINAL_STATES = ("JobComplete", "Failed", "Aborted")
# Salesforce takes 150 MB of job data after base64 (which adds a third): 100 MB as written.
MAX_JOB_BYTES = 100_000_000
MAX_POLL_SECONDS = 30.0  # polls back off from poll_seconds to this
HTTP_TIMEOUT_SECONDS = 120.0
# Bulk API leaves a field as it is for an empty cell; this value empties it.
NULL_VALUE = "#N/A"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_LOOPBACK = ("localhost", "127.0.0.1", "::1")


class SalesforcePushError(Exception):
    """A push that could not be done. The message names the job, the HTTP status and
    Salesforce's error code and message; ``completed`` holds the jobs that ended before it."""

    def __init__(self, message: str, job_id: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.status = status
        self.completed: tuple[JobResult, ...] = ()


@dataclass(frozen=True)
class FailedRow:
    """A row Salesforce processed and refused."""

    job_id: str
    key: str  # the row's value in the key column (--external-id)
    sf_id: str  # Salesforce's record id, when it has one
    error: str  # sf__Error: code and message


@dataclass(frozen=True)
class JobResult:
    """One ingest job as it ended."""

    job_id: str
    state: str
    rows: int  # uploaded
    processed: int  # numberRecordsProcessed: successful and failed
    failed: int  # numberRecordsFailed
    successful: int  # rows of successfulResults
    created: int  # of them, new records (upsert)
    unprocessed: int  # rows of unprocessedrecords
    failed_rows: tuple[FailedRow, ...] = ()


@dataclass(frozen=True)
class PushReport:
    """What a push did, job by job."""

    object_name: str
    operation: str
    external_id: str
    jobs: tuple[JobResult, ...] = ()

    @property
    def rows(self) -> int:
        return sum(j.rows for j in self.jobs)

    @property
    def processed(self) -> int:
        return sum(j.processed for j in self.jobs)

    @property
    def failed(self) -> int:
        return sum(j.failed for j in self.jobs)

    @property
    def successful(self) -> int:
        return sum(j.successful for j in self.jobs)

    @property
    def unprocessed(self) -> int:
        return sum(j.unprocessed for j in self.jobs)

    @property
    def failed_rows(self) -> tuple[FailedRow, ...]:
        return tuple(r for j in self.jobs for r in j.failed_rows)

    @property
    def all_succeeded(self) -> bool:
        return self.successful == self.rows and not self.failed and not self.unprocessed

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-able values (``--json``)."""
        return {
            "object": self.object_name,
            "operation": self.operation,
            "external_id": self.external_id,
            "rows": self.rows,
            "processed": self.processed,
            "successful": self.successful,
            "failed": self.failed,
            "unprocessed": self.unprocessed,
            "jobs": [
                {
                    "id": j.job_id,
                    "state": j.state,
                    "rows": j.rows,
                    "processed": j.processed,
                    "successful": j.successful,
                    "created": j.created,
                    "failed": j.failed,
                    "unprocessed": j.unprocessed,
                }
                for j in self.jobs
            ],
            "failed_rows": [
                {"job": r.job_id, "key": r.key, "sf_id": r.sf_id, "error": r.error}
                for r in self.failed_rows
            ],
        }


@dataclass(frozen=True)
class JobData:
    """The CSV of one job: the header and its rows, as written in the file."""

    rows: int
    text: str


@dataclass(frozen=True)
class SplitCsv:
    """A CSV file cut into the data of its jobs."""

    columns: tuple[str, ...]
    line_ending: str  # LF or CRLF, as Bulk API names them
    jobs: tuple[JobData, ...] = field(default=())

    @property
    def rows(self) -> int:
        return sum(j.rows for j in self.jobs)


def _records(text: str) -> Iterator[tuple[list[str], str]]:
    """Each CSV record with its text as written (a quoted value may span lines)."""
    raw: list[str] = []

    def lines() -> Iterator[str]:
        for line in io.StringIO(text, newline=""):
            raw.append(line)
            yield line

    for row in csv.reader(lines(), strict=True):
        yield row, "".join(raw)
        raw.clear()


def _ending(raw: str) -> str | None:
    if raw.endswith("\r\n"):
        return "CRLF"
    return "LF" if raw.endswith("\n") else None


def split_csv(
    csv_path: Path,
    key: str,
    rows_per_job: int,
    *,
    max_bytes: int = MAX_JOB_BYTES,
    empty_as_null: bool = False,
) -> SplitCsv:
    """Cut a UTF-8 CSV into jobs of at most ``rows_per_job`` rows and ``max_bytes``, each with
    the header; rows are kept as written unless ``empty_as_null`` rewrites their empty cells
    (but the key's) as ``#N/A``, which empties the field in Salesforce. Blank lines are left out.

    Raises:
        SalesforcePushError: the file cannot be read, is not UTF-8 CSV, has no ``key`` column,
            or a row has a different number of values than the header.
    """
    try:
        text = csv_path.read_bytes().decode("utf-8-sig")
    except OSError as err:
        raise SalesforcePushError(f"cannot read {csv_path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise SalesforcePushError(
            f"{csv_path} is not UTF-8 (byte {err.start}); Salesforce takes UTF-8 CSV only"
        ) from None
    records = _records(text)
    try:
        header, header_raw = next(records, ([], ""))
        if not header:
            raise SalesforcePushError(f"{csv_path} has no header row")
        columns = tuple(header)
        if key not in columns:
            raise SalesforcePushError(
                f"{csv_path} has no {key!r} column (the key, --external-id); "
                f"its columns: {', '.join(columns)}"
            )
        doubled = sorted({c for c in columns if columns.count(c) > 1})
        if doubled:
            raise SalesforcePushError(f"{csv_path} names a column twice: {', '.join(doubled)}")
        line_ending = _ending(header_raw) or "LF"
        newline = "\r\n" if line_ending == "CRLF" else "\n"
        line = 1 + header_raw.count("\n")  # where the next record starts
        if not header_raw.endswith(newline):
            header_raw += newline
        key_at = columns.index(key)
        jobs: list[JobData] = []
        chunk: list[str] = []
        size = len(header_raw.encode())
        for row, raw in records:
            start, line = line, line + raw.count("\n")
            if not row:
                continue
            if len(row) != len(columns):
                raise SalesforcePushError(
                    f"{csv_path} line {start}: {len(row)} values, the header has {len(columns)}"
                )
            ending = _ending(raw)
            if ending is not None and ending != line_ending:
                raise SalesforcePushError(
                    f"{csv_path} line {start}: ends with {ending}, the header with {line_ending}; "
                    "Bulk API takes one line ending per file"
                )
            if empty_as_null:
                values = [v if v or i == key_at else NULL_VALUE for i, v in enumerate(row)]
                out = io.StringIO()
                csv.writer(out, lineterminator=newline).writerow(values)
                raw = out.getvalue()
            elif ending is None:
                raw += newline  # the file's last row; another may follow it in a job
            raw_bytes = len(raw.encode())
            if chunk and (len(chunk) >= rows_per_job or size + raw_bytes > max_bytes):
                jobs.append(JobData(len(chunk), header_raw + "".join(chunk)))
                chunk, size = [], len(header_raw.encode())
            chunk.append(raw)
            size += raw_bytes
        if chunk:
            jobs.append(JobData(len(chunk), header_raw + "".join(chunk)))
    except csv.Error as err:
        raise SalesforcePushError(f"{csv_path} is not valid CSV: {err}") from None
    return SplitCsv(columns, line_ending, tuple(jobs))


def _salesforce_error(payload: bytes) -> str:
    """Salesforce's ``[{"errorCode": …, "message": …}]`` as ``CODE: message``."""
    text = payload.decode("utf-8", "replace").strip()
    try:
        body = json.loads(text)
    except ValueError:
        return text[:300] or "no message"
    items = body if isinstance(body, list) else [body]
    said = [
        ": ".join(str(i[k]) for k in ("errorCode", "message") if i.get(k))
        for i in items
        if isinstance(i, dict)
    ]
    return "; ".join(s for s in said if s) or text[:300]


class _Api:
    """The ingest resources of one org, as one user (the token is sent, never shown)."""

    def __init__(self, instance_url: str, access_token: str, api_version: str) -> None:
        self._base = instance_url.rstrip("/") + "/"
        self._token = access_token
        self.jobs_path = f"services/data/v{api_version}/jobs/ingest/"

    def call(
        self,
        method: str,
        path: str,
        what: str,
        job_id: str | None = None,
        body: bytes | None = None,
        content_type: str | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> bytes:
        request = urllib.request.Request(self._base + path.lstrip("/"), data=body, method=method)
        # not sent on to another host when redirected
        request.add_unredirected_header("Authorization", f"Bearer {self._token}")
        request.add_header("Accept", "application/json, text/csv")
        if content_type:
            request.add_header("Content-Type", content_type)
        job = f" (job {job_id})" if job_id else ""
        try:
            with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as err:
            raise SalesforcePushError(
                f"{what}{job}: HTTP {err.code} {_salesforce_error(err.read())}",
                job_id=job_id,
                status=err.code,
            ) from None
        except urllib.error.URLError as err:
            raise SalesforcePushError(
                f"{what}{job}: cannot reach {self._base}: {err.reason}", job_id=job_id
            ) from None
        except (OSError, http.client.HTTPException) as err:
            raise SalesforcePushError(
                f"{what}{job}: {self._base} did not answer: {err or type(err).__name__}",
                job_id=job_id,
            ) from None
        if status not in expect:
            raise SalesforcePushError(
                f"{what}{job}: HTTP {status} {_salesforce_error(payload)}",
                job_id=job_id,
                status=status,
            )
        return payload

    def call_json(
        self,
        method: str,
        path: str,
        what: str,
        job_id: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        content_type = None if body is None else "application/json; charset=UTF-8"
        payload = self.call(method, path, what, job_id, data, content_type)
        try:
            info = json.loads(payload)
        except ValueError:
            info = None
        if not isinstance(info, dict):
            job = f" (job {job_id})" if job_id else ""
            raise SalesforcePushError(f"{what}{job}: the answer is not a job's JSON", job_id)
        return info

    def results(self, job_id: str, name: str) -> list[dict[str, str]]:
        payload = self.call("GET", f"{self.jobs_path}{job_id}/{name}/", f"reading {name}", job_id)
        text = payload.decode("utf-8-sig", "replace")
        return list(csv.DictReader(io.StringIO(text, newline=""))) if text.strip() else []


def _checked_url(instance_url: str) -> str:
    parts = urllib.parse.urlsplit(instance_url.strip())
    secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)
    if not parts.hostname or not secure or parts.path.strip("/") or parts.query:
        raise SalesforcePushError(
            f"instance URL {instance_url!r}: give the org's https://<domain>.my.salesforce.com "
            "(plain http only on this machine)"
        )
    return f"{parts.scheme}://{parts.netloc}"


def push_csv(
    csv_path: Path | str,
    object_name: str,
    instance_url: str,
    access_token: str,
    *,
    external_id: str = "Id",
    operation: str = "upsert",
    api_version: str = "62.0",
    poll_seconds: float = 2.0,
    timeout_seconds: float = 600.0,
    rows_per_job: int = 100_000,
    empty_as_null: bool = False,
    on_progress: Callable[[str], None] | None = None,
) -> PushReport:
    """Upsert or update the rows of a CSV into ``object_name`` with Bulk API 2.0 ingest jobs,
    one after the other, each of at most ``rows_per_job`` rows.

    Args:
        csv_path: UTF-8 CSV whose header names fields of the object (API names).
        object_name: the sObject, e.g. ``Lead`` or ``Account``.
        instance_url: the org, ``https://<domain>.my.salesforce.com``.
        access_token: an OAuth access token (sent as ``Authorization: Bearer``).
        external_id: the key column: the external id field of an upsert; an update matches
            on ``Id``.
        operation: ``upsert`` or ``update``.
        api_version: e.g. ``62.0``.
        poll_seconds: first wait between polls of a closed job; it grows by half each time,
            up to :data:`MAX_POLL_SECONDS`.
        timeout_seconds: how long to wait for each job to end.
        rows_per_job: the most rows in one job.
        empty_as_null: write empty cells but the key's as ``#N/A``, which empties the field
            (an empty cell leaves it as it is).
        on_progress: called with one line per step (job created, uploaded, closed, new state).

    Returns:
        Every job's counts and its failed rows (key, Salesforce id, ``sf__Error``).

    Raises:
        SalesforcePushError: the file or the arguments are not fit to push, Salesforce answered
            an error, a job ended ``Failed`` or ``Aborted`` or did not end within
            ``timeout_seconds``. Jobs after it are not created; ``completed`` holds those
            before it.
    """
    say = on_progress or (lambda _line: None)
    if operation not in OPERATIONS:
        raise SalesforcePushError(f"operation {operation!r}: use one of {', '.join(OPERATIONS)}")
    for what, name in (("object", object_name), ("external id", external_id)):
        if not _NAME.fullmatch(name):
            raise SalesforcePushError(f"{what} {name!r} is not a Salesforce API name")
    if operation == "update" and external_id != "Id":
        raise SalesforcePushError(
            f"an update matches records on Id, not {external_id}: use --operation upsert"
        )
    version = api_version.removeprefix("v")
    if not re.fullmatch(r"\d+\.\d+", version):
        raise SalesforcePushError(f"API version {api_version!r}: give one like 62.0")
    if rows_per_job < 1:
        raise SalesforcePushError(f"rows per job must be 1 or more, not {rows_per_job}")
    api = _Api(_checked_url(instance_url), access_token, version)
    data = split_csv(Path(csv_path), external_id, rows_per_job, empty_as_null=empty_as_null)
    done: list[JobResult] = []
    for number, job_data in enumerate(data.jobs, start=1):
        label = f"job {number}/{len(data.jobs)}"
        try:
            done.append(
                _run_job(
                    api,
                    job_data,
                    label,
                    object_name,
                    operation,
                    external_id,
                    data.line_ending,
                    poll_seconds,
                    timeout_seconds,
                    say,
                )
            )
        except SalesforcePushError as err:
            err.completed = tuple(done)
            raise
    return PushReport(object_name, operation, external_id, tuple(done))


def _abort(api: _Api, job_path: str, job_id: str) -> str:
    """Abort an open job (else it waits a week for data); say whether it is gone."""
    try:
        api.call_json("PATCH", job_path, "aborting", job_id, {"state": "Aborted"})
    except SalesforcePushError as err:
        return f"the open job could not be aborted: {err}"
    return "the job was aborted"


def _run_job(
    api: _Api,
    job_data: JobData,
    label: str,
    object_name: str,
    operation: str,
    external_id: str,
    line_ending: str,
    poll_seconds: float,
    timeout_seconds: float,
    say: Callable[[str], None],
) -> JobResult:
    spec: dict[str, Any] = {
        "object": object_name,
        "contentType": "CSV",
        "operation": operation,
        "lineEnding": line_ending,
    }
    if operation == "upsert":
        spec["externalIdFieldName"] = external_id
    info = api.call_json("POST", api.jobs_path, f"creating {label}", body=spec)
    job_id = str(info.get("id") or "")
    if not job_id or info.get("state") != "Open":
        raise SalesforcePushError(
            f"creating {label}: Salesforce answered no open job ({info.get('state')!r})", job_id
        )
    job_path = f"{api.jobs_path}{job_id}/"
    say(f"{label} {job_id}: created for {job_data.rows:,} rows")
    content_url = str(info.get("contentUrl") or f"{job_path}batches")
    body = job_data.text.encode()
    try:
        api.call("PUT", content_url, "uploading the CSV", job_id, body, "text/csv", (201,))
    except SalesforcePushError as err:
        aborted = _abort(api, job_path, job_id)
        raise SalesforcePushError(f"{err}; {aborted}", job_id, err.status) from None
    say(f"{label} {job_id}: uploaded {len(body):,} bytes")
    info = api.call_json("PATCH", job_path, "closing", job_id, {"state": "UploadComplete"})
    state = str(info.get("state"))
    say(f"{label} {job_id}: closed ({state})")
    deadline = time.monotonic() + timeout_seconds
    wait = poll_seconds
    while state not in FINAL_STATES:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SalesforcePushError(
                f"job {job_id} still {state} after {timeout_seconds:g} s; it goes on in "
                "Salesforce (Setup → Bulk Data Load Jobs): look there, or wait longer",
                job_id,
            )
        time.sleep(min(wait, left))
        wait = min(wait * 1.5, max(poll_seconds, MAX_POLL_SECONDS))
        info = api.call_json("GET", job_path, "polling", job_id)
        if str(info.get("state")) != state:
            state = str(info.get("state"))
            say(f"{label} {job_id}: {state}")
    processed = int(info.get("numberRecordsProcessed") or 0)
    failed = int(info.get("numberRecordsFailed") or 0)
    if state != "JobComplete":
        message = info.get("errorMessage") or "no message"
        raise SalesforcePushError(
            f"job {job_id} ended {state}: {message} ({processed:,} of {job_data.rows:,} rows "
            f"processed, {failed:,} of them failed); no later job was created",
            job_id,
        )
    successful = api.results(job_id, "successfulResults")
    failures = api.results(job_id, "failedResults")
    unprocessed = api.results(job_id, "unprocessedrecords")
    return JobResult(
        job_id=job_id,
        state=state,
        rows=job_data.rows,
        processed=processed,
        failed=failed,
        successful=len(successful),
        created=sum(r.get("sf__Created", "").lower() == "true" for r in successful),
        unprocessed=len(unprocessed),
        failed_rows=tuple(
            FailedRow(
                job_id, r.get(external_id) or "", r.get("sf__Id") or "", r.get("sf__Error") or ""
            )
            for r in failures
        ),
    )
