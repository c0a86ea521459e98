"""A local Salesforce org that speaks the Bulk API 2.0 ingest protocol, for tests.

``FakeSalesforce`` serves ``/services/data/vXX.X/jobs/ingest/`` on 127.0.0.1 (a free port) in a
thread: it checks the bearer token, creates jobs, takes one CSV upload while a job is ``Open``,
moves a closed job ``UploadComplete`` → ``InProgress`` → ``JobComplete`` over a few polls and
then answers its successful, failed and unprocessed records. Rows are applied to an in-memory
org (records by object and Id); every request is recorded for the test to assert on.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "00DFAKE!test-access-token"
NULL = "#N/A"
_ROUTE = re.compile(r"^/services/data/v(\d+\.\d+)/jobs/ingest(?:/([^/]+))?(?:/([^/]+))?/?$")
_RESULTS = ("successfulResults", "failedResults", "unprocessedrecords")


@dataclass(frozen=True)
class Recorded:
    """One request as the org received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def step(self) -> str:
        """The request in protocol words: ``create``, ``upload``, ``close``, ``poll``, …"""
        match = _ROUTE.match(self.path)
        if not match:
            return f"{self.method} {self.path}"
        _, job, sub = match.groups()
        if job is None:
            return "create" if self.method == "POST" else f"{self.method} jobs"
        if sub == "batches":
            return "upload"
        if sub:
            return sub
        if self.method == "PATCH":
            state = json.loads(self.body or b"{}").get("state")
            return {"UploadComplete": "close", "Aborted": "abort"}.get(state, "patch")
        return "poll" if self.method == "GET" else f"{self.method} job"


@dataclass
class FakeJob:
    """An ingest job and, once processed, its results."""

    id: str
    object: str
    operation: str
    external_id: str | None
    line_ending: str
    api_version: str
    state: str = "Open"
    data: bytes | None = None
    polls: int = 0
    error_message: str | None = None
    successful: list[dict[str, str]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    unprocessed: list[dict[str, str]] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)

    def info(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "operation": self.operation,
            "object": self.object,
            "createdById": "005FAKE000000001",
            "createdDate": "2026-05-01T00:00:00.000+0000",
            "systemModstamp": "2026-05-01T00:00:00.000+0000",
            "state": self.state,
            "concurrencyMode": "Parallel",
            "contentType": "CSV",
            "apiVersion": float(self.api_version),
            "jobType": "V2Ingest",
            "lineEnding": self.line_ending,
            "columnDelimiter": "COMMA",
        }
        if self.external_id:
            body["externalIdFieldName"] = self.external_id
        if self.state == "Open":
            body["contentUrl"] = f"services/data/v{self.api_version}/jobs/ingest/{self.id}/batches"
        final = self.state in ("JobComplete", "Failed", "Aborted")
        body["numberRecordsProcessed"] = len(self.successful) + len(self.failed) if final else 0
        body["numberRecordsFailed"] = len(self.failed) if final else 0
        body["retries"] = 0
        body["totalProcessingTime"] = 0
        if self.error_message:
            body["errorMessage"] = self.error_message
        return body


class FakeSalesforce:
    """The org: records by object and Id, its fields (others fail a job), and which of them
    take numbers only.

    Args:
        records: ``{"Lead": {"00Q…": {"Lead_Score__c": "12", …}}}``; changed by the jobs.
        fields: the fields of each object a CSV may name (``Id`` always).
        numeric: fields whose values must be numbers.
        polls_to_finish: polls of a closed job before it ends (the first says ``InProgress``).
        finishes: ``False``: a closed job stays ``InProgress`` for ever.
    """

    def __init__(
        self,
        records: dict[str, dict[str, dict[str, str | None]]],
        fields: dict[str, set[str]],
        numeric: Iterable[str] = (),
        *,
        token: str = TOKEN,
        polls_to_finish: int = 2,
        finishes: bool = True,
    ) -> None:
        self.records = records
        self.fields = fields
        self.numeric = set(numeric)
        self.token = token
        self.polls_to_finish = polls_to_finish
        self.finishes = finishes
        self.requests: list[Recorded] = []
        self.jobs: dict[str, FakeJob] = {}
        self._requests_until_expiry: int | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ running
    @property
    def url(self) -> str:
        assert self._server is not None, "start the org first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[FakeSalesforce]:
        """Serve in a thread until the block ends."""
        org = self

        class Handler(_Handler):
            fake = org

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)

    def expire_token_after(self, requests: int) -> None:
        """The token stops working after this many more accepted requests (401 from then)."""
        with self._lock:
            self._requests_until_expiry = requests

    def steps(self) -> list[str]:
        """Every request so far in protocol words (see :attr:`Recorded.step`)."""
        return [r.step for r in self.requests]

    # ------------------------------------------------------------------ answering
    def answer(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request."""
        with self._lock:
            self.requests.append(Recorded(method, path, headers, body))
            if not self._authorised(headers):
                return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
            match = _ROUTE.match(path)
            if not match:
                return _error(404, "NOT_FOUND", "The requested resource does not exist")
            version, job_id, sub = match.groups()
            if job_id is None:
                if method != "POST":
                    return _error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")
                return self._create(version, body)
            job = self.jobs.get(job_id)
            if job is None:
                return _error(404, "NOT_FOUND", "The requested resource does not exist")
            if sub == "batches" and method == "PUT":
                return self._upload(job, headers, body)
            if sub in _RESULTS and method == "GET":
                return self._results(job, sub)
            if sub is None and method == "PATCH":
                return self._patch(job, body)
            if sub is None and method == "GET":
                return self._poll(job)
            return _error(405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed")

    def _authorised(self, headers: dict[str, str]) -> bool:
        if headers.get("authorization") != f"Bearer {self.token}":
            return False
        if self._requests_until_expiry is not None:
            if self._requests_until_expiry <= 0:
                return False
            self._requests_until_expiry -= 1
        return True

    def _create(self, version: str, body: bytes) -> tuple[int, str, bytes]:
        try:
            spec = json.loads(body)
        except ValueError:
            return _error(400, "JSON_PARSER_ERROR", "The request body is not JSON")
        obj, operation = spec.get("object"), spec.get("operation")
        if obj not in self.fields:
            return _error(404, "NOT_FOUND", f"sObject type '{obj}' is not supported.")
        if operation not in ("insert", "update", "upsert", "delete", "hardDelete"):
            return _error(400, "INVALIDJOB", f"InvalidJob : Invalid operation: {operation}")
        external_id = spec.get("externalIdFieldName")
        if operation == "upsert" and not external_id:
            return _error(
                400,
                "INVALIDJOB",
                f"InvalidJob : External ID was blank for {obj}. An External ID must be "
                "specified for upsert.",
            )
        if spec.get("contentType", "CSV") != "CSV":
            return _error(400, "INVALIDJOB", "InvalidJob : contentType must be CSV")
        line_ending = spec.get("lineEnding", "LF")
        if line_ending not in ("LF", "CRLF"):
            return _error(400, "INVALIDJOB", f"InvalidJob : Invalid lineEnding: {line_ending}")
        job_id = f"750FAKE{next(self._ids):08d}"
        job = FakeJob(job_id, obj, operation, external_id, line_ending, version)
        self.jobs[job_id] = job
        return 200, "application/json", json.dumps(job.info()).encode()

    def _upload(self, job: FakeJob, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        if not headers.get("content-type", "").startswith("text/csv"):
            return _error(400, "INVALIDJOB", "InvalidJob : Content-Type must be text/csv")
        if job.state != "Open" or job.data is not None:
            return _error(409, "INVALIDJOBSTATE", "Found invalid state for upload: " + job.state)
        job.data = body
        return 201, "text/plain", b""

    def _patch(self, job: FakeJob, body: bytes) -> tuple[int, str, bytes]:
        state = json.loads(body or b"{}").get("state")
        if state == "UploadComplete" and job.state == "Open":
            if job.data is None:
                job.state, job.error_message = "Failed", "InvalidBatch : No data uploaded"
            else:
                job.state = "UploadComplete"
        elif state == "Aborted" and job.state in ("Open", "UploadComplete", "InProgress"):
            job.state = "Aborted"
        else:
            return _error(
                400, "INVALIDJOBSTATE", f"Invalid state transition: {job.state} to {state}"
            )
        return 200, "application/json", json.dumps(job.info()).encode()

    def _poll(self, job: FakeJob) -> tuple[int, str, bytes]:
        if job.state in ("UploadComplete", "InProgress"):
            job.polls += 1
            if self.finishes and job.polls >= self.polls_to_finish:
                self._process(job)
            else:
                job.state = "InProgress"
        return 200, "application/json", json.dumps(job.info()).encode()

    def _results(self, job: FakeJob, name: str) -> tuple[int, str, bytes]:
        if job.state not in ("JobComplete", "Failed", "Aborted"):
            return _error(
                409, "INVALIDJOBSTATE", "Results are available once the job has completed."
            )
        rows, head = {
            "successfulResults": (job.successful, ["sf__Id", "sf__Created"]),
            "failedResults": (job.failed, ["sf__Id", "sf__Error"]),
            "unprocessedrecords": (job.unprocessed, []),
        }[name]
        out = io.StringIO()
        writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
        writer.writerow([*head, *job.columns])
        for row in rows:
            writer.writerow([row.get(c, "") for c in [*head, *job.columns]])
        return 200, "text/csv", out.getvalue().encode()

    # ------------------------------------------------------------------ the org's work
    def _process(self, job: FakeJob) -> None:
        assert job.data is not None
        text = job.data.decode("utf-8")
        if job.line_ending == "CRLF":
            text = text.replace("\r\n", "\n")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
        job.columns = list(csv.reader(io.StringIO(text, newline="")).__next__())
        unknown = [c for c in job.columns if c != "Id" and c not in self.fields[job.object]]
        if unknown:
            job.state = "Failed"
            job.error_message = f"InvalidBatch : Field name not found : {unknown[0]}"
            job.unprocessed = rows
            return
        for row in rows:
            outcome = self._apply(job, row)
            if "sf__Error" in outcome:
                job.failed.append({**outcome, **row})
            else:
                job.successful.append({**outcome, **row})
        job.state = "JobComplete"

    def _apply(self, job: FakeJob, row: dict[str, str]) -> dict[str, str]:
        table = self.records.setdefault(job.object, {})
        key_field = job.external_id if job.operation == "upsert" else "Id"
        assert key_field is not None
        key = row.get(key_field, "")
        if key_field == "Id":
            record_id = key or None
            if record_id is not None and record_id not in table:
                return _row_error("", "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id")
            if record_id is None and job.operation == "update":
                return _row_error("", "MISSING_ARGUMENT:Id not specified in an update call")
        else:
            found = [i for i, r in table.items() if r.get(key_field) == key and key]
            if len(found) > 1:
                return _row_error("", f"DUPLICATE_EXTERNAL_ID:{key_field}: more than one record")
            record_id = found[0] if found else None
        for name, value in row.items():
            if name in self.numeric and value not in ("", NULL):
                try:
                    float(value)
                except ValueError:
                    return _row_error(
                        record_id or "",
                        f"INVALID_TYPE_ON_FIELD_IN_RECORD:{name}: value not of required "
                        f"type: {value}",
                    )
        created = record_id is None
        if record_id is None:
            record_id = f"00QFAKE{len(table) + 1:011d}"
            table[record_id] = {}
        record = table[record_id]
        for name, value in row.items():
            if name == "Id" or value == "":
                continue  # an empty cell leaves the field as it is
            record[name] = None if value == NULL else value
        return {"sf__Id": record_id, "sf__Created": "true" if created else "false"}


def _row_error(record_id: str, error: str) -> dict[str, str]:
    return {"sf__Id": record_id, "sf__Error": f"{error}:--"}


def _error(status: int, code: str, message: str) -> tuple[int, str, bytes]:
    return (
        status,
        "application/json",
        json.dumps([{"message": message, "errorCode": code}]).encode(),
    )


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSalesforce

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, content_type, payload = self.fake.answer(self.command, self.path, headers, body)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # the test asserts on fake.requests
