"""Seat-map files: the formats a venue comes in, and what a person sees when one is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seat_inventory.domain.ids import SEAT_ID_RULE
from seat_inventory.domain.model import SeatSpec
from seat_inventory.seatmap import (
    SeatMapError,
    example_stadium,
    load_seat_map,
    parse_seat_map,
    write_example_stadium,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def error_of(path: Path, **kwargs: int) -> str:
    with pytest.raises(SeatMapError) as excinfo:
        load_seat_map(path, **kwargs)
    return str(excinfo.value)


# --- formats ----------------------------------------------------------------


def test_csv_with_seat_ids_keeps_ids_and_file_order(tmp_path: Path) -> None:
    """A CSV with a seat_id column gives those ids, in the order of the file, and no name."""
    path = write(tmp_path, "hall.csv", "seat_id,section,row,number\nB2,B,2,2\nA1,A,1,1\n")
    assert load_seat_map(path) == (
        None,
        [SeatSpec("B2", "B", "2", "2"), SeatSpec("A1", "A", "1", "1")],
    )


def test_csv_derives_missing_seat_ids_from_section_row_and_number(tmp_path: Path) -> None:
    """An empty or absent seat_id becomes section-row-number, leaving empty parts out."""
    with_column = write(
        tmp_path, "a.csv", "seat_id,section,row,number\n,A,1,5\n,Box,,2\nX9,A,1,6\n"
    )
    without_column = write(tmp_path, "b.csv", "section,row,number\nA,1,5\n")
    assert [s.seat_id for s in load_seat_map(with_column)[1]] == ["A-1-5", "Box-2", "X9"]
    assert load_seat_map(without_column)[1] == [SeatSpec("A-1-5", "A", "1", "5")]


def test_csv_tolerates_what_spreadsheets_write(tmp_path: Path) -> None:
    """A BOM, CRLF line ends, headers in another case, padded cells and empty rows are accepted."""
    content = "\ufeffSeat ID , Section,ROW,Number\r\n,A, 1 ,1\r\n,,,\r\n\r\n,A,1,2\r\n"
    path = write(tmp_path, "export.csv", content)
    assert [s.seat_id for s in load_seat_map(path)[1]] == ["A-1-1", "A-1-2"]


def test_json_list_of_seat_objects(tmp_path: Path) -> None:
    """A JSON list of seat objects loads with derived ids where seat_id is missing."""
    seats = [{"seat_id": "VIP-1", "section": "VIP"}, {"section": "A", "row": 1, "number": 7}]
    path = write(tmp_path, "seats.json", json.dumps(seats))
    assert load_seat_map(path) == (
        None,
        [SeatSpec("VIP-1", "VIP", "", ""), SeatSpec("A-1-7", "A", "1", "7")],
    )


def test_json_object_with_name_and_seats(tmp_path: Path) -> None:
    """{"name": ..., "seats": [...]} gives the event name along with the seats."""
    data = {"name": " Jazz Night ", "seats": [{"seat_id": "T1-1"}, {"seat_id": "T1-2"}]}
    path = write(tmp_path, "jazz.json", json.dumps(data))
    assert load_seat_map(path) == ("Jazz Night", [SeatSpec("T1-1"), SeatSpec("T1-2")])


def test_json_compact_sections_expand_row_counts_and_ranges(tmp_path: Path) -> None:
    """Compact rows expand: "seats": N is seats 1..N and "from"/"to" an explicit span."""
    data = {
        "name": "Club",
        "sections": [
            {"section": "A", "rows": [{"row": "1", "seats": 2}, {"row": 2, "from": 5, "to": 6}]}
        ],
    }
    path = write(tmp_path, "club.json", json.dumps(data))
    assert load_seat_map(path) == (
        "Club",
        [
            SeatSpec("A-1-1", "A", "1", "1"),
            SeatSpec("A-1-2", "A", "1", "2"),
            SeatSpec("A-2-5", "A", "2", "5"),
            SeatSpec("A-2-6", "A", "2", "6"),
        ],
    )


def test_json_compact_row_ranges_stand_for_many_equal_rows(tmp_path: Path) -> None:
    """A "rows" range, as the whole section or as one entry of its list, makes equal rows."""
    data = {
        "sections": [
            {"section": "N", "rows": {"from": 1, "to": 2, "seats": 3}},
            {
                "section": "S",
                "rows": [{"row": "AA", "seats": 1}, {"rows": {"from": 7, "to": 8, "seats": 2}}],
            },
        ]
    }
    name, seats = load_seat_map(write(tmp_path, "arena.json", json.dumps(data)))
    assert name is None
    assert [s.seat_id for s in seats] == [
        "N-1-1", "N-1-2", "N-1-3", "N-2-1", "N-2-2", "N-2-3",
        "S-AA-1", "S-7-1", "S-7-2", "S-8-1", "S-8-2",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("section", "row", "expected"),
    [
        ("Upper Circle", "A", "Upper_Circle-A-1"),
        ("Tribüne Nord", "3", "Tribune_Nord-3-1"),
        ("(VIP) / Box", "1", "VIP_Box-1-1"),
        ("East, Lower", "R 12", "East_Lower-R_12-1"),
    ],
)
def test_derived_ids_replace_characters_a_seat_id_may_not_contain(
    section: str, row: str, expected: str
) -> None:
    """Spaces, accents and punctuation become valid seat ids; the labels stay as written."""
    text = f'section,row,number\n"{section}",{row},1\n'
    (seat,) = parse_seat_map(text, "csv")[1]
    assert seat == SeatSpec(expected, section, row, "1")
    assert SEAT_ID_RULE.problem(seat.seat_id) is None


def test_example_stadium_file_is_fifty_thousand_unique_seats() -> None:
    """examples/stadium-50k.json loads to exactly 50,000 seats, every id distinct and valid."""
    name, seats = load_seat_map(EXAMPLES / "stadium-50k.json")
    assert name == "Example Stadium"
    assert len(seats) == 50_000
    assert len({seat.seat_id for seat in seats}) == 50_000
    assert all(SEAT_ID_RULE.problem(seat.seat_id) is None for seat in seats)
    assert (seats[0].seat_id, seats[-1].seat_id) == ("101-1-1", "120-50-50")


def test_example_stadium_file_is_what_the_helper_writes(tmp_path: Path) -> None:
    """The committed 50k example is exactly what write_example_stadium produces by default."""
    path = tmp_path / "stadium.json"
    assert write_example_stadium(path) == 50_000
    assert path.read_text() == (EXAMPLES / "stadium-50k.json").read_text()
    assert json.loads(path.read_text()) == example_stadium()


def test_write_example_stadium_takes_other_sizes(tmp_path: Path) -> None:
    """A smaller stadium written by the helper loads back to the seat count it reported."""
    path = tmp_path / "tiny.json"
    count = write_example_stadium(path, name="Tiny", sections=2, rows=3, seats_per_row=4)
    name, seats = load_seat_map(path)
    assert (name, len(seats), count) == ("Tiny", 24, 24)


def test_small_venue_example_csv_loads() -> None:
    """examples/small-venue.csv loads to 30 seats, derived and explicit ids alike."""
    name, seats = load_seat_map(EXAMPLES / "small-venue.csv")
    assert name is None
    assert len(seats) == 30
    assert seats[0] == SeatSpec("Stalls-A-1", "Stalls", "A", "1")
    assert SeatSpec("Upper_Circle-A-4", "Upper Circle", "A", "4") in seats
    assert seats[-1] == SeatSpec("BOX-2", "Royal Box", "", "2")


# --- what a person sees when a file is wrong --------------------------------


def _compact(*rows: object) -> str:
    return json.dumps({"sections": [{"section": "A", "rows": list(rows)}]})


BAD_FILES = [
    (
        "unknown-extension",
        "seats.txt",
        "A1\n",
        "{path}: unknown seat-map format ('.txt'); give a .json or .csv file "
        "(see examples/ for both)",
    ),
    (
        "malformed-json",
        "bad.json",
        '{"name": "x"\n  "seats": []}',
        "{path}: not valid JSON at line 2, column 3: Expecting ',' delimiter",
    ),
    (
        "malformed-csv",
        "bad.csv",
        'seat_id,section,row,number\nA1,A,1,1\n"A2,A,1,2\n',
        "{path}, line 3: not valid CSV: unexpected end of data",
    ),
    (
        "not-utf8",
        "latin1.csv",
        "section,row,number\nTribüne,1,1\n".encode("latin-1"),
        "{path}, line 2: not UTF-8 text; save the file as UTF-8 "
        '(in a spreadsheet program: "CSV UTF-8")',
    ),
    (
        "empty-csv",
        "empty.csv",
        "",
        "{path}: empty; a seat-map CSV starts with a header line such as "
        "seat_id,section,row,number",
    ),
    (
        "no-seats",
        "empty.json",
        '{"name": "Nothing", "seats": []}',
        "{path}: no seats; an event needs at least one",
    ),
    (
        "missing-columns",
        "cols.csv",
        "section,row\nA,1\n",
        "{path}, line 1: missing column(s) number; without a seat_id column, section, row "
        "and number are needed to make seat ids",
    ),
    (
        "unknown-column",
        "typo.csv",
        "seat_id,sectoin,row,number\nA1,A,1,1\n",
        "{path}, line 1: unknown column 'sectoin' in the header; the columns are "
        "seat_id, section, row, number",
    ),
    (
        "short-line",
        "short.csv",
        "section,row,number\nA,1,1\nA,1\n",
        "{path}, line 3: 2 values, but the header has 3 columns (section, row, number)",
    ),
    (
        "nothing-to-derive-an-id-from",
        "blank.csv",
        "seat_id,section,row,number\nA1,A,1,1\n,(),,\n",
        "{path}, line 3: no seat_id, and no letter or digit in section, row or number "
        "to make one from",
    ),
    (
        "invalid-seat-id",
        "space.csv",
        "seat_id,section\nA 1,A\n",
        "{path}, line 2: seat_id 'A 1' must use only letters, digits and . _ : - "
        "(starting with a letter or digit)",
    ),
    (
        "derived-id-too-long",
        "long.csv",
        "section,row,number\n" + "S" * 70 + ",1,1\n",
        "{path}, line 2: the seat id '" + "S" * 70 + "-1-1' made from section, row and number "
        "must be at most 64 characters (got 74); give this seat a seat_id",
    ),
    (
        "zero-seats-in-a-row",
        "zero.json",
        _compact({"row": "1", "seats": 0}),
        "{path}, sections[0].rows[0].seats: must be a positive whole number (got 0)",
    ),
    (
        "negative-from",
        "negative.json",
        _compact({"row": "1", "from": -3, "to": 5}),
        "{path}, sections[0].rows[0].from: must be a non-negative whole number (got -3)",
    ),
    (
        "count-written-as-text",
        "quoted.json",
        _compact({"row": "1", "seats": "30"}),
        '{path}, sections[0].rows[0].seats: must be a whole number (got "30"; '
        "write it without quotes)",
    ),
    (
        "fractional-number",
        "fraction.json",
        json.dumps({"sections": [{"section": "A", "rows": {"from": 1, "to": 2.5, "seats": 3}}]}),
        "{path}, sections[0].rows.to: must be a whole number (got 2.5)",
    ),
    (
        "fractional-seat-number",
        "seat.json",
        '{"seats": [{"section": "A", "row": "1", "number": 1.5}]}',
        "{path}, seats[0].number: must be text or a whole number (got 1.5)",
    ),
    (
        "to-before-from",
        "backwards.json",
        _compact({"row": "1", "from": 9, "to": 3}),
        '{path}, sections[0].rows[0]: "to" (3) is smaller than "from" (9)',
    ),
    (
        "seats-and-range-together",
        "both.json",
        _compact({"row": "1", "seats": 30, "from": 1, "to": 3}),
        '{path}, sections[0].rows[0]: give either "seats": N (seats 1 to N) or "from" and '
        '"to", not both and not neither',
    ),
    (
        "misspelt-key",
        "key.json",
        _compact({"row": "1", "seat": 30}),
        "{path}, sections[0].rows[0]: unknown key 'seat'; allowed here: from, row, seats, to",
    ),
    (
        "range-without-seat-count",
        "range.json",
        json.dumps({"sections": [{"section": "A", "rows": {"from": 1, "to": 2}}]}),
        "{path}, sections[0].rows.seats: missing; a whole number is needed here",
    ),
    (
        "repeated-key",
        "twice.json",
        '{"sections": [{"section": "A", "rows": [], "rows": []}]}',
        "{path}: the key 'rows' appears twice in one object",
    ),
    (
        "wrong-top-level",
        "string.json",
        '"hello"',
        '{path}: expected a list of seats, an object with "seats": [...], or an object with '
        '"sections": [...] (see examples/stadium-50k.json)',
    ),
    (
        "duplicate-seat-in-csv",
        "dup.csv",
        "section,row,number\nA,1,1\nA,1,2\nA,1,1\nA,1,2\n",
        "{path}: seat id 'A-1-1' is used twice, at line 2 and at line 4; "
        "every seat needs its own id",
    ),
    (
        "duplicate-seat-in-json-list",
        "dup.json",
        '[{"seat_id": "X"}, {"seat_id": "Y"}, {"seat_id": "X"}]',
        "{path}: seat id 'X' is used twice, at seats[0] and at seats[2]; "
        "every seat needs its own id",
    ),
    (
        "duplicate-seat-in-compact-rows",
        "overlap.json",
        _compact({"row": "1", "seats": 3}, {"row": "1", "from": 3, "to": 4}),
        "{path}: seat id 'A-1-3' is used twice, at sections[0].rows[0] (section 'A', row '1', "
        "seat 3) and at sections[0].rows[1] (section 'A', row '1', seat 3); "
        "every seat needs its own id",
    ),
    (
        "too-many-seats",
        "huge.json",
        json.dumps({"sections": [{"section": "A", "rows": {"from": 1, "to": 10**9, "seats": 50}}]}),
        "{path}: more than 100,000 seats, the most one event may have; "
        "split the venue into several events",
    ),
    (
        # Past sys.maxsize a range has no len(): refused all the same.
        "row-of-more-seats-than-a-machine-word",
        "typo.json",
        _compact({"row": "1", "seats": 10**19}),
        "{path}: more than 100,000 seats, the most one event may have; "
        "split the venue into several events",
    ),
    (
        "seat-numbers-past-a-machine-word",
        "typo.json",
        _compact({"row": "1", "from": 1, "to": 10**19}),
        "{path}: more than 100,000 seats, the most one event may have; "
        "split the venue into several events",
    ),
]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [case[1:] for case in BAD_FILES],
    ids=[case[0] for case in BAD_FILES],
)
def test_bad_file_is_refused_with_a_message_saying_where_and_what_to_fix(
    tmp_path: Path, name: str, content: str | bytes, expected: str
) -> None:
    """Each kind of bad seat-map file raises SeatMapError with exactly this message."""
    path = write(tmp_path, name, content)
    assert error_of(path) == expected.format(path=path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    """A path that does not exist is reported as such, with the path."""
    path = tmp_path / "nope.csv"
    assert error_of(path) == f"seat map file not found: {path}"


def test_directory_instead_of_file_is_named(tmp_path: Path) -> None:
    """A directory given as the seat map says so instead of failing to read it."""
    path = tmp_path / "maps.json"
    path.mkdir()
    assert (
        error_of(path) == f"{path} is a directory; give the path of a .json or .csv seat-map file"
    )


def test_seat_limit_is_a_parameter(tmp_path: Path) -> None:
    """max_seats lowers the limit; a map of exactly max_seats seats still loads."""
    path = write(tmp_path, "six.json", _compact({"row": "1", "seats": 6}))
    assert len(load_seat_map(path, max_seats=6)[1]) == 6
    assert error_of(path, max_seats=5) == (
        f"{path}: more than 5 seats, the most one event may have; "
        "split the venue into several events"
    )


def test_seat_map_error_is_a_value_error() -> None:
    """Callers that already handle ValueError also handle a bad seat map."""
    assert issubclass(SeatMapError, ValueError)
