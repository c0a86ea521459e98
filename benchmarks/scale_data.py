"""Benchmark data at scale: N copies of one seeded simulation, written without holding them.

The feature-build benchmark needs >= 100 M interactions with a known structure; one simulation of
that size would need ~40 GiB. Instead one simulation (~10 M interactions by default) is written
once, then copied N times into ``<out>/raw/``. Each copy is a separate business unit: every id of
its own records (leads, accounts, interactions, opportunities, subscriptions, tickets) gets the
suffix ``-c<k>`` (copy 0 keeps the simulation's ids, so a one-copy directory holds the
simulation's data), while dates are unchanged, so every copy has the same calendar, the same
snapshot grid and the same work per copy: the feature tables of N copies are N times those of
one (ids aside), and any growth beyond linear comes from the engine, not the data. Content and
campaigns are shared by all copies (written once), so ``interactions.content_id`` and
``campaign_id`` keep naming existing rows. The truth of copy k is the simulation's truth
(``<out>/base/truth/``) with the same suffix on its ids.

Layout (``--layout``): ``folders`` (default) writes each copied table as a Parquet folder,
``<table>.parquet/part-00007.parquet`` one part per copy; ``file`` writes one file per table, a
row group per copy's row group (for readers that cannot open a folder). Either way the copy
streams row group by row group: memory stays at one row group, whatever N is. Schema and dtypes
are the simulation's own (nanosecond UTC timestamps, large strings, the pandas metadata).

Usage: ``python benchmarks/scale_data.py --out DIR --interactions 100_000_000 [--seed 7]``
(the copy count is the smallest N with N x one simulation's interactions >= the target; or give
``--copies N``). The simulation is kept in ``<out>/base/`` and reused by a later run with the
same seed and size. Writes ``<out>/raw/`` atomically and ``<out>/scale.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crm.contract import TABLES
from crm.io import atomic_dir

# written once: every copy's touches name the same content and campaigns
SHARED_TABLES: tuple[str, ...] = ("content", "campaigns")
SHARED_IDS: frozenset[str] = frozenset({"content_id", "campaign_id"})
# per table, the id columns made unique per copy: every contract id column but the shared ones
COPY_IDS: dict[str, tuple[str, ...]] = {
    name: tuple(c.name for c in spec.columns if c.kind == "id" and c.name not in SHARED_IDS)
    for name, spec in TABLES.items()
    if name not in SHARED_TABLES
}
LAYOUTS: tuple[str, ...] = ("folders", "file")
DEFAULT_LEADS = 1_200_000  # with 60k accounts and seed 7, 10.1 M interactions: 10 copies >= 100 M
DEFAULT_ACCOUNTS = 60_000


def copy_suffix(copy: int) -> str:
    """The id suffix of copy ``copy``: none for copy 0, ``-c<k>`` for the others."""
    if copy < 0:
        raise ValueError(f"copy must be >= 0, got {copy}")
    return "" if copy == 0 else f"-c{copy}"


def copy_ids(table: pa.Table, columns: tuple[str, ...], copy: int) -> pa.Table:
    """``table`` with ``suffix(copy)`` appended to each of ``columns`` it has.

    Missing ids stay missing; column types (``large_string``) and schema metadata are kept.
    """
    suffix = copy_suffix(copy)
    if not suffix:
        return table
    for name in columns:
        index = table.schema.get_field_index(name)
        if index < 0:
            continue
        column = table[name]
        new = pc.binary_join_element_wise(
            column, pa.scalar(suffix, column.type), pa.scalar("", column.type)
        )
        table = table.set_column(index, table.schema.field(index), new)
    return table


def copies_for(target_interactions: int, base_interactions: int) -> int:
    """The smallest copy count whose interactions reach ``target_interactions``."""
    if base_interactions <= 0:
        raise ValueError("the base simulation has no interactions")
    return max(1, math.ceil(target_interactions / base_interactions))


def simulate_base(base_dir: Path, seed: int, leads: int, accounts: int) -> int:
    """Simulate into ``base_dir`` unless a simulation of this seed and size is there already.

    Returns:
        the base simulation's interaction count.
    """
    config = {"seed": seed, "leads": leads, "accounts": accounts}
    marker = base_dir / "config.json"
    if not (marker.exists() and json.loads(marker.read_text()) == config):
        from simulator import SimulationConfig, simulate, write_simulation

        started = time.perf_counter()
        print(f"simulating seed={seed} leads={leads:,} accounts={accounts:,} ...", flush=True)
        result = simulate(SimulationConfig(seed=seed, leads=leads, accounts=accounts))
        write_simulation(result, base_dir)
        del result
        marker.write_text(json.dumps(config) + "\n")
        print(f"  simulated in {time.perf_counter() - started:.1f} s", flush=True)
    return pq.ParquetFile(base_dir / "raw" / "interactions.parquet").metadata.num_rows


def _write_copies(
    source: Path,
    target: Path,
    columns: tuple[str, ...],
    copies: int,
    layout: str,
    progress: Callable[[str], None],
) -> int:
    """Write ``copies`` copies of one table, row group by row group; returns rows written."""
    base = pq.ParquetFile(source)
    schema = base.schema_arrow
    rows = 0
    if layout == "folders":
        target.mkdir()
    writer = None
    try:
        for copy in range(copies):
            if layout == "folders":
                writer = pq.ParquetWriter(
                    target / f"part-{copy:05d}.parquet", schema, compression="zstd"
                )
            elif writer is None:
                writer = pq.ParquetWriter(target, schema, compression="zstd")
            for group in range(base.num_row_groups):
                part = copy_ids(base.read_row_group(group), columns, copy)
                writer.write_table(part)
                rows += part.num_rows
            if layout == "folders":
                writer.close()
                writer = None
            if copies > 1 and (copy + 1) % max(1, copies // 5) == 0:
                progress(f"  {source.stem}: copy {copy + 1}/{copies}")
    finally:
        if writer is not None:
            writer.close()
    return rows


def write_scaled(
    base_raw: Path,
    out_dir: Path,
    copies: int,
    layout: str = "folders",
    progress: Callable[[str], None] = print,
) -> dict[str, int]:
    """``copies`` copies of the raw tables in ``base_raw`` into ``out_dir/raw``, atomically.

    Returns:
        rows written per table.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if copies < 1:
        raise ValueError(f"copies must be >= 1, got {copies}")
    rows: dict[str, int] = {}
    with atomic_dir(Path(out_dir) / "raw") as tmp:
        for path in sorted(Path(base_raw).glob("*.parquet")):
            name = path.stem
            started = time.perf_counter()
            if name in COPY_IDS:
                rows[name] = _write_copies(
                    path, tmp / path.name, COPY_IDS[name], copies, layout, progress
                )
            else:  # shared tables, and any table outside the contract, once and unchanged
                table = pq.read_table(path)
                pq.write_table(table, tmp / path.name, compression="zstd", store_schema=True)
                rows[name] = table.num_rows
            progress(f"{name}: {rows[name]:,} rows in {time.perf_counter() - started:.1f} s")
    return rows


def folder_bytes(path: Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> Mapping[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="data directory to write")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--interactions", type=lambda s: int(s.replace("_", "")))
    size.add_argument("--copies", type=int)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--leads", type=int, default=DEFAULT_LEADS, help="of one simulation")
    parser.add_argument("--accounts", type=int, default=DEFAULT_ACCOUNTS, help="of one simulation")
    parser.add_argument("--layout", choices=LAYOUTS, default="folders")
    parser.add_argument(
        "--base", type=Path, help="where the simulation is kept (default: <out>/base)"
    )
    args = parser.parse_args(argv)
    base_dir = args.base or args.out / "base"
    base_interactions = simulate_base(base_dir, args.seed, args.leads, args.accounts)
    copies = args.copies or copies_for(args.interactions, base_interactions)
    print(
        f"{copies} copies of {base_interactions:,} interactions -> {args.out / 'raw'}", flush=True
    )
    started = time.perf_counter()
    rows = write_scaled(
        base_dir / "raw", args.out, copies, args.layout, lambda m: print(m, flush=True)
    )
    seconds = time.perf_counter() - started
    manifest = {
        "copies": copies,
        "layout": args.layout,
        "id_suffix": "copy 0: none; copy k: -c<k>",
        "shared_tables": list(SHARED_TABLES),
        "base": {
            "dir": str(base_dir),
            "seed": args.seed,
            "leads": args.leads,
            "accounts": args.accounts,
            "interactions": base_interactions,
        },
        "rows": rows,
        "copy_seconds": round(seconds, 1),
        "raw_bytes": folder_bytes(args.out / "raw"),
    }
    (args.out / "scale.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2), flush=True)
    return manifest


if __name__ == "__main__":
    main(sys.argv[1:])
