"""A sweep's store: one SQLite file (the standard library's ``sqlite3``, WAL) holding one row per
cell, written as the cell ends, so an interrupted or crashed sweep keeps every finished cell and a
rerun of the same sweep computes nothing.

A cell's key is the SHA-256 of its spec, analysis, options and library versions (torch,
torchvision, timm), so cells computed under other options or other versions are other cells.
Results are stored as JSON (:func:`archprobe.results.plain`) with their type's name and read back
as the same frozen dataclasses (:func:`revive`), so any SQLite client can read the store too.
Expansions of library globs are kept per library version, so a resumed sweep of ``'tv:*'``
needs not import torchvision to know its names.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import time
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Iterator

from archprobe import results as result_types
from archprobe.errors import UsageError
from archprobe.results import SweepCell, plain

STORE_FILE = "atlas.sqlite"
SCHEMA = 1
LIBRARIES = ("torch", "torchvision", "timm")

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    analysis TEXT NOT NULL,
    options TEXT NOT NULL,
    versions TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT,
    seconds REAL NOT NULL,
    result_type TEXT,
    result TEXT,
    finished_at REAL NOT NULL,
    host TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS names (library TEXT NOT NULL, version TEXT NOT NULL, names TEXT NOT NULL,
                                  PRIMARY KEY (library, version));
"""


def library_versions() -> dict[str, str]:
    """The installed torch, torchvision and timm versions, read from their metadata (nothing is
    imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "-"
    return found


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def cell_key(spec: str, analysis: str, options: dict, versions: dict) -> str:
    text = canonical_json({"spec": spec, "analysis": analysis, "options": options, "versions": versions})
    return hashlib.sha256(text.encode()).hexdigest()


def store_path(directory: "str | os.PathLike") -> Path:
    return Path(directory) / STORE_FILE


class Store:
    """The cells of a sweep in ``DIRECTORY/atlas.sqlite`` (made when ``create``)."""

    def __init__(self, directory: "str | os.PathLike", *, create: bool = True):
        self.path = store_path(directory)
        if not create and not self.path.is_file():
            raise UsageError(f"{directory} holds no sweep store ({STORE_FILE})", param="from")
        if create:
            if Path(directory).exists() and not Path(directory).is_dir():
                raise UsageError(f"{directory} is not a directory", param="output")
            Path(directory).mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")  # a commit survives a crash of this process
            self.db.executescript(_TABLES)
            found = self.db.execute("SELECT value FROM meta WHERE name='schema'").fetchone()
            if found is None:
                self.db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
            elif found[0] != str(SCHEMA):
                raise UsageError(f"{self.path} is a store of another archprobe version (schema {found[0]})")
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{self.path} is not a sweep store: {exc}") from exc

    # --- cells ----------------------------------------------------------------------------------

    def done_keys(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """The stored cells' keys (of ``keys``, when given) and their statuses."""
        rows = self.db.execute("SELECT key, status FROM cells").fetchall()
        found = dict(rows)
        return found if keys is None else {k: found[k] for k in keys if k in found}

    def put(self, cell: SweepCell, host: str = "") -> None:
        """Write ``cell`` now (one transaction: on disk when this returns)."""
        self.db.execute(
            "INSERT OR REPLACE INTO cells VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (cell.key, cell.model, cell.analysis, canonical_json(dict(cell.options)), canonical_json(dict(cell.versions)),
             cell.status, cell.error, cell.seconds,
             type(cell.result).__name__ if cell.result is not None else None,
             json.dumps(plain(cell.result)) if cell.result is not None else None, cell.finished_at, host))

    def cells(self) -> Iterator[SweepCell]:
        """Every stored cell, in the order they were finished."""
        for row in self.db.execute("SELECT key, spec, analysis, options, versions, status, error, seconds, "
                                   "result_type, result, finished_at FROM cells ORDER BY finished_at, key"):
            key, spec, analysis, options, versions, status, error, seconds, kind, result, finished = row
            yield SweepCell(key=key, model=spec, analysis=analysis, options=_pairs(json.loads(options)),
                            versions=_pairs(json.loads(versions)), status=status, error=error, seconds=seconds,
                            result=revive_named(kind, json.loads(result)) if result is not None else None,
                            finished_at=finished)

    def merge(self, other: "str | os.PathLike") -> int:
        """Copy the cells of the store in directory ``other`` that this one lacks (or holds with
        a failure where ``other`` has a result); the number copied."""
        source = store_path(other)
        if not source.is_file():
            raise UsageError(f"{other} holds no sweep store ({STORE_FILE})", param="merge")
        if source.resolve() == self.path.resolve():
            return 0
        before = self.db.total_changes
        self.db.execute("ATTACH DATABASE ? AS other", (str(source),))
        try:
            self.db.execute("BEGIN")
            self.db.execute("INSERT OR IGNORE INTO cells SELECT * FROM other.cells")
            self.db.execute("INSERT OR REPLACE INTO cells SELECT o.* FROM other.cells o JOIN cells c ON c.key = o.key "
                            "WHERE c.status != 'ok' AND o.status = 'ok'")
            self.db.execute("INSERT OR IGNORE INTO names SELECT * FROM other.names")
            self.db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self.db.execute("ROLLBACK") if self.db.in_transaction else None
            raise UsageError(f"{source} is not a sweep store: {exc}", param="merge") from exc
        finally:
            self.db.execute("DETACH DATABASE other")
        return self.db.total_changes - before

    # --- library names --------------------------------------------------------------------------

    def has_names(self, library: str, version: str) -> bool:
        return self.db.execute("SELECT 1 FROM names WHERE library=? AND version=?", (library, version)).fetchone() \
            is not None

    def library_names(self, library: str, version: str, compute) -> list[str]:
        """The names ``compute()`` lists for ``library`` at ``version``, computed once and kept."""
        found = self.db.execute("SELECT names FROM names WHERE library=? AND version=?", (library, version)).fetchone()
        if found is not None:
            return json.loads(found[0])
        names = list(compute())
        self.db.execute("INSERT OR REPLACE INTO names VALUES (?,?,?)", (library, version, json.dumps(names)))
        return names

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def now() -> float:
    return time.time()


def _pairs(mapping: dict) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in mapping.items()))


# --- results back from JSON ----------------------------------------------------------------------

def revive_named(type_name: str | None, data: Any) -> Any:
    """``data`` (a :func:`plain` record) as the result type ``type_name`` of :mod:`archprobe.results`."""
    cls = getattr(result_types, type_name or "", None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        return data
    return revive(cls, data)


def revive(hint: Any, data: Any) -> Any:
    """``data`` made back into the type ``hint`` names: dataclasses from dicts (their fields'
    hints followed), tuples from lists; a non-finite float stored as ``None`` stays ``None``."""
    if data is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        for option in options:
            if dataclasses.is_dataclass(option) and isinstance(data, dict):
                return revive(option, data)
        for option in options:
            if (option is tuple or typing.get_origin(option) is tuple) and isinstance(data, list):
                return revive(option, data)
        return _tuples(data)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if hint is result_types.Note:
            values = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k != "code")
            return result_types.Note(data["code"], values)
        hints = _hints(hint)
        fields = {f.name for f in dataclasses.fields(hint) if f.init}
        return hint(**{k: revive(hints.get(k), v) for k, v in data.items() if k in fields})
    if origin is tuple and isinstance(data, list):
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(revive(args[0], v) for v in data)
        if args and len(args) == len(data):
            return tuple(revive(a, v) for a, v in zip(args, data))
        return _tuples(data)
    return _tuples(data)


def _tuples(data: Any) -> Any:
    """Lists back as the tuples every result holds, nested ones too."""
    return tuple(_tuples(v) for v in data) if isinstance(data, list) else data


_HINTS: dict[type, dict] = {}


def _hints(cls: type) -> dict:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, vars(result_types))
    return _HINTS[cls]
