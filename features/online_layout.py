"""Feast's SQLite online layout, encoded in bulk: entity keys, ``ValueProto`` blobs, the fill.

Feast's SQLite store binds one row per (entity, feature) from Python, which limits it to about
1-2k entities/s. Here values are encoded column-wise in numpy and fanned out by SQLite, into the
same rows Feast writes (:func:`fill_view_table`); the keys come from Feast's own serialiser
(:func:`entity_keys`). :meth:`features.online_store.CrmSqliteOnlineStore.write_generation` is
the caller.
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast import FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Float32, String


def quote(name: str) -> str:
    """A SQLite identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def entity_keys(join_key: str, ids: Sequence[str], version: int = 3) -> list[bytes]:
    """Feast's serialised entity keys of one string join key, built by prefix.

    The layout is ``<count><type><len>join_key<type><len>value``; the prefix comes from Feast's
    own serialiser and the first key is checked against it, so a change in Feast fails loudly.
    """
    if not ids:
        return []

    def feast_key(value: str) -> bytes:
        return serialize_entity_key(
            EntityKeyProto(join_keys=[join_key], entity_values=[ValueProto(string_val=value)]),
            entity_key_serialization_version=version,
        )

    prefix = feast_key("")[:-4]  # without the empty value's length
    pack = struct.Struct("<I").pack
    keys = [prefix + pack(len(b)) + b for b in (i.encode() for i in ids)]
    if keys[0] != feast_key(ids[0]):
        raise RuntimeError("Feast's entity key serialisation changed: update entity_keys")
    return keys


def bulk_layout(view: FeatureView) -> tuple[str, list[str], list[str]]:
    """(join key, ``Float32`` features, ``String`` features) of a view the bulk writer handles.

    Raises:
        ValueError: the view has several join keys, a non-string one, or other feature types
            (materialise those with Feast's own ``materialize``).
    """
    keys = view.entity_columns
    if len(keys) != 1 or keys[0].dtype != String:
        raise ValueError(f"view {view.name!r}: the bulk writer needs one String join key")
    numeric = [f.name for f in view.features if f.dtype == Float32]
    categorical = [f.name for f in view.features if f.dtype == String]
    other = sorted({f.name for f in view.features} - {*numeric, *categorical})
    if other:
        raise ValueError(f"view {view.name!r}: the bulk writer handles Float32 and String only")
    return keys[0].name, numeric, categorical


def float32_slots(block: np.ndarray) -> np.ndarray:
    """Per row, the serialised ``ValueProto(float_val=v)`` of each column, 5 bytes apiece.

    A slot starts with the tag ``0x35`` (field 6, 32-bit) when the value is present and ``0x00``
    for NaN, which the loader stores as an empty ``ValueProto`` (null), as Feast does.
    """
    n, m = block.shape
    slots = np.empty((n, m, 5), dtype=np.uint8)
    values = np.ascontiguousarray(block, dtype="<f4")
    slots[:, :, 0] = np.where(np.isnan(values), 0x00, 0x35)
    slots[:, :, 1:] = values.view(np.uint8).reshape(n, m, 4)
    return slots.reshape(n, m * 5)


def string_values(values: pa.ChunkedArray) -> tuple[list[bytes], list[str | None]]:
    """Serialised ``ValueProto(string_val=v)`` (empty, i.e. null, for null) and the text.

    Categorical columns hold few distinct values, so each is serialised once by protobuf.
    """
    encoded = pc.dictionary_encode(values).combine_chunks()
    words = encoded.dictionary.to_pylist()
    protos = [ValueProto(string_val=w).SerializeToString() for w in words]
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    table = np.array([*protos, b""], dtype=object)  # code -1 → the last entry, null
    texts = np.array([*words, None], dtype=object)
    return table[codes].tolist(), texts[codes].tolist()


def fill_view_table(
    conn: sqlite3.Connection,
    name: str,
    view: FeatureView,
    table: pa.Table,
    now: datetime,
    version: int = 3,
) -> int:
    """Fill the view's (empty) online table ``name`` with ``table``, one row per entity.

    Python binds one row per *entity* into a temporary table (numeric values packed in one blob
    of serialised ``ValueProto``s); SQLite then fans it out to one row per (entity, feature) in
    primary-key order, so the table's B-tree (and every index of a store from an older layout)
    is appended to in order. Binding one row per value from Python, as Feast does, is what
    limits it to about 1-2k entities/s.

    Returns:
        rows (entities) written.
    """
    n = table.num_rows
    if n == 0:
        return 0
    key, numeric, categorical = bulk_layout(view)
    keys = np.array(entity_keys(key, table[key].to_pylist(), version), dtype=object)
    order = np.argsort(keys, kind="stable")  # bytes order = SQLite's BLOB order
    keys = keys[order]
    table = table.take(pa.array(order))
    # epoch seconds, as Feast's SQLite store stores event_ts (on a UTC host)
    event_ts = (table["event_timestamp"].cast(pa.int64()).to_numpy() // 1_000_000_000).tolist()
    block = (
        np.column_stack([table[f].to_numpy().astype(np.float32) for f in numeric])
        if numeric
        else np.zeros((n, 0), dtype=np.float32)
    )
    width = 5 * len(numeric)
    packed = float32_slots(block).tobytes()
    blobs = [packed[i : i + width] for i in range(0, n * width, width)] if width else [b""] * n
    s_cols = "".join(f", s{j} BLOB, t{j} TEXT" for j in range(len(categorical)))
    conn.execute("DROP TABLE IF EXISTS temp.crm_entity")
    conn.execute("DROP TABLE IF EXISTS temp.crm_feature")
    conn.execute(f"CREATE TEMP TABLE crm_entity (k BLOB, ts INTEGER, b BLOB{s_cols})")
    conn.execute("CREATE TEMP TABLE crm_feature (name TEXT, slot INTEGER)")
    # rowid order of crm_feature = feature-name order, so the fan-out arrives in key order
    slots = {f: j for j, f in enumerate(numeric)} | {
        f: len(numeric) + j for j, f in enumerate(categorical)
    }
    conn.executemany("INSERT INTO temp.crm_feature VALUES (?, ?)", sorted(slots.items()))
    columns = [keys.tolist(), event_ts, blobs]
    for f in categorical:
        columns += string_values(table[f])
    marks = ", ".join(["?"] * len(columns))
    conn.executemany(f"INSERT INTO temp.crm_entity VALUES ({marks})", zip(*columns, strict=True))
    value = (
        f"CASE WHEN f.slot < {len(numeric)} THEN CASE WHEN "
        "substr(e.b, f.slot * 5 + 1, 1) = x'35' THEN substr(e.b, f.slot * 5 + 1, 5) "
        "ELSE x'' END"
    )
    text = "CASE"
    for j in range(len(categorical)):
        value += f" WHEN f.slot = {len(numeric) + j} THEN e.s{j}"
        text += f" WHEN f.slot = {len(numeric) + j} THEN e.t{j}"
    value += " END"
    text = text + " END" if categorical else "NULL"
    conn.execute(
        f"INSERT INTO main.{quote(name)} (entity_key, feature_name, value, value_text, "
        f"event_ts, created_ts) SELECT e.k, f.name, {value}, {text}, e.ts, "
        f"{int(now.timestamp())} FROM temp.crm_entity e CROSS JOIN temp.crm_feature f"
    )
    conn.execute("DROP TABLE temp.crm_entity")
    conn.execute("DROP TABLE temp.crm_feature")
    return n
