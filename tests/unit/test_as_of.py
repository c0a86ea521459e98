"""Point-in-time windows: the running sum over the snapshot grid (snapshot_windowed) gives what
joining every row to its earlier events gives (windowed), at the edges where they could part."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from features.as_of import (
    NS_PER_DAY,
    NS_PER_MS,
    Measure,
    SnapshotGrid,
    snapshot_windowed,
    windowed,
)
from features.engines import DuckDBEngine

pytestmark = pytest.mark.unit

STEP = 7 * NS_PER_DAY
START = 1_700_000_000_000 * NS_PER_MS - (1_700_000_000_000 * NS_PER_MS) % STEP  # a whole week
MEASURES = [
    Measure("all", "one"),
    Measure("in_7d", "one", 7),
    Measure("in_30d", "one", 30),
    Measure("amount_90d", "amount", 90),
    Measure("red_30d", "colour", 30, equals="red"),
    Measure("red_all", "colour", equals="red"),
    Measure("last", "one", last=True),
    Measure("last_red", "is_red", last=True),
]


@pytest.fixture(scope="module")
def engine() -> DuckDBEngine:
    return DuckDBEngine()


def edge_events(rng: np.random.Generator, n: int) -> pa.Table:
    """Events at snapshots, a millisecond either side of them, exactly a window before one, long
    before the grid, and anywhere; times are whole milliseconds, as the features round them."""
    week = rng.integers(-20, 30, n)
    offsets = np.array([0, NS_PER_MS, -NS_PER_MS, -7 * NS_PER_DAY, -30 * NS_PER_DAY,
                        -30 * NS_PER_DAY + NS_PER_MS, -90 * NS_PER_DAY])  # fmt: skip
    anywhere = rng.integers(0, STEP // NS_PER_MS, n) * NS_PER_MS
    pick = rng.integers(0, len(offsets) + 1, n)
    offset = np.where(pick < len(offsets), offsets[np.minimum(pick, len(offsets) - 1)], anywhere)
    colour = rng.choice(["red", "blue"], n)
    return pa.table(
        {
            "key": pa.array(rng.choice([f"e{i}" for i in range(12)], n)),
            "t_ns": pa.array(START + week * STEP + offset, pa.int64()),
            "one": pa.array(np.ones(n)),
            "amount": pa.array(rng.integers(1, 1000, n).astype(float)),
            "colour": pa.array(colour),
            "is_red": pa.array((colour == "red").astype(float)),
        }
    )


def probes(rng: np.random.Generator) -> pa.Table:
    """Each entity at some snapshots, with gaps; one entity with none."""
    keys, times = [], []
    for i in range(11):
        weeks = np.flatnonzero(rng.random(26) < 0.6)
        keys += [f"e{i}"] * len(weeks)
        times += [START + int(w) * STEP for w in weeks]
    return pa.table({"key": pa.array(keys), "t_ns": pa.array(times, pa.int64())})


def ordered(table: pa.Table) -> pa.Table:
    return table.sort_by([("key", "ascending"), ("t_ns", "ascending")])


def test_the_running_sum_over_snapshots_equals_the_join_to_earlier_events(
    engine: DuckDBEngine,
) -> None:
    # given events on every edge of a snapshot and of each window, and entities seen at some
    # snapshots with gaps between them
    rng = np.random.default_rng(5)
    events = engine.from_arrow(edge_events(rng, 3_000))
    rows = engine.from_arrow(probes(rng))
    # when both forms compute every measure
    grid = SnapshotGrid(START, STEP)
    got = ordered(engine.fetch(snapshot_windowed(rows, "key", events, MEASURES, grid)))
    want = ordered(engine.fetch(windowed(rows, "key", events, MEASURES)))
    # then they agree on every row and measure, and the rows are the probes
    assert got.num_rows == want.num_rows == rows.count().execute() > 100
    assert got.select(want.column_names).equals(want)
    assert pa.compute.sum(got.column("in_7d")).as_py() > 0


def test_an_event_counts_from_its_snapshot_until_its_window_passes(engine: DuckDBEngine) -> None:
    # given one event at a snapshot and one a millisecond after it, and the next three snapshots
    at = START + 5 * STEP
    events = pa.table(
        {
            "key": ["a", "a"],
            "t_ns": pa.array([at, at + NS_PER_MS], pa.int64()),
            "one": [1.0, 1.0],
        }
    )
    rows = pa.table({"key": ["a"] * 3, "t_ns": pa.array([at, at + STEP, at + 2 * STEP])})
    measures = [
        Measure("all", "one"),
        Measure("in_7d", "one", 7),
        Measure("last", "one", last=True),
    ]
    got = engine.fetch(
        snapshot_windowed(
            engine.from_arrow(rows),
            "key",
            engine.from_arrow(events),
            measures,
            SnapshotGrid(START, STEP),
        )
    )
    got = ordered(got).to_pydict()
    # then at the snapshot only the first counts; a week later the first has left the 7-day
    # window (it is not after t - 7 days) and the second is in it; a week after that neither is
    assert got["all"] == [1.0, 2.0, 2.0]
    assert got["in_7d"] == [1.0, 1.0, 0.0]
    assert got["last"] == [at, at + NS_PER_MS, at + NS_PER_MS]
