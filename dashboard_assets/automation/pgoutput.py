"""Decoding the messages of PostgreSQL's built-in logical replication output
plugin, pgoutput (protocol version 1, binary values), into the row versions
that change capture needs.

Message layouts are PostgreSQL's "Logical Replication Message Formats". Only
the columns asked for are kept, and kept as PostgreSQL sent them (its binary
format, e.g. 16 bytes for a uuid): they go back to PostgreSQL unconverted
(capture.py copies them in with binary COPY), so decoding a row is slicing
bytes. Every other column is skipped by its length.
"""

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")
_UINT32 = struct.Struct("!I")
_UINT64 = struct.Struct("!Q")
_COMMIT, _RELATION, _TRUNCATE = ord("C"), ord("R"), ord("T")
_ROW_KINDS = {ord("I"): "INSERT", ord("U"): "UPDATE", ord("D"): "DELETE"}
_OLD, _KEY = ord("O"), ord("K")
_NULL, _UNCHANGED_TOAST, _TEXT = ord("n"), ord("u"), ord("t")
_REPLICA_IDENTITY_FULL = ord("f")


class DecodingError(ValueError):
    """A message this decoder cannot use: capture is not set up as it needs."""


class RowChange(NamedTuple):
    """One changed row: its table, INSERT / UPDATE / DELETE, its old and new
    versions (None where the operation has none) as tuples of the asked-for
    columns' binary values (None for NULL), the commit's end position and
    time (binary timestamptz), and its place in the transaction."""

    table: str
    operation: str
    old: tuple | None
    new: tuple | None
    commit_lsn: int
    committed_at: bytes
    ordinal: int


@dataclass(frozen=True)
class Truncation:
    """TRUNCATE of these tables: every row of them changed."""

    tables: tuple[str, ...]


@dataclass(frozen=True)
class _Relation:
    name: str
    replica_identity: int
    slots: tuple[int, ...]  # per column: its place among the asked-for columns, or -1
    wanted: int  # how many columns were asked for
    last_wanted: int  # the last column asked for


def lsn_text(position: int) -> str:
    """A WAL position as PostgreSQL writes it (`16/B374D848`)."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def lsn_value(text: str) -> int:
    """The number of a WAL position written as `16/B374D848`; ValueError otherwise."""
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


class Decoder:
    """Turns one decoding session's messages into RowChange and Truncation
    values, keeping the columns `wanted[table]` of each captured table, in
    that order."""

    def __init__(self, wanted: dict[str, tuple[str, ...]]):
        self._wanted = wanted
        self._relations: dict[int, _Relation] = {}
        self._pending: list[tuple] = []
        self.last_commit_lsn = 0  # end position of the last whole transaction decoded

    def decode(self, messages: Iterable[bytes]) -> Iterator[RowChange | Truncation]:
        """The changes of each transaction, yielded when its commit is decoded.
        (Begin, Origin, Type and Message messages carry nothing needed here.)"""
        for message in messages:
            kind = message[0]
            if kind in _ROW_KINDS:
                self._row(message, kind)
            elif kind == _COMMIT:  # flags, commit LSN, end LSN, commit time
                self.last_commit_lsn = _UINT64.unpack_from(message, 10)[0]
                committed_at = message[18:26]
                for ordinal, (table, operation, old, new) in enumerate(self._pending):
                    yield RowChange(table, operation, old, new, self.last_commit_lsn, committed_at, ordinal)
                self._pending.clear()
            elif kind == _RELATION:
                self._relation(message)
            elif kind == _TRUNCATE:
                (count,) = _INT32.unpack_from(message, 1)
                relations = (_UINT32.unpack_from(message, 6 + 4 * i)[0] for i in range(count))
                yield Truncation(tuple(self._relations[oid].name for oid in relations))

    def _relation(self, message: bytes) -> None:
        (oid,) = _UINT32.unpack_from(message, 1)
        _namespace, position = _cstring(message, 5)
        name, position = _cstring(message, position)
        replica_identity = message[position]
        (count,) = _INT16.unpack_from(message, position + 1)
        position += 3
        wanted = self._wanted.get(name, ())
        slots = []
        for _ in range(count):
            column, position = _cstring(message, position + 1)  # after the flags byte
            position += 8  # type oid, type modifier
            slots.append(wanted.index(column) if column in wanted else -1)
        last = max((i for i, slot in enumerate(slots) if slot >= 0), default=-1)
        self._relations[oid] = _Relation(name, replica_identity, tuple(slots), len(wanted), last)

    def _row(self, message: bytes, kind: int) -> None:
        relation = self._relations[_UINT32.unpack_from(message, 1)[0]]
        if relation.replica_identity != _REPLICA_IDENTITY_FULL or message[5] == _KEY:
            raise DecodingError(f"{relation.name} is not REPLICA IDENTITY FULL: its changes lack their old rows")
        old = new = None
        position = 5
        operation = _ROW_KINDS[kind]
        if message[position] == _OLD:
            old, position = self._tuple(message, position + 1, relation, whole=operation == "UPDATE")
        if operation != "DELETE":
            new, _ = self._tuple(message, position + 1, relation, whole=False)  # after the N marker
        self._pending.append((relation.name, operation, old, new))

    @staticmethod
    def _tuple(message: bytes, position: int, relation: _Relation, whole: bool) -> tuple[tuple, int]:
        """The asked-for values of the tuple at `position`, and where it ends
        (where the last asked-for column ends, unless `whole`)."""
        (count,) = _INT16.unpack_from(message, position)
        position += 2
        slots = relation.slots
        last = count - 1 if whole else relation.last_wanted
        values = [None] * relation.wanted
        for index in range(last + 1):
            kind = message[position]
            position += 1
            if kind == _NULL or kind == _UNCHANGED_TOAST:  # captured columns are never TOASTed
                continue
            (length,) = _INT32.unpack_from(message, position)
            position += 4
            slot = slots[index]
            if slot >= 0:
                if kind == _TEXT:
                    raise DecodingError(f"{relation.name}: values arrive as text, decoding expects binary")
                values[slot] = message[position:position + length]
            position += length
        return tuple(values), position


def _cstring(message: bytes, position: int) -> tuple[str, int]:
    end = message.index(0, position)
    return message[position:end].decode(), end + 1
