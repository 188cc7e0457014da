"""Seat maps from files, so a venue of any size is created without writing code.

Accepted files (see ``load_seat_map``):

* CSV with a header naming ``seat_id``, ``section``, ``row``, ``number``;
* JSON, either a list of seat objects, ``{"name": ..., "seats": [...]}``, or
  the compact ``{"name": ..., "sections": [...]}`` that describes rows by
  their seat counts, which is how a 50,000-seat stadium stays a short file.

Whoever reads a ``SeatMapError`` is fixing a spreadsheet, not debugging
Python, so every message names the file, the place in it and what to change.
"""

from __future__ import annotations

import bisect
import csv
import functools
import io
import json
import pathlib
import re
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Set
from typing import Final, Literal

from . import strictjson
from .domain.ids import SEAT_ID_RULE
from .domain.model import SeatSpec
from .domain.policy import Limits

__all__ = [
    "DEFAULT_MAX_SEATS",
    "SeatMapError",
    "example_stadium",
    "load_seat_map",
    "parse_seat_map",
    "write_example_stadium",
]

DEFAULT_MAX_SEATS: Final = Limits().max_seats_per_event
# A 100,000-seat CSV is about 3 MB. The cap stops a wrong file (a dump, a
# video) from being read into memory whole before it is refused.
MAX_FILE_BYTES: Final = 64 * 1024 * 1024

SeatMapFormat = Literal["json", "csv"]
_FORMATS: Final[Mapping[str, SeatMapFormat]] = {".json": "json", ".csv": "csv"}
_COLUMNS: Final = ("seat_id", "section", "row", "number")
_SEAT_KEYS: Final = frozenset(_COLUMNS)
_DISALLOWED_IN_ID: Final = re.compile(r"[^A-Za-z0-9._:-]+")


_NO_ID: Final = "no seat_id, and no letter or digit in section, row or number to make one from"


class SeatMapError(ValueError):
    """A seat-map file that cannot be used; the message says where and why."""


def load_seat_map(
    path: pathlib.Path, *, max_seats: int = DEFAULT_MAX_SEATS
) -> tuple[str | None, list[SeatSpec]]:
    """The event name (None when the file has none) and the seats of a seat-map file.

    The format follows the extension, ``.json`` or ``.csv``. Seats keep the
    order of the file. A seat without a ``seat_id`` gets
    ``{section}-{row}-{number}`` (empty parts left out), with every run of
    characters a seat id may not contain replaced by ``_``.
    """
    text = _read_text(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        shown = repr(path.suffix) if path.suffix else "no extension"
        raise SeatMapError(
            f"{path}: unknown seat-map format ({shown}); "
            "give a .json or .csv file (see examples/ for both)"
        )
    return parse_seat_map(text, fmt, source=str(path), max_seats=max_seats)


def parse_seat_map(
    text: str,
    fmt: SeatMapFormat,
    *,
    source: str = "seat map",
    max_seats: int = DEFAULT_MAX_SEATS,
) -> tuple[str | None, list[SeatSpec]]:
    """Like ``load_seat_map`` for text already in memory; ``source`` names it in errors."""
    if fmt == "csv":
        return None, _parse_csv(text, source, max_seats)
    if fmt == "json":
        return _parse_json(text, source, max_seats)
    raise SeatMapError(f"{source}: unknown seat-map format {fmt!r}; use 'json' or 'csv'")


def example_stadium(
    *,
    name: str = "Example Stadium",
    sections: int = 20,
    rows: int = 50,
    seats_per_row: int = 50,
) -> dict[str, object]:
    """A compact seat map of equal sections numbered from 101 (the default has 50,000 seats)."""
    return {"name": name, "sections": _equal_sections(sections, rows, seats_per_row)}


def write_example_stadium(
    path: pathlib.Path,
    *,
    name: str = "Example Stadium",
    sections: int = 20,
    rows: int = 50,
    seats_per_row: int = 50,
) -> int:
    """Write ``example_stadium(...)`` to ``path`` as JSON and return its number of seats."""
    section_list = _equal_sections(sections, rows, seats_per_row)
    # One section per line keeps a big venue readable and its diffs small.
    lines = ",\n".join(f"    {json.dumps(section)}" for section in section_list)
    path.write_text(
        f'{{\n  "name": {json.dumps(name)},\n  "sections": [\n{lines}\n  ]\n}}\n', encoding="utf-8"
    )
    return sections * rows * seats_per_row


def _equal_sections(sections: int, rows: int, seats_per_row: int) -> list[dict[str, object]]:
    if min(sections, rows, seats_per_row) < 1:
        raise ValueError("sections, rows and seats_per_row must all be at least 1")
    return [
        {"section": str(101 + i), "rows": {"from": 1, "to": rows, "seats": seats_per_row}}
        for i in range(sections)
    ]


# --- reading ---------------------------------------------------------------


def _read_text(path: pathlib.Path) -> str:
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise SeatMapError(f"seat map file not found: {path}") from None
    except IsADirectoryError:
        raise SeatMapError(
            f"{path} is a directory; give the path of a .json or .csv seat-map file"
        ) from None
    except OSError as exc:
        raise SeatMapError(f"cannot read seat map {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise SeatMapError(
            f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB, "
            "far more than any seat map; is it the right file?"
        )
    try:
        # utf-8-sig: spreadsheet programs often start their CSV with a BOM.
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise SeatMapError(
            f"{path}, line {line}: not UTF-8 text; save the file as UTF-8 "
            '(in a spreadsheet program: "CSV UTF-8")'
        ) from None


# --- seat ids --------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _id_part(label: str) -> str:
    # Accents are taken off first so that "Tribüne" becomes "Tribune" rather
    # than "Trib_ne"; the underscores our own replacement put at either end
    # are dropped so a part like "(VIP)" can still start a seat id.
    decomposed = unicodedata.normalize("NFKD", label)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _DISALLOWED_IN_ID.sub("_", plain).strip("_")


def _derive_seat_id(section: str, row: str, number: str) -> str:
    return "-".join(part for part in map(_id_part, (section, row, number)) if part)


class _Seats:
    """Collects seats in file order; refuses bad ids, duplicates and too many."""

    def __init__(
        self,
        source: str,
        max_seats: int,
        describe: Callable[[int, SeatSpec], str],
        *,
        long_id_hint: str = "give this seat a seat_id",
    ) -> None:
        self.source = source
        self.max_seats = max_seats
        self.describe = describe
        self.long_id_hint = long_id_hint
        self.seats: list[SeatSpec] = []
        self._first_index: dict[str, int] = {}

    def make_room(self, count: int) -> None:
        # Checked before a compact row range is expanded, so a typo such as
        # "seats": 50000000 is refused without building the seats first.
        if len(self.seats) + count > self.max_seats:
            raise SeatMapError(
                f"{self.source}: more than {self.max_seats:,} seats, the most one event may "
                "have; split the venue into several events"
            )

    def add(self, seat: SeatSpec, *, derived: bool) -> None:
        index = len(self.seats)
        problem = SEAT_ID_RULE.problem(seat.seat_id)
        if problem is not None:
            where = self.describe(index, seat)
            if derived:
                raise SeatMapError(
                    f"{self.source}, {where}: the seat id {seat.seat_id!r} made from section, "
                    f"row and number {problem}; {self.long_id_hint}"
                )
            raise SeatMapError(f"{self.source}, {where}: seat_id {seat.seat_id!r} {problem}")
        first = self._first_index.setdefault(seat.seat_id, index)
        if first != index:
            raise SeatMapError(
                f"{self.source}: seat id {seat.seat_id!r} is used twice, at "
                f"{self.describe(first, self.seats[first])} and at {self.describe(index, seat)}; "
                "every seat needs its own id"
            )
        self.make_room(1)
        self.seats.append(seat)

    def result(self) -> list[SeatSpec]:
        if not self.seats:
            raise SeatMapError(f"{self.source}: no seats; an event needs at least one")
        return self.seats


# --- CSV -------------------------------------------------------------------


def _header_name(cell: str) -> str:
    # "Seat ID", "seat-id" and "seat_id" all name the same column.
    return re.sub(r"[\s-]+", "_", cell.strip().lower())


def _parse_csv(text: str, source: str, max_seats: int) -> list[SeatSpec]:
    lines: list[int] = []
    seats = _Seats(source, max_seats, lambda index, _seat: f"line {lines[index]}")
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    columns: dict[str, int] | None = None
    try:
        for fields in reader:
            if not any(cell.strip() for cell in fields):
                continue  # blank lines, and the ",,," spreadsheets write for empty rows
            if columns is None:
                columns = _csv_columns(fields, source, reader.line_num)
                continue
            if len(fields) != len(columns):
                raise SeatMapError(
                    f"{source}, line {reader.line_num}: {len(fields)} values, but the header "
                    f"has {len(columns)} columns ({', '.join(columns)})"
                )
            values = {name: fields[i].strip() for name, i in columns.items()}
            section = values.get("section", "")
            row = values.get("row", "")
            number = values.get("number", "")
            seat_id = values.get("seat_id", "")
            derived = not seat_id
            if derived:
                seat_id = _derive_seat_id(section, row, number)
                if not seat_id:
                    raise SeatMapError(f"{source}, line {reader.line_num}: {_NO_ID}")
            lines.append(reader.line_num)
            seats.add(SeatSpec(seat_id, section, row, number), derived=derived)
    except csv.Error as exc:
        raise SeatMapError(f"{source}, line {reader.line_num}: not valid CSV: {exc}") from None
    if columns is None:
        raise SeatMapError(
            f"{source}: empty; a seat-map CSV starts with a header line such as "
            f"{','.join(_COLUMNS)}"
        )
    return seats.result()


def _csv_columns(header: list[str], source: str, line: int) -> dict[str, int]:
    columns: dict[str, int] = {}
    for position, cell in enumerate(header, start=1):
        name = _header_name(cell)
        if name not in _SEAT_KEYS:
            shown = f"column {position} has no name" if not name else f"unknown column {cell!r}"
            raise SeatMapError(
                f"{source}, line {line}: {shown} in the header; the columns are "
                f"{', '.join(_COLUMNS)}"
            )
        if name in columns:
            raise SeatMapError(f"{source}, line {line}: column {name!r} appears twice")
        columns[name] = position - 1
    if "seat_id" not in columns:
        missing = [name for name in _COLUMNS[1:] if name not in columns]
        if missing:
            raise SeatMapError(
                f"{source}, line {line}: missing column(s) {', '.join(missing)}; without a "
                "seat_id column, section, row and number are needed to make seat ids"
            )
    return columns


# --- JSON ------------------------------------------------------------------


def _parse_json(text: str, source: str, max_seats: int) -> tuple[str | None, list[SeatSpec]]:
    try:
        data: object = strictjson.loads(text)  # a repeated "rows" would drop seats
    except json.JSONDecodeError as exc:
        raise SeatMapError(
            f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        ) from None
    except strictjson.RepeatedKey as exc:
        raise SeatMapError(f"{source}: {exc}") from None
    except RecursionError:
        raise SeatMapError(f"{source}: JSON nested too deeply to be a seat map") from None
    except ValueError:
        # Python refuses integer literals thousands of digits long; its own
        # message suggests a sys call, which helps no one editing a seat map.
        raise SeatMapError(f"{source}: not valid JSON: a number in it is far too long") from None
    if isinstance(data, list):
        return None, _json_seat_list(data, source, max_seats)
    if not isinstance(data, dict):
        raise SeatMapError(f"{source}: {_TOP_LEVEL_HELP}")
    _check_keys(data, {"name", "seats", "sections"}, "the top-level object", source)
    name = _optional_text(data.get("name"), "name", source)
    if ("seats" in data) == ("sections" in data):
        raise SeatMapError(f"{source}: {_TOP_LEVEL_HELP}")
    if "seats" in data:
        seat_list = data["seats"]
        if not isinstance(seat_list, list):
            raise SeatMapError(f'{source}: "seats" must be a list of seat objects')
        return name, _json_seat_list(seat_list, source, max_seats)
    return name, _json_sections(data["sections"], source, max_seats)


_TOP_LEVEL_HELP: Final = (
    'expected a list of seats, an object with "seats": [...], or an object with '
    '"sections": [...] (see examples/stadium-50k.json)'
)


def _json_seat_list(items: list[object], source: str, max_seats: int) -> list[SeatSpec]:
    seats = _Seats(source, max_seats, lambda index, _seat: f"seats[{index}]")
    for index, item in enumerate(items):
        where = f"seats[{index}]"
        if not isinstance(item, dict):
            raise SeatMapError(
                f"{source}, {where}: each seat must be an object such as "
                '{"section": "A", "row": "1", "number": "1"}'
            )
        _check_keys(item, _SEAT_KEYS, where, source)
        labels = {key: _label(item.get(key, ""), f"{where}.{key}", source) for key in _COLUMNS}
        seat_id, section, row, number = (labels[key] for key in _COLUMNS)
        derived = not seat_id
        if derived:
            seat_id = _derive_seat_id(section, row, number)
            if not seat_id:
                raise SeatMapError(f"{source}, {where}: {_NO_ID}")
        seats.add(SeatSpec(seat_id, section, row, number), derived=derived)
    return seats.result()


def _json_sections(value: object, source: str, max_seats: int) -> list[SeatSpec]:
    # Where each expanded row came from, so an error about one seat can point
    # at the entry of the file that produced it.
    row_starts: list[int] = []
    row_wheres: list[str] = []

    def describe(index: int, seat: SeatSpec) -> str:
        entry = row_wheres[bisect.bisect_right(row_starts, index) - 1]
        return f"{entry} (section {seat.section!r}, row {seat.row!r}, seat {seat.number})"

    seats = _Seats(source, max_seats, describe, long_id_hint="use shorter section and row labels")
    if not isinstance(value, list):
        raise SeatMapError(f'{source}: "sections" must be a list of section objects')
    for i, section_entry in enumerate(value):
        where = f"sections[{i}]"
        if not isinstance(section_entry, dict):
            raise SeatMapError(
                f"{source}, {where}: each section must be an object such as "
                '{"section": "A", "rows": [{"row": "1", "seats": 30}]}'
            )
        _check_keys(section_entry, {"section", "rows"}, where, source)
        section = _required_label(section_entry, "section", where, source)
        if "rows" not in section_entry:
            raise SeatMapError(f'{source}, {where}: "rows" is missing')
        for row_where, row, numbers in _json_rows(section_entry["rows"], f"{where}.rows", source):
            # Not len(): a range past sys.maxsize has none (OverflowError).
            seats.make_room(max(0, numbers.stop - numbers.start))
            row_starts.append(len(seats.seats))
            row_wheres.append(row_where)
            prefix = _derive_seat_id(section, row, "")
            for number in numbers:
                seat_id = f"{prefix}-{number}" if prefix else str(number)
                seats.add(SeatSpec(seat_id, section, row, str(number)), derived=True)
    return seats.result()


def _json_rows(value: object, where: str, source: str) -> Iterator[tuple[str, str, range]]:
    """Each row of a section as (where in the file, row label, seat numbers), one at a time.

    Lazily, so that the caller's seat limit stops a runaway range such as
    "to": 100000000 after a few thousand rows instead of after building them all.
    """
    if isinstance(value, dict):
        yield from _row_range(value, where, source)
        return
    if not isinstance(value, list):
        raise SeatMapError(
            f'{source}, {where}: "rows" must be a list of rows, or a range such as '
            '{"from": 1, "to": 40, "seats": 50}'
        )
    for j, entry in enumerate(value):
        entry_where = f"{where}[{j}]"
        if not isinstance(entry, dict):
            raise SeatMapError(
                f"{source}, {entry_where}: each row must be an object such as "
                '{"row": "1", "seats": 30} or {"row": "2", "from": 5, "to": 40}'
            )
        if "rows" in entry:
            _check_keys(entry, {"rows"}, entry_where, source)
            yield from _row_range(entry["rows"], f"{entry_where}.rows", source)
            continue
        _check_keys(entry, {"row", "seats", "from", "to"}, entry_where, source)
        row = _required_label(entry, "row", entry_where, source)
        yield entry_where, row, _seat_numbers(entry, entry_where, source)


def _row_range(value: object, where: str, source: str) -> Iterator[tuple[str, str, range]]:
    if not isinstance(value, dict):
        raise SeatMapError(
            f"{source}, {where}: a range of rows is an object such as "
            '{"from": 1, "to": 40, "seats": 50}'
        )
    _check_keys(value, {"from", "to", "seats"}, where, source)
    first, last = _bounds(value, where, source)
    per_row = _whole_number(value.get("seats"), f"{where}.seats", source, minimum=1)
    for row in range(first, last + 1):
        yield where, str(row), range(1, per_row + 1)


def _seat_numbers(entry: Mapping[str, object], where: str, source: str) -> range:
    has_count = "seats" in entry
    has_bounds = "from" in entry or "to" in entry
    if has_count == has_bounds:
        raise SeatMapError(
            f'{source}, {where}: give either "seats": N (seats 1 to N) or "from" and "to", '
            "not both and not neither"
        )
    if has_count:
        count = _whole_number(entry["seats"], f"{where}.seats", source, minimum=1)
        return range(1, count + 1)
    first, last = _bounds(entry, where, source)
    return range(first, last + 1)


def _bounds(entry: Mapping[str, object], where: str, source: str) -> tuple[int, int]:
    first = _whole_number(entry.get("from"), f"{where}.from", source, minimum=0)
    last = _whole_number(entry.get("to"), f"{where}.to", source, minimum=0)
    if last < first:
        raise SeatMapError(f'{source}, {where}: "to" ({last}) is smaller than "from" ({first})')
    return first, last


# --- JSON values -----------------------------------------------------------


def _check_keys(obj: Mapping[str, object], allowed: Set[str], where: str, source: str) -> None:
    for key in obj:
        if key not in allowed:
            allowed_here = ", ".join(sorted(allowed))
            raise SeatMapError(
                f"{source}, {where}: unknown key {key!r}; allowed here: {allowed_here}"
            )


def _shown(value: object) -> str:
    return json.dumps(value) if value is not None else "nothing"


def _whole_number(value: object, where: str, source: str, *, minimum: int) -> int:
    # bool is an int in Python, but `true` is not a count anyone means.
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        kind = "positive" if minimum == 1 else "non-negative"
        raise SeatMapError(f"{source}, {where}: must be a {kind} whole number (got {value})")
    if value is None:
        raise SeatMapError(f"{source}, {where}: missing; a whole number is needed here")
    hint = "; write it without quotes" if isinstance(value, str) and value.isdigit() else ""
    raise SeatMapError(f"{source}, {where}: must be a whole number (got {_shown(value)}{hint})")


def _label(value: object, where: str, source: str) -> str:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise SeatMapError(f"{source}, {where}: must be text or a whole number (got {_shown(value)})")


def _required_label(obj: Mapping[str, object], key: str, where: str, source: str) -> str:
    label = _label(obj.get(key, ""), f"{where}.{key}", source)
    if not label:
        raise SeatMapError(f"{source}, {where}: {key!r} is missing or empty")
    return label


def _optional_text(value: object, where: str, source: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SeatMapError(f"{source}, {where}: must be text (got {_shown(value)})")
    return value.strip() or None
