"""Decoding the messages of PostgreSQL's built-in logical replication output
plugin, pgoutput (protocol version 1, binary values), into the row versions
that change capture needs.

Message layouts are PostgreSQL's "Logical Replication Message Formats". Only
the columns asked for are converted (uuid, timestamptz, and anything else as
raw bytes); every other column is skipped by its length.
"""

import datetime as dt
import struct
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")
_UINT32 = struct.Struct("!I")
_INT64 = struct.Struct("!q")
_UINT64 = struct.Struct("!Q")
_POSTGRES_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_UUID_OID, _TIMESTAMPTZ_OID = 2950, 1184
_NULL, _UNCHANGED_TOAST, _TEXT = ord("n"), ord("u"), ord("t")
_REPLICA_IDENTITY_FULL = "f"


class DecodingError(ValueError):
    """A message this decoder cannot use: capture is not set up as it needs."""


@dataclass(frozen=True)
class RowChange:
    """One changed row: its table, INSERT / UPDATE / DELETE, the asked-for
    columns of its old and new versions (None where the operation has none),
    the commit's end position and time, and its place in the transaction."""

    table: str
    operation: str
    old: dict | None
    new: dict | None
    commit_lsn: int
    committed_at: dt.datetime
    ordinal: int


@dataclass(frozen=True)
class Truncation:
    """TRUNCATE of these tables: every row of them changed."""

    tables: tuple[str, ...]


@dataclass(frozen=True)
class _Relation:
    name: str
    replica_identity: str
    wanted: dict[int, tuple[str, int]]  # column position -> (name, type oid)


def _timestamptz(raw: bytes) -> dt.datetime | None:
    """Microseconds since 2000-01-01 UTC; None for ±infinity (no day)."""
    try:
        return _POSTGRES_EPOCH + dt.timedelta(microseconds=_INT64.unpack(raw)[0])
    except OverflowError:
        return None


_CONVERTERS = {_UUID_OID: lambda raw: uuid.UUID(bytes=bytes(raw)), _TIMESTAMPTZ_OID: _timestamptz}


def lsn_text(position: int) -> str:
    """A WAL position as PostgreSQL writes it (`16/B374D848`)."""
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


def lsn_value(text: str) -> int:
    """The number of a WAL position written as `16/B374D848`; ValueError otherwise."""
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


class Decoder:
    """Turns one decoding session's messages into RowChange and Truncation
    values, keeping the columns `wanted[table]` of each captured table."""

    def __init__(self, wanted: dict[str, tuple[str, ...]]):
        self._wanted = wanted
        self._relations: dict[int, _Relation] = {}
        self._committed_at = _POSTGRES_EPOCH
        self._ordinal = 0
        self._pending: list[RowChange] = []
        self.last_commit_lsn = 0  # end position of the last whole transaction decoded

    def decode(self, messages: Iterable[bytes]) -> Iterator[RowChange | Truncation]:
        """The changes of each transaction, yielded when its commit is decoded."""
        for message in messages:
            kind = message[0]
            if kind == ord("B"):  # final LSN, commit time, xid
                self._committed_at = _POSTGRES_EPOCH + dt.timedelta(microseconds=_INT64.unpack_from(message, 9)[0])
                self._ordinal = 0
            elif kind == ord("C"):  # flags, commit LSN, end LSN, commit time
                self.last_commit_lsn = _UINT64.unpack_from(message, 10)[0]
                for change in self._pending:
                    yield RowChange(change.table, change.operation, change.old, change.new,
                                    self.last_commit_lsn, change.committed_at, change.ordinal)
                self._pending.clear()
            elif kind == ord("R"):
                self._relation(message)
            elif kind in b"IUD":
                self._row(message)
            elif kind == ord("T"):
                (count,) = _INT32.unpack_from(message, 1)
                relations = (_UINT32.unpack_from(message, 6 + 4 * i)[0] for i in range(count))
                yield Truncation(tuple(self._relations[oid].name for oid in relations))
            # Origin, Type and Message messages carry nothing change capture uses.

    def _relation(self, message: bytes) -> None:
        (oid,) = _UINT32.unpack_from(message, 1)
        position = 5
        _namespace, position = _cstring(message, position)
        name, position = _cstring(message, position)
        replica_identity = chr(message[position])
        (count,) = _INT16.unpack_from(message, position + 1)
        position += 3
        wanted_names = self._wanted.get(name, ())
        wanted = {}
        for index in range(count):
            column, position = _cstring(message, position + 1)  # after the flags byte
            (type_oid,) = _UINT32.unpack_from(message, position)
            position += 8  # type oid, type modifier
            if column in wanted_names:
                wanted[index] = (column, type_oid)
        self._relations[oid] = _Relation(name, replica_identity, wanted)

    def _row(self, message: bytes) -> None:
        kind = chr(message[0])
        relation = self._relations[_UINT32.unpack_from(message, 1)[0]]
        old = new = None
        position = 5
        marker = chr(message[position])
        if marker == "K" or (kind == "D" and relation.replica_identity != _REPLICA_IDENTITY_FULL):
            raise DecodingError(f"{relation.name} is not REPLICA IDENTITY FULL: its old rows carry only their key")
        if marker == "O":
            old, position = self._tuple(message, position + 1, relation)
        if kind != "D":
            new, _ = self._tuple(message, position + 1, relation)  # after the N marker
        if kind == "U" and old is None:
            raise DecodingError(f"{relation.name} is not REPLICA IDENTITY FULL: its updates carry no old row")
        operation = {"I": "INSERT", "U": "UPDATE", "D": "DELETE"}[kind]
        self._pending.append(RowChange(relation.name, operation, old, new, 0, self._committed_at, self._ordinal))
        self._ordinal += 1

    @staticmethod
    def _tuple(message: bytes, position: int, relation: _Relation) -> tuple[dict, int]:
        (count,) = _INT16.unpack_from(message, position)
        position += 2
        wanted = relation.wanted
        values = dict.fromkeys(name for name, _ in wanted.values())
        for index in range(count):
            kind = message[position]
            position += 1
            if kind == _NULL or kind == _UNCHANGED_TOAST:  # captured columns are never TOASTed
                continue
            (length,) = _INT32.unpack_from(message, position)
            position += 4
            if index in wanted:
                if kind == _TEXT:
                    raise DecodingError(f"{relation.name}: values arrive as text, decoding expects binary")
                name, type_oid = wanted[index]
                raw = message[position:position + length]
                convert = _CONVERTERS.get(type_oid)
                values[name] = convert(raw) if convert else raw
            position += length
        return values, position


def _cstring(message: bytes, position: int) -> tuple[str, int]:
    end = message.index(0, position)
    return message[position:end].decode(), end + 1
