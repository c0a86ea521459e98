"""Reading and writing contract tables, atomically: a failed write leaves earlier outputs intact."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import ArrowException

from crm.contract import DTYPES, TABLES, ContractError, Problem


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``target``; on success it replaces ``target`` whole.

    On any exception the temporary folder is removed and ``target`` is left exactly as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed onto ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    tmp.chmod(0o644)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)


def write_parquet(table: pa.Table | pd.DataFrame, path: Path) -> None:
    """Write one table deterministically (same data → same bytes)."""
    if isinstance(table, pd.DataFrame):
        table = pa.Table.from_pandas(table, preserve_index=False)
    pq.write_table(table, path, compression="zstd", write_statistics=True, store_schema=True)


def write_tables(
    tables: Mapping[str, pa.Table | pd.DataFrame],
    folder: Path,
    extra_files: Mapping[str, str] | None = None,
) -> None:
    """Write ``{name}.parquet`` for each table into ``folder``, replacing it atomically, with
    ``extra_files`` (file name → text) beside them."""
    with atomic_dir(folder) as tmp:
        for name, table in tables.items():
            write_parquet(table, tmp / f"{name}.parquet")
        for name, content in (extra_files or {}).items():
            (tmp / name).write_text(content, encoding="utf-8")


def read_table(raw_dir: Path, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read one contract table from ``raw_dir`` with the contract's pandas dtypes."""
    path = Path(raw_dir) / f"{name}.parquet"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} does not exist: run `crm-intel simulate` or `crm-intel import` first"
        )
    frame = pd.read_parquet(path, columns=columns)
    spec = TABLES.get(name)
    if spec is not None:
        for col in spec.columns:
            if col.name in frame.columns and col.kind in ("id", "str", "category"):
                frame[col.name] = frame[col.name].astype(DTYPES[col.kind])
    return frame


def read_tables(raw_dir: Path) -> dict[str, pd.DataFrame]:
    """All contract tables from ``raw_dir``."""
    return {name: read_table(raw_dir, name) for name in TABLES}


def _read_csv(path: Path) -> pd.DataFrame:
    """Every value as text ("" when blank or absent), so the contract alone decides types.

    The header is read as an ordinary row: with ``header=0`` pandas silently turns a first data
    row with one field too many into an index, shifting every value by a column. Here any row
    wider than the header is a parse error naming its line.
    """
    rows = pd.read_csv(
        path, header=None, dtype=str, keep_default_na=False, encoding="utf-8-sig"
    ).fillna("")
    header = [str(name).strip() for name in rows.iloc[0]]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ValueError(f"column(s) {', '.join(map(repr, repeated))} appear more than once")
    frame = rows.iloc[1:].reset_index(drop=True)
    frame.columns = header
    return frame


def read_file(path: Path, table: str) -> pd.DataFrame:
    """Read one CSV (every value as text) or Parquet file; unreadable → ContractError."""
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        return _read_csv(path)
    except (OSError, ValueError, ArrowException) as err:  # ValueError covers decode/parse errors
        reason = str(err).strip() or type(err).__name__
        raise ContractError(
            [Problem(table, str(path), None, None, f"could not be read: {reason}")]
        ) from err
