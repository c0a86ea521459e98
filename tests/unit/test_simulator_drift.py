"""Planted drift: opt-in (no drift, the bytes of before), the change it promises, and its truth.

The ``crm-intel simulate --drift`` tests at the end drive the CLI, so they are marked integration
as ``tests/integration/test_simulate_cli.py`` is; the rest are unit tests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow
import pytest
from typer.testing import CliRunner

from crm.contract import validate_tables
from crm_intel.cli import app
from simulator import (
    ChannelVolumeDrift,
    SegmentConversionDrift,
    SimulationConfig,
    SimulationResult,
    parse_drift,
    simulate,
    write_simulation,
)

BASE = SimulationConfig(seed=5, accounts=200, leads=3_000, months=12)
START = pd.Timestamp("2024-10-01", tz="UTC")  # 9 months after BASE's start
MIXED_START = pd.Timestamp("2024-07-01", tz="UTC")  # 6 months after
# Recorded from the simulator as it was before drift existed (commit 7218a95), at BASE: what every
# table holds (values and dtypes), and the bytes of every file written with pyarrow 25.0.1.
RECORDED_PYARROW = "25.0.1"
CONTENT_DIGESTS = {
    "raw/accounts": "4520551546697b45027895ba03c6d30d7a27faac1c694b06d171a8fccd95032d",
    "raw/campaigns": "8b1d724a2106ea9e4b1a9aea40775a8ab422b9a688dacf57b418d1d27a03dc63",
    "raw/content": "638aed099e8353251732f5e8adefbc8640ea4d6ae744549d0eb68439a4e95748",
    "raw/interactions": "4696ae60628ad6c1af8968fc928f859620456a4427129aeff1455584f0acc82f",
    "raw/leads": "063efa1bbe44851033e887aa3f15b535fc9f5f8f636f7efa5a52dfb428bf138c",
    "raw/opportunities": "00c571db891920cab2f3290f198535a05dda460a0a67f5abf192552e42c7ee4c",
    "raw/subscriptions": "e795862323255c64f5cd4d48b54da0de351c1916601cc66bed82a53daf2a965f",
    "raw/tickets": "a6b8705752be98eb57531ffd26ccc69e269ef949855613602a7c97b37224dc93",
    "raw/usage": "50c9dafb10d76c3b236546b5433973ed057800800968fbbb378370129915f5e5",
    "truth/attribution_channels": (
        "1018763a0d49b635c62611fd459cd7b796e98497117ab37e3d6d0d8654b727ed"
    ),
    "truth/attribution_content": "2998d7dd86c58f94db673421a309b12ac106f462d9b760795974debeab6e5d9d",
    "truth/churn": "230209a9ef817029a583eea2a920dd8f38043108adea79c4014ce9d2071ee44c",
    "truth/lead_conversion": "6c4264519da6b2d977ea4557a0d19d789acd1768f93bdde2486e0c3b13813ecc",
}
FILE_DIGESTS = {
    "raw/accounts.parquet": "40a99155dd6a7313055b126c3d7e76c9660cdb2009a87b29b6a66c9498c019a2",
    "raw/campaigns.parquet": "11033651e221be72914ea8c59db46f15df63a8ded83592edbbdbed6df86d3a95",
    "raw/content.parquet": "7ff5565e22150a5b448ab53bf66b06c2d47ad6b3538b71eb1cd5523711388c8b",
    "raw/interactions.parquet": "71c01a03e3db7f9c72665b7d00a90102918932274621666c0625659340004351",
    "raw/leads.parquet": "2000538904e28cd86625b7c4a672a64c9092d6e895fa349e24522ac5a90e338f",
    "raw/opportunities.parquet": "5e4b0db4c39cdf46864ecd7711e423c4409515e7dc8c77cf7885bfa4b7b145f9",
    "raw/subscriptions.parquet": "081eebf84ca03c9fdf4e6785c3a6ca78e16dede3ff54ed26729454746ca15b54",
    "raw/tickets.parquet": "295ea64d81799e3933eb666f86ee2f944dcd32be42b73390d4288ea016ef1367",
    "raw/usage.parquet": "789c3cc9d558b0f470e15fe6d1d39c70b357cb4e1d47ec26e1582667a201211f",
    "truth/attribution_channels.parquet": (
        "11f16181b2fb5f5ca42c477e32f2141b29f7ab0ef2b1827e2534bcc07a2509cc"
    ),
    "truth/attribution_content.parquet": (
        "72abb60372d9c7a30cb3f4355c8e23a570a6b82b1850b4b65fb5b72b7275b552"
    ),
    "truth/churn.parquet": "4035f58daba3f4731d092c609403dff7763e7fa93cddb2063f313d1d498ee8e0",
    "truth/lead_conversion.parquet": (
        "04278fea811291f497675b839e820c836a8c5660f75fe1f8d30e0afd7c664331"
    ),
    "truth/summary.json": "a19b9cbb92f3afe10c1079119576a9c8aefbc97596004f464e5ae30923cf5d25",
}


def _frame_digest(frame: pd.DataFrame) -> str:
    digest = hashlib.sha256(repr([(c, str(t)) for c, t in frame.dtypes.items()]).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def _file_digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _lead_touches(sim: SimulationResult) -> pd.DataFrame:
    touches = sim.tables["interactions"]
    return touches[touches["lead_id"].notna()]


@pytest.fixture(scope="module")
def plain() -> SimulationResult:
    return simulate(BASE)


@pytest.fixture(scope="module")
def tripled() -> SimulationResult:
    """BASE with paid-search touches tripled from month 9."""
    return simulate(replace(BASE, drift=(ChannelVolumeDrift("paid_search", 3.0, 9),)))


@pytest.fixture(scope="module")
def mixed() -> SimulationResult:
    """BASE with display stopped and software leads' conversion hazard × 0.3, from month 6."""
    return simulate(
        replace(
            BASE,
            drift=(
                ChannelVolumeDrift("display", 0.0, 6),
                SegmentConversionDrift("industry", "software", 0.3, 6),
            ),
        )
    )


# --- opt-in: without drift, the outputs of before ------------------------------------------------
@pytest.mark.unit
def test_without_drift_every_table_holds_what_it_held_before_drift_existed(
    plain: SimulationResult,
) -> None:
    # Given the digests recorded from the simulator before drift, when it runs without drift
    contents = {f"raw/{n}": _frame_digest(f) for n, f in plain.tables.items()}
    contents |= {f"truth/{n}": _frame_digest(f) for n, f in plain.truth.items()}
    # then every table's values and dtypes are the same
    assert contents == CONTENT_DIGESTS
    assert plain.drift is None and "drift" not in plain.summary["config"]


@pytest.mark.unit
@pytest.mark.skipif(
    pyarrow.__version__ != RECORDED_PYARROW,
    reason=f"file bytes recorded with pyarrow {RECORDED_PYARROW}, whose writer they name",
)
def test_without_drift_every_file_has_the_bytes_of_before(
    plain: SimulationResult, tmp_path: Path
) -> None:
    write_simulation(plain, tmp_path)
    assert _file_digests(tmp_path) == FILE_DIGESTS  # and so no truth/drift.json


# --- a channel's volume ---------------------------------------------------------------------------
@pytest.mark.unit
def test_tripled_channel_has_three_times_the_touches_from_its_month(
    plain: SimulationResult, tripled: SimulationResult
) -> None:
    # Given the same seed with and without paid search × 3 from month 9
    counts = {}
    for name, sim in (("plain", plain), ("tripled", tripled)):
        touches = _lead_touches(sim)
        after = touches["occurred_at"] >= START
        paid = touches["channel"] == "paid_search"
        counts[name] = {
            "paid_before": int((paid & ~after).sum()),
            "paid_after": int((paid & after).sum()),
            "others_after": int((~paid & after).sum()),
        }
    plain_n, tripled_n = counts["plain"], counts["tripled"]
    # then nothing before the start changes, paid search triples after it (it is Poisson), and
    # other channels lose only the touches of leads that now convert sooner
    assert tripled_n["paid_before"] == plain_n["paid_before"]
    assert tripled_n["paid_after"] / plain_n["paid_after"] == pytest.approx(3.0, abs=0.3)
    assert 0.97 <= tripled_n["others_after"] / plain_n["others_after"] <= 1.0
    plain_before, tripled_before = (
        _lead_touches(sim)
        .loc[lambda d: d["occurred_at"] < START]
        .drop(columns="interaction_id")
        .reset_index(drop=True)
        for sim in (plain, tripled)
    )
    pd.testing.assert_frame_equal(tripled_before, plain_before)


@pytest.mark.unit
def test_added_touches_look_like_the_channels_own(
    plain: SimulationResult, tripled: SimulationResult
) -> None:
    def profile(sim: SimulationResult) -> pd.Series:
        touches = _lead_touches(sim)
        paid = touches[(touches["channel"] == "paid_search") & (touches["occurred_at"] >= START)]
        return pd.Series(
            {
                "with_content": paid["content_id"].notna().mean(),
                "with_campaign": paid["campaign_id"].notna().mean(),
                "page_views": (paid["type"] == "page_view").mean(),
            }
        )

    assert set(_lead_touches(tripled)["type"].unique()) == set(
        _lead_touches(plain)["type"].unique()
    )
    assert profile(tripled).to_dict() == pytest.approx(profile(plain).to_dict(), abs=0.05)
    typed = validate_tables(tripled.tables, now=pd.Timestamp(tripled.summary["end"]))
    assert len(typed["interactions"]) == len(tripled.tables["interactions"])


@pytest.mark.unit
def test_truth_counts_the_future_touches_the_drift_adds(
    plain: SimulationResult, tripled: SimulationResult
) -> None:
    # Given snapshots up to the start (same leads, same touches so far)
    keys = ["lead_id", "snapshot_at"]
    both = plain.truth["lead_conversion"].merge(
        tripled.truth["lead_conversion"], on=keys, suffixes=("_plain", "_tripled")
    )
    both = both[both["snapshot_at"] <= START]
    horizon_end = both["snapshot_at"] + pd.Timedelta(days=91)
    # then a window that ends before the start is untouched, and one reaching past it counts the
    # extra paid-search touches (never fewer)
    early = both[horizon_end <= START]
    assert (early["p_convert_tripled"] == early["p_convert_plain"]).all() and len(early) > 1_000
    late = both[horizon_end > START]
    assert (late["p_convert_tripled"] >= late["p_convert_plain"]).all()
    assert late["p_convert_tripled"].mean() / late["p_convert_plain"].mean() > 1.02


@pytest.mark.unit
def test_drift_json_says_what_changed_and_what_it_measured(
    plain: SimulationResult, tripled: SimulationResult, tmp_path: Path
) -> None:
    write_simulation(tripled, tmp_path)
    written = json.loads((tmp_path / "truth" / "drift.json").read_text())
    (entry,) = written["drifts"]
    effect = entry.pop("effect")
    assert entry == {
        "kind": "channel_volume",
        "spec": "channel=paid_search,volume=3,from_month=9",
        "channel": "paid_search",
        "factor": 3.0,
        "from_month": 9,
        "start": "2024-10-01T00:00:00+00:00",
    }
    touches = _lead_touches(tripled)
    paid = touches[touches["channel"] == "paid_search"]
    monthly = paid["occurred_at"].dt.tz_localize(None).dt.to_period("M").value_counts()
    assert [m["touches"] for m in effect["monthly_touches"]] == monthly.sort_index().tolist()
    assert [m["start"] for m in effect["monthly_touches"]][9] == "2024-10-01"
    assert effect["touches_added"] > 1_000 and effect["touches_removed"] == 0
    # paid search per month rises about 3 × more than without drift (1.1 ×: season, open leads),
    # the other channels as much as without
    touches = _lead_touches(plain)
    paid, after = touches["channel"] == "paid_search", touches["occurred_at"] >= START
    days_before = (START - pd.Timestamp(BASE.start, tz="UTC")).days
    days_after = (pd.Timestamp(plain.summary["end"]) - START).days
    assert (days_before, days_after) == (274, 90)

    def ratio(channel: pd.Series) -> float:
        return float(
            (channel & after).sum() / days_after / ((channel & ~after).sum() / days_before)
        )

    assert ratio(paid) == pytest.approx(1.11, abs=0.01)
    assert effect["ratio_after_to_before"] / ratio(paid) == pytest.approx(3.0, abs=0.3)
    assert effect["other_channels_ratio_after_to_before"] == pytest.approx(ratio(~paid), abs=0.02)
    assert json.loads((tmp_path / "truth" / "summary.json").read_text())["config"]["drift"] == [
        "channel=paid_search,volume=3,from_month=9"
    ]


# --- a stopped channel and a segment's conversion ------------------------------------------------
@pytest.mark.unit
def test_stopped_channel_has_no_touches_from_its_month(
    plain: SimulationResult, mixed: SimulationResult
) -> None:
    def display(sim: SimulationResult) -> pd.Series:
        touches = _lead_touches(sim)
        return touches.loc[touches["channel"] == "display", "occurred_at"]

    assert (display(mixed) < MIXED_START).all()
    assert (display(plain) >= MIXED_START).sum() > 500
    assert (display(mixed) < MIXED_START).sum() == (display(plain) < MIXED_START).sum()


@pytest.mark.unit
def test_segment_conversion_changes_only_the_segments_later_leads(
    plain: SimulationResult, mixed: SimulationResult
) -> None:
    # Given software leads' hazard × 0.3 from month 6 (and display, which has no effect, stopped)
    leads = plain.tables["leads"][["lead_id", "created_at", "converted_at"]].merge(
        mixed.tables["leads"][["lead_id", "converted_at"]], on="lead_id", suffixes=("", "_mixed")
    )
    earlier = leads["created_at"] < MIXED_START
    # then leads created before the start convert exactly as they did
    pd.testing.assert_series_equal(
        leads.loc[earlier, "converted_at"],
        leads.loc[earlier, "converted_at_mixed"],
        check_names=False,
    )
    effect = next(d["effect"] for d in mixed.drift["drifts"] if d["kind"] == "segment_conversion")
    # every conversion gained or lost is one of the drifted leads, counted in the truth
    lost = leads["converted_at_mixed"].notna().sum() - leads["converted_at"].notna().sum()
    assert effect["conversions_added"] == lost < -10
    assert effect["conversion_rate_after_without_drift"] == pytest.approx(
        effect["conversion_rate_after"] - lost / effect["leads_after"]
    )
    assert effect["conversion_rate_after"] < 0.6 * effect["conversion_rate_after_without_drift"]


# --- the specification ----------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "drift"),
    [
        ("channel=paid_search,volume=3,from_month=9", ChannelVolumeDrift("paid_search", 3.0, 9)),
        (" channel = email , volume=0.5, from_month=2", ChannelVolumeDrift("email", 0.5, 2)),
        (
            "segment=employee_band:51-200,conversion=1.5,from_month=4",
            SegmentConversionDrift("employee_band", "51-200", 1.5, 4),
        ),
    ],
)
def test_a_drift_parses_from_its_command_line_form_and_back(text: str, drift: object) -> None:
    assert parse_drift(text) == drift
    assert parse_drift(str(drift)) == drift


@pytest.mark.unit
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("channel=paid_search,volume=3", "from_month=M is missing"),
        ("channel=paid_search,volume=three,from_month=9", "volume must be a number"),
        ("channel=tv,volume=3,from_month=9", "channel must be one of email, paid_search"),
        ("channel=email,conversion=2,from_month=9", "conversion= does not apply to a channel"),
        ("segment=industry:software,volume=2,from_month=9", "volume= does not apply to a segment"),
        ("segment=software,conversion=2,from_month=9", "segment must be DIMENSION:VALUE"),
        ("segment=industry:Technology,conversion=2,from_month=9", "industry must be one of"),
        ("segment=region:NA,conversion=2,from_month=9", "segment dimension must be one of"),
        ("channel=email,segment=industry:software,volume=2,from_month=1", "exactly one of"),
        ("channel=email,volume=-1,from_month=1", "volume must be at least 0"),
        ("segment=industry:media,conversion=0,from_month=1", "conversion must be above 0"),
        ("channel=email,volume=2,from_month=0", "from_month must be a whole number of months"),
        ("channel=email,volume=2,from_month=1.5", "from_month must be a whole number"),
        ("channel=email,volume=2,from_month=3,colour=red", "unknown key 'colour'"),
        ("channel=email;volume=2", "expected KEY=VALUE pairs"),
    ],
)
def test_a_bad_drift_is_refused_saying_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_drift(text)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("drift", "message"),
    [
        ((ChannelVolumeDrift("email", 2.0, 12),), "from_month 12 is not before the end"),
        (
            (ChannelVolumeDrift("email", 2.0, 3), ChannelVolumeDrift("email", 0.5, 6)),
            "names channel email twice",
        ),
        (("channel=email,volume=2,from_month=3",), r"drift\[0\] must be"),
        (ChannelVolumeDrift("email", 2.0, 3), "drift must be a tuple"),
    ],
)
def test_config_refuses_drift_that_does_not_fit_the_period(drift: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulationConfig(months=12, drift=drift)  # type: ignore[arg-type]


@pytest.mark.unit
def test_config_takes_a_list_of_drifts_as_a_tuple() -> None:
    config = SimulationConfig(drift=[ChannelVolumeDrift("email", 2.0, 3)])  # type: ignore[arg-type]
    assert config.drift == (ChannelVolumeDrift("email", 2.0, 3),)
    assert hash(config)


# --- the command line -----------------------------------------------------------------------------
CLI_SIZE = ["--seed", "5", "--accounts", "100", "--leads", "800", "--months", "6"]


@pytest.mark.integration
def test_cli_drift_option_writes_the_drift_truth(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "simulate",
            "--out",
            str(tmp_path),
            *CLI_SIZE,
            "--drift",
            "channel=paid_search,volume=3,from_month=3",
            "--drift",
            "segment=industry:software,conversion=0.5,from_month=2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    written = json.loads(Path(summary["drift_file"]).read_text())
    assert (
        [d["spec"] for d in written["drifts"]]
        == summary["config"]["drift"]
        == [
            "channel=paid_search,volume=3,from_month=3",
            "segment=industry:software,conversion=0.5,from_month=2",
        ]
    )
    assert [d["start"][:10] for d in written["drifts"]] == ["2024-04-01", "2024-03-01"]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("channel=paid_serch,volume=3,from_month=3", "channel must be one of"),
        ("channel=paid_search,volume=3,from_month=6", "is not before the end of the 6-month"),
    ],
)
def test_cli_bad_drift_is_a_clear_error_naming_the_option(
    tmp_path: Path, spec: str, message: str
) -> None:
    result = CliRunner().invoke(
        app, ["simulate", "--out", str(tmp_path / "X"), *CLI_SIZE, "--drift", spec]
    )
    assert result.exit_code == 2
    output = " ".join(result.output.replace("│", " ").split())
    assert "Invalid value for '--drift'" in output and message in output
    assert not (tmp_path / "X").exists()
