"""Enqueue's array parameters, packed in PostgreSQL's binary array format here.

psycopg's list dumpers find, build and upgrade a dumper for every list of every statement
(each statement has a fresh transformer): that was most of a one-job enqueue's Python.
These arrays go out as they are, under the type the statement casts them to, through the
dumpers ``register`` puts on the backend's own connections (an application's connection,
given to ``enqueue_in``, gets psycopg's lists instead)."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import pq
from psycopg.adapt import AdaptersMap, Dumper

_HEAD = struct.Struct("!iiIii")  # dimensions (1), has NULLs, element type, length, lower bound
_LEN = struct.Struct("!i")
_INT4 = struct.Struct("!ii")  # an element's length (4) and value
_FLOAT8 = struct.Struct("!id")  # an element's length (8) and value
_NULL = b"\xff\xff\xff\xff"  # length -1
_TEXT, _BYTEA, _INT4_OID, _FLOAT8_OID = 25, 17, 23, 701


class _Packed(bytes):
    """An array in binary form; the subclass names its type."""


class TextArray(_Packed):
    pass


class ByteaArray(_Packed):
    pass


class Int4Array(_Packed):
    pass


class Float8Array(_Packed):
    pass


class _PackedDumper(Dumper):
    format = pq.Format.BINARY

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


_ARRAY_OIDS = {TextArray: 1009, ByteaArray: 1001, Int4Array: 1007, Float8Array: 1022}


def register(adapters: AdaptersMap) -> None:
    """Send the packed arrays of this module as they are, on a connection of ours."""
    for cls, oid in _ARRAY_OIDS.items():
        adapters.register_dumper(cls, type(f"{cls.__name__}Dumper", (_PackedDumper,), {"oid": oid}))


def _text(value: str) -> bytes:
    raw = value.encode()
    if b"\x00" in raw:  # as psycopg's own text dumper refuses it (see _nul_refused)
        raise psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
    return _LEN.pack(len(raw)) + raw


P = TypeVar("P", bound=_Packed)


def _array(cls: type[P], oid: int, values: list[Any], one: Callable[[Any], bytes]) -> P:
    """``values`` packed by ``one`` each (None as NULL)."""
    first = values[0] if values else None
    if values.count(first) == len(values):
        # A bulk call's column mostly holds one value (its task, queue, options): pack once.
        nulls = first is None and bool(values)
        body = (_NULL if first is None else one(first)) * len(values)
    else:
        nulls = None in values
        body = b"".join([_NULL if v is None else one(v) for v in values])
    return cls(_HEAD.pack(1, nulls, oid, len(values), 1) + body)


def _texts(values: list[str | None]) -> TextArray:
    return _array(TextArray, _TEXT, values, _text)


def texts(values: Sequence[str | None]) -> TextArray:
    """A text array for the backend's own connections."""
    return _texts(list(values))


def _float8(value: float) -> bytes:
    return _FLOAT8.pack(8, value)


def _floats(values: list[float | None]) -> Float8Array:
    return _array(Float8Array, _FLOAT8_OID, values, _float8)


def _int4(value: int) -> bytes:
    return _INT4.pack(4, value)


def _ints(values: list[int]) -> Int4Array:
    return _array(Int4Array, _INT4_OID, values, _int4)


def _bytea(value: bytes) -> bytes:
    return _LEN.pack(len(value)) + value


def _byteas(values: list[bytes]) -> ByteaArray:
    return _array(ByteaArray, _BYTEA, values, _bytea)


# How each of the enqueue statement's arrays (rows.enqueue_params, in its order) is packed.
_KINDS: tuple[Callable[[list[Any]], _Packed], ...] = (
    _texts, _texts, _texts, _byteas, _ints, _ints, _floats, _floats, _texts, _floats,
    _floats, _floats, _ints, _ints,
)  # fmt: skip


def packed(params: Sequence[list[Any]]) -> tuple[_Packed, ...]:
    """``rows.enqueue_params`` as arrays for the backend's own connections."""
    return tuple(pack(values) for pack, values in zip(_KINDS, params, strict=True))
