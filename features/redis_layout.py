"""Feast's Redis online layout, encoded in bulk: field names, and ``HSET`` commands on the wire.

Feast's Redis store keeps one hash per entity (key: the serialised entity key followed by the
project name) with, per feature view, a field per feature (the murmur3 hash of
``"<view>:<feature>"``; the value a serialised ``ValueProto``, empty for a null) and a
``_ts:<view>`` field (a serialised protobuf ``Timestamp``). Building that per value in Python and
packing each command's arguments one by one is what limits a client to a few thousand entities
per second. Here a view's numeric values are laid out column-wise in numpy directly as Redis's
wire protocol (RESP, the arrays of bulk strings every Redis client sends), categorical values and
timestamps are encoded once per distinct value, and each entity's ``HSET`` is one join of a few
byte strings (:func:`view_segments`, :func:`hset_command`).
:meth:`features.redis_store.CrmRedisOnlineStore.write_generation` is the caller.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import mmh3
import numpy as np
import pyarrow as pa
from feast import FeatureView
from google.protobuf.timestamp_pb2 import Timestamp

from features.online_layout import bulk_layout, float32_slots, string_values

ROWS_PER_BLOCK = 10_000  # rows encoded at a time (bounds the numpy block's memory)


def field_name(view_name: str, feature: str) -> bytes:
    """The hash field of a feature, as Feast's Redis store names it: the unsigned murmur3 hash
    of ``"<view>:<feature>"``, 4 bytes little-endian."""
    return struct.pack("<I", mmh3.hash(f"{view_name}:{feature}", signed=False))


def timestamp_field(view_name: str) -> bytes:
    """The hash field holding a view's event timestamp (a serialised protobuf ``Timestamp``)."""
    return f"_ts:{view_name}".encode()


def bulk_string(value: bytes) -> bytes:
    """One RESP bulk string: ``$<length>\\r\\n<bytes>\\r\\n``."""
    return b"$%d\r\n%s\r\n" % (len(value), value)


def command(*args: bytes) -> bytes:
    """One command in RESP: an array of bulk strings."""
    return b"*%d\r\n" % len(args) + b"".join(bulk_string(a) for a in args)


def hset_command(key: bytes, fields: int, segments: Sequence[bytes]) -> bytes:
    """``HSET key …`` of ``fields`` field/value pairs already encoded as ``segments``."""
    return b"*%d\r\n$4\r\nHSET\r\n%s" % (2 + 2 * fields, bulk_string(key)) + b"".join(segments)


def view_segments(view_name: str, view: FeatureView, table: pa.Table) -> tuple[int, list[bytes]]:
    """Per row of ``table``: the view's field/value pairs, encoded as RESP bulk strings.

    Every feature field is written, a null as an empty value (what Feast's store writes for an
    empty ``ValueProto``), then the ``_ts:<view>`` field.

    Returns:
        the number of fields per row, and each row's encoded pairs.
    """
    _, numeric, categorical = bulk_layout(view)
    out: list[bytes] = []
    for start in range(0, table.num_rows, ROWS_PER_BLOCK):
        block = table.slice(start, ROWS_PER_BLOCK)
        numbers = _numeric_segments(view_name, numeric, block)
        words = [_categorical_segments(view_name, f, block[f]) for f in categorical]
        stamps = _timestamp_segments(view_name, block["event_timestamp"])
        out += [b"".join(parts) for parts in zip(numbers, *words, stamps, strict=True)]
    return len(numeric) + len(categorical) + 1, out


def _numeric_segments(view_name: str, numeric: Sequence[str], table: pa.Table) -> list[bytes]:
    """Per row, the ``Float32`` fields and values as RESP, laid out in one numpy block.

    A present value is ``$4 name $5 <ValueProto: tag 0x35 + float32>``, 21 bytes with the
    separators; a null ``$4 name $0 ""``, 16 bytes: a mask drops the last 5 bytes of each null's
    slot, and the rows are cut from the compacted block by their lengths.
    """
    n, m = table.num_rows, len(numeric)
    if m == 0:
        return [b""] * n
    values = np.column_stack([table[f].to_numpy().astype(np.float32) for f in numeric])
    missing = np.isnan(values)
    names = np.frombuffer(b"".join(field_name(view_name, f) for f in numeric), np.uint8)
    slots = np.empty((n, m, 21), dtype=np.uint8)
    slots[:, :, 0:4] = np.frombuffer(b"$4\r\n", np.uint8)
    slots[:, :, 4:8] = names.reshape(m, 4)
    slots[:, :, 8:14] = np.frombuffer(b"\r\n$5\r\n", np.uint8)
    slots[:, :, 14:19] = float32_slots(values).reshape(n, m, 5)
    slots[:, :, 19:21] = np.frombuffer(b"\r\n", np.uint8)
    slots[missing, 10:16] = np.frombuffer(b"$0\r\n\r\n", np.uint8)
    keep = np.ones((n, m, 21), dtype=bool)
    keep[missing, 16:] = False
    packed = slots[keep].tobytes()
    ends = np.cumsum(m * 21 - 5 * missing.sum(axis=1)).tolist()
    starts = [0, *ends[:-1]]
    return [packed[a:b] for a, b in zip(starts, ends, strict=True)]


def _categorical_segments(view_name: str, feature: str, values: pa.ChunkedArray) -> list[bytes]:
    """Per row, one ``String`` field and value as RESP (each distinct value encoded once)."""
    name = bulk_string(field_name(view_name, feature))
    encoded: dict[bytes, bytes] = {}
    out = []
    for proto in string_values(values)[0]:
        segment = encoded.get(proto)
        if segment is None:
            segment = encoded[proto] = name + bulk_string(proto)
        out.append(segment)
    return out


def _timestamp_segments(view_name: str, stamps: pa.ChunkedArray) -> list[bytes]:
    """Per row, the ``_ts:<view>`` field and its serialised ``Timestamp`` as RESP (each
    distinct time encoded once: a table holds a few snapshot times)."""
    name = bulk_string(timestamp_field(view_name))
    encoded: dict[int, bytes] = {}
    out = []
    for ns in stamps.cast(pa.int64()).to_numpy().tolist():
        segment = encoded.get(ns)
        if segment is None:
            stamp = Timestamp()
            stamp.FromNanoseconds(ns)
            segment = encoded[ns] = name + bulk_string(stamp.SerializeToString())
        out.append(segment)
    return out
