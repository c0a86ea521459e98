"""``crm-intel push salesforce`` against a local org that speaks Bulk API 2.0 ingest
(tests/fake_salesforce.py): the protocol's requests in order, failed rows reported one by one,
errors that name the job, and files cut into several jobs."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_salesforce import TOKEN, FakeSalesforce
from typer.testing import CliRunner, Result

from crm.exports.salesforce_bulk import PushReport, SalesforcePushError, push_csv
from crm.settings import forget_settings
from crm_intel.cli import app

pytestmark = pytest.mark.integration

LEAD_FIELDS = {
    "Lead_Score__c",
    "Lead_Grade__c",
    "Score_Reasons__c",
    "Score_Trend__c",
    "Crm_Intel_Id__c",
}
ORG = {
    "Lead": {
        "00Q000000000001": {"Lead_Score__c": "10", "Lead_Grade__c": "D"},
        "00Q000000000002": {"Lead_Score__c": "20", "Lead_Grade__c": "D"},
        "00Q000000000003": {"Lead_Score__c": "30", "Lead_Grade__c": "C"},
        "00Q000000000004": {"Lead_Score__c": "40", "Crm_Intel_Id__c": "L-4"},
        "00Q000000000005": {"Lead_Score__c": "50"},
    }
}
# as the nightly run writes it: a reason with a comma and quotes, a stale row with emptied scores
LEADS_CSV = (
    "Id,Lead_Score__c,Lead_Grade__c,Score_Reasons__c\n"
    '00Q000000000001,87,A,"Opened 3 emails; visited pricing, twice"\n'
    '00Q000000000002,41,C,"Webinar ""Scoring 101"" attended"\n'
    "00Q000000000003,,,Stale: no activity in 90 days\n"
)
JOB_SPEC = {
    "object": "Lead",
    "externalIdFieldName": "Id",
    "contentType": "CSV",
    "operation": "upsert",
    "lineEnding": "LF",
}
ONE_JOB = [
    "create",
    "upload",
    "close",
    "poll",  # InProgress
    "poll",  # JobComplete
    "successfulResults",
    "failedResults",
    "unprocessedrecords",
]
FAST = {"poll_seconds": 0.01, "timeout_seconds": 5.0}


@pytest.fixture
def org() -> Iterator[FakeSalesforce]:
    """A running org with five leads; Lead_Score__c takes numbers only."""
    fake = FakeSalesforce(copy.deepcopy(ORG), {"Lead": LEAD_FIELDS}, {"Lead_Score__c"})
    with fake.running():
        yield fake


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The org is on loopback: no proxy of the environment in between."""
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


@pytest.fixture
def salesforce_env(monkeypatch: pytest.MonkeyPatch, org: FakeSalesforce) -> Iterator[None]:
    """The org's URL and token in the environment the CLI reads, polls 10 ms apart."""
    monkeypatch.setenv("CRM_INTEL_SALESFORCE_INSTANCE_URL", org.url)
    monkeypatch.setenv("CRM_INTEL_SALESFORCE_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("CRM_INTEL_SALESFORCE_POLL_SECONDS", "0.01")
    forget_settings()
    yield
    forget_settings()  # later tests read their own environment


def _csv(tmp_path: Path, text: str, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def _push(*args: str) -> Result:
    return CliRunner().invoke(app, ["push", "salesforce", "--object", "Lead", *args])


def _last_json(result: Result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- the protocol
def test_a_push_follows_the_bulk_api_protocol_in_order(tmp_path, org):
    # given the write-back file of three leads
    path = _csv(tmp_path, LEADS_CSV)

    # when it is pushed
    report = push_csv(path, "Lead", org.url, TOKEN, **FAST)

    # then one job: created, uploaded, closed, polled to its end, its results read, in order
    assert org.steps() == ONE_JOB
    create, upload, close, *polls_and_results = org.requests
    assert create.method == "POST" and create.path == "/services/data/v62.0/jobs/ingest/"
    assert create.json == JOB_SPEC
    job_id = report.jobs[0].job_id
    assert upload.method == "PUT"
    assert upload.path == f"/services/data/v62.0/jobs/ingest/{job_id}/batches"
    assert upload.headers["content-type"].startswith("text/csv")
    assert upload.body == path.read_bytes()  # byte for byte
    assert close.method == "PATCH" and close.json == {"state": "UploadComplete"}
    assert close.path == f"/services/data/v62.0/jobs/ingest/{job_id}/"
    assert [r.path for r in polls_and_results] == [
        f"/services/data/v62.0/jobs/ingest/{job_id}/{p}"
        for p in ("", "", "successfulResults/", "failedResults/", "unprocessedrecords/")
    ]
    assert {r.headers["authorization"] for r in org.requests} == {f"Bearer {TOKEN}"}
    assert org.jobs[job_id].state == "JobComplete"
    # and the report counts the job's rows, all saved
    assert report == PushReport("Lead", "upsert", "Id", report.jobs)
    (job,) = report.jobs
    assert (job.state, job.rows, job.processed, job.successful, job.created) == (
        "JobComplete",
        3,
        3,
        3,
        0,
    )
    assert (job.failed, job.unprocessed, job.failed_rows) == (0, 0, ())
    assert report.all_succeeded
    # and the org holds the new values; an empty cell left the field as it was
    leads = org.records["Lead"]
    assert leads["00Q000000000001"]["Score_Reasons__c"] == "Opened 3 emails; visited pricing, twice"
    assert leads["00Q000000000002"]["Score_Reasons__c"] == 'Webinar "Scoring 101" attended'
    assert (
        leads["00Q000000000003"]["Lead_Score__c"],
        leads["00Q000000000003"]["Lead_Grade__c"],
    ) == (
        "30",
        "C",
    )


def test_empty_as_null_empties_the_fields_of_emptied_scores(tmp_path, org):
    # given the write-back file, whose stale lead has emptied scores
    path = _csv(tmp_path, LEADS_CSV)

    # when pushed with empty_as_null
    report = push_csv(path, "Lead", org.url, TOKEN, empty_as_null=True, **FAST)

    # then the stale lead's empty cells went as #N/A and emptied its fields; the rest as written
    upload = org.requests[org.steps().index("upload")]
    assert upload.body.decode().splitlines()[3] == (
        "00Q000000000003,#N/A,#N/A,Stale: no activity in 90 days"
    )
    assert upload.body.decode().splitlines()[:3] == LEADS_CSV.splitlines()[:3]
    stale = org.records["Lead"]["00Q000000000003"]
    assert (stale["Lead_Score__c"], stale["Lead_Grade__c"]) == (None, None)
    assert report.all_succeeded


def test_a_crlf_file_goes_as_written_with_its_line_ending(tmp_path, org):
    # given a CRLF file whose reason spans two lines
    text = 'Id,Score_Reasons__c\r\n00Q000000000001,"two\r\nlines"\r\n00Q000000000002,one\r\n'
    path = _csv(tmp_path, text)

    # when pushed
    report = push_csv(path, "Lead", org.url, TOKEN, **FAST)

    # then the job says CRLF and takes the bytes of the file, two rows
    assert org.requests[0].json["lineEnding"] == "CRLF"
    assert org.requests[1].body == text.encode()
    assert report.jobs[0].rows == 2 and report.all_succeeded
    assert org.records["Lead"]["00Q000000000001"]["Score_Reasons__c"] == "two\nlines"


def test_an_upsert_on_an_external_id_creates_the_unknown_ones(tmp_path, org):
    # given rows keyed by an external id field, one of them new to the org
    path = _csv(tmp_path, "Crm_Intel_Id__c,Lead_Score__c\nL-4,44\nL-9,99\n")

    # when upserted on that field
    report = push_csv(path, "Lead", org.url, TOKEN, external_id="Crm_Intel_Id__c", **FAST)

    # then the job names it, the known lead is updated and the other created
    assert org.requests[0].json["externalIdFieldName"] == "Crm_Intel_Id__c"
    assert (report.successful, report.jobs[0].created) == (2, 1)
    assert org.records["Lead"]["00Q000000000004"]["Lead_Score__c"] == "44"
    assert [r["Lead_Score__c"] for r in org.records["Lead"].values()][-1] == "99"


# ---------------------------------------------------------------------------- failed rows
BAD_ROWS_CSV = (
    "Id,Lead_Score__c,Lead_Grade__c\n"
    "00Q000000000001,87,A\n"
    "00Q999999999999,12,D\n"  # no such lead
    "00Q000000000002,high,B\n"  # not a number
    "00Q000000000003,55,B\n"
)
BAD_ROWS = [
    ("00Q999999999999", "", "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--"),
    (
        "00Q000000000002",
        "00Q000000000002",
        "INVALID_TYPE_ON_FIELD_IN_RECORD:Lead_Score__c: value not of required type: high:--",
    ),
]


def test_failed_rows_are_reported_one_by_one(tmp_path, org):
    # given an update with an unknown lead and a score that is not a number
    path = _csv(tmp_path, BAD_ROWS_CSV)

    # when pushed
    report = push_csv(path, "Lead", org.url, TOKEN, operation="update", **FAST)

    # then an update job (no external id), two rows saved and each failed one with its error
    assert org.requests[0].json == {
        "object": "Lead",
        "contentType": "CSV",
        "operation": "update",
        "lineEnding": "LF",
    }
    (job,) = report.jobs
    assert (job.rows, job.processed, job.successful, job.failed) == (4, 4, 2, 2)
    assert [(r.key, r.sf_id, r.error) for r in report.failed_rows] == BAD_ROWS
    assert {r.job_id for r in report.failed_rows} == {job.job_id}
    assert not report.all_succeeded
    assert org.records["Lead"]["00Q000000000003"]["Lead_Score__c"] == "55"


def test_the_cli_lists_failed_rows_and_exits_1(tmp_path, org, salesforce_env):
    # given the same update
    path = _csv(tmp_path, BAD_ROWS_CSV)

    # when pushed through the CLI with --json
    result = _push("--file", str(path), "--operation", "update", "--json")

    # then exit 1, each failed row on stderr with its error, all of them in the JSON line
    assert result.exit_code == 1, result.output
    for key, _, error in BAD_ROWS:
        assert f"  {key}: {error}" in result.stderr.splitlines()
    payload = _last_json(result)
    assert (payload["rows"], payload["successful"], payload["failed"]) == (4, 2, 2)
    assert [(r["key"], r["sf_id"], r["error"]) for r in payload["failed_rows"]] == BAD_ROWS
    assert [j["id"] for j in payload["jobs"]] == list(org.jobs)
    # and progress lines said what happened to the job; the token was never shown
    job_id = payload["jobs"][0]["id"]
    for step in ("created for 4 rows", "uploaded", "closed (UploadComplete)", "JobComplete"):
        assert f"{job_id}: {step}" in result.stderr
    assert TOKEN not in result.output


def test_the_cli_exits_0_when_every_row_is_saved(tmp_path, org, salesforce_env):
    result = _push("--file", str(_csv(tmp_path, LEADS_CSV)), "--json")

    assert result.exit_code == 0, result.output
    assert _last_json(result)["successful"] == 3
    assert "all 3 rows saved in Salesforce" in result.stderr
    # and by default the stale lead's emptied scores empty its fields, as the write-back means
    stale = org.records["Lead"]["00Q000000000003"]
    assert (stale["Lead_Score__c"], stale["Lead_Grade__c"]) == (None, None)


def test_the_cli_keeps_empty_cells_when_asked(tmp_path, org, salesforce_env):
    result = _push("--file", str(_csv(tmp_path, LEADS_CSV)), "--keep-empty")

    assert result.exit_code == 0, result.output
    upload = org.requests[org.steps().index("upload")]
    assert upload.body.decode() == LEADS_CSV
    assert org.records["Lead"]["00Q000000000003"]["Lead_Score__c"] == "30"


def test_only_the_first_20_failed_rows_are_listed(tmp_path, org, salesforce_env):
    # given 25 rows of unknown leads
    rows = "".join(f"00Q9999999999{i:02d},1\n" for i in range(25))
    path = _csv(tmp_path, "Id,Lead_Score__c\n" + rows)

    result = _push("--file", str(path), "--operation", "update")

    assert result.exit_code == 1, result.output
    listed = [line for line in result.stderr.splitlines() if "INVALID_CROSS_REFERENCE_KEY" in line]
    assert len(listed) == 20
    assert "… and 5 more (all of them with --json)" in result.stderr


# ---------------------------------------------------------------------------- errors
def test_a_refused_token_is_a_clear_error(tmp_path, org, salesforce_env, monkeypatch):
    # given a token the org does not take
    monkeypatch.setenv("CRM_INTEL_SALESFORCE_ACCESS_TOKEN", "expired-token")
    forget_settings()
    path = _csv(tmp_path, LEADS_CSV)

    # when pushed, by the function and the CLI
    with pytest.raises(SalesforcePushError) as raised:
        push_csv(path, "Lead", org.url, "expired-token", **FAST)
    result = _push("--file", str(path))

    # then the error names the step, the status and Salesforce's code and message
    said = "creating job 1/1: HTTP 401 INVALID_SESSION_ID: Session expired or invalid"
    assert str(raised.value) == said and raised.value.status == 401
    assert result.exit_code == 2
    assert said in result.stderr and "Traceback" not in result.output
    assert "expired-token" not in result.output
    assert org.steps() == ["create", "create"] and not org.jobs


def test_a_token_that_expires_during_a_job_names_the_job(tmp_path, org):
    # given a token that stops working after the job is closed
    org.expire_token_after(3)

    with pytest.raises(SalesforcePushError) as raised:
        push_csv(_csv(tmp_path, LEADS_CSV), "Lead", org.url, TOKEN, **FAST)

    (job_id,) = org.jobs
    assert str(raised.value) == (
        f"polling (job {job_id}): HTTP 401 INVALID_SESSION_ID: Session expired or invalid"
    )
    assert raised.value.job_id == job_id


def test_a_job_that_ends_failed_is_an_error_naming_it(tmp_path, org, salesforce_env):
    # given a file with a column the Lead object does not have
    path = _csv(tmp_path, "Id,Lead_Score__c,Not_A_Field__c\n00Q000000000001,87,x\n")

    # when pushed through the CLI
    result = _push("--file", str(path), "--json")

    # then exit 2 and an error that names the job and says why Salesforce failed it
    (job_id,) = org.jobs
    assert result.exit_code == 2
    assert (
        f"error: job {job_id} ended Failed: InvalidBatch : Field name not found : "
        "Not_A_Field__c (0 of 1 rows processed, 0 of them failed); no later job was created"
    ) in result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert org.steps()[-1] == "poll"  # no results read, no other job


def test_a_job_that_does_not_end_in_time_is_an_error_naming_it(tmp_path, org):
    # given an org whose jobs stay InProgress
    org.finishes = False

    with pytest.raises(SalesforcePushError) as raised:
        push_csv(
            _csv(tmp_path, LEADS_CSV),
            "Lead",
            org.url,
            TOKEN,
            poll_seconds=0.01,
            timeout_seconds=0.2,
        )

    (job_id,) = org.jobs
    assert str(raised.value).startswith(f"job {job_id} still InProgress after 0.2 s")
    assert org.steps().count("poll") >= 3


def test_a_file_without_the_key_column_is_refused_before_any_request(tmp_path, org, salesforce_env):
    path = _csv(tmp_path, "Lead_Id,Lead_Score__c\n00Q000000000001,87\n")

    result = _push("--file", str(path))

    assert result.exit_code == 2
    assert (
        f"{path} has no 'Id' column (the key, --external-id); its columns: Lead_Id, Lead_Score__c"
    ) in result.stderr.replace("\n", "")
    assert org.requests == []


def test_an_upload_refused_aborts_the_open_job(tmp_path, org):
    # given a token that stops working right after the job is created... for one request
    org.expire_token_after(1)

    with pytest.raises(SalesforcePushError) as raised:
        push_csv(_csv(tmp_path, LEADS_CSV), "Lead", org.url, TOKEN, **FAST)

    # then the upload's error, and that the abort could not be done either
    (job_id,) = org.jobs
    assert org.steps() == ["create", "upload", "abort"]
    assert str(raised.value).startswith(f"uploading the CSV (job {job_id}): HTTP 401")
    assert "the open job could not be aborted" in str(raised.value)


def test_a_missing_token_is_refused_by_the_cli(tmp_path, monkeypatch, salesforce_env):
    path = _csv(tmp_path, LEADS_CSV)
    monkeypatch.delenv("CRM_INTEL_SALESFORCE_ACCESS_TOKEN")
    forget_settings()

    result = _push("--file", str(path))

    assert result.exit_code == 2
    assert "no access token: set CRM_INTEL_SALESFORCE_ACCESS_TOKEN" in result.stderr


# ---------------------------------------------------------------------------- several jobs
FIVE_CSV = "Id,Lead_Score__c\n" + "".join(f"00Q00000000000{i},{i}0\n" for i in range(1, 6))


def test_rows_per_job_splits_a_file_into_several_jobs(tmp_path, org):
    # given five rows and at most two a job
    path = _csv(tmp_path, FIVE_CSV)

    report = push_csv(path, "Lead", org.url, TOKEN, rows_per_job=2, **FAST)

    # then three jobs, one after the other, each the whole protocol with the header and its rows
    assert org.steps() == ONE_JOB * 3
    uploads = [r.body.decode() for r in org.requests if r.step == "upload"]
    header, *rows = FIVE_CSV.splitlines(keepends=True)
    assert uploads == [header + "".join(rows[i : i + 2]) for i in (0, 2, 4)]
    assert [j.rows for j in report.jobs] == [2, 2, 1]
    assert [j.job_id for j in report.jobs] == list(org.jobs)
    assert (report.rows, report.successful, report.all_succeeded) == (5, 5, True)


def test_the_cli_takes_rows_per_job_from_settings(tmp_path, org, salesforce_env, monkeypatch):
    monkeypatch.setenv("CRM_INTEL_SALESFORCE_ROWS_PER_JOB", "2")
    forget_settings()

    result = _push("--file", str(_csv(tmp_path, FIVE_CSV)), "--json")

    assert result.exit_code == 0, result.output
    assert [j["rows"] for j in _last_json(result)["jobs"]] == [2, 2, 1]


def test_a_failed_second_job_names_the_jobs_done_before_it(tmp_path, org):
    # given five rows, two a job, and a token that stops working during the second job
    org.expire_token_after(len(ONE_JOB) + 2)
    path = _csv(tmp_path, FIVE_CSV)

    with pytest.raises(SalesforcePushError) as raised:
        push_csv(path, "Lead", org.url, TOKEN, rows_per_job=2, **FAST)

    first, second = org.jobs
    assert raised.value.job_id == second
    assert [j.job_id for j in raised.value.completed] == [first]
