"""Subscriber addresses and CSV files: checked, normalised, bad rows named by line."""

from __future__ import annotations

import csv
import unicodedata
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.delivery.addresses import (
    CsvRow,
    clean_name,
    normalise_email,
    read_subscriber_csv,
    write_subscriber_csv,
)
from publisher.model import Problem, Subscriber


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("Jane@Example.ORG", "jane@example.org"),
        ("  jane@example.org \n", "jane@example.org"),
        ("jane@bücher.example", "jane@xn--bcher-kva.example"),
        ("jane+news@example.org", "jane+news@example.org"),
    ],
)
def test_addresses_are_normalised_to_one_stored_form(raw: str, stored: str) -> None:
    assert normalise_email(raw) == stored


@pytest.mark.parametrize(
    "raw",
    ["", "jane", "jane@", "@example.org", "jane@@example.org", "Jane <jane@example.org>",
     "jäne@example.org", "jane@example..org", "a b@example.org"],
)  # fmt: skip
def test_bad_addresses_are_refused_with_a_reason(raw: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        normalise_email(raw)


def test_no_dns_lookup_is_made_for_a_domain_that_does_not_exist() -> None:
    assert normalise_email("x@no-such-domain.invalid-tld-zz") == "x@no-such-domain.invalid-tld-zz"


@given(st.text(max_size=300))
def test_clean_names_are_one_short_line_without_control_characters(raw: str) -> None:
    name = clean_name(raw)

    assert len(name) <= 200
    assert "\n" not in name and "\r" not in name
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs") for c in name)
    assert name == name.strip()


def test_clean_name_keeps_what_a_person_typed() -> None:
    assert clean_name("  Zoë   Ångström ") == "Zoë Ångström"
    assert clean_name("Eve\r\nBcc: x@example.org") == "Eve Bcc: x@example.org"


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_csv_with_header_reads_email_and_name_and_names_bad_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "people.csv",
        "Name,E-mail,Notes\n"
        "Jane Doe,Jane@Example.org,x\n"
        "Bad Row,not-an-address,y\n"
        "\n"
        '"Doe, John",john@example.org,"multi\nline"\n'
        "No Mail,,z\n",
    )
    rows = list(read_subscriber_csv(path))

    good = [r for r in rows if isinstance(r, CsvRow)]
    bad = [r for r in rows if isinstance(r, Problem)]
    assert [(r.email, r.name) for r in good] == [
        ("jane@example.org", "Jane Doe"),
        ("john@example.org", "Doe, John"),
    ]
    assert [p.where for p in bad] == [f"{path}:3", f"{path}:7"]
    assert "not-an-address" in bad[0].message
    assert "empty address" in bad[1].message


def test_csv_without_header_is_email_then_name_and_a_bom_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "\ufeffjane@example.org,Jane\nbob@example.org\n")

    assert list(read_subscriber_csv(path)) == [
        CsvRow(1, "jane@example.org", "Jane"),
        CsvRow(2, "bob@example.org", ""),
    ]


def test_csv_that_is_not_utf8_is_reported_per_line(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "jane@example.org,Jürgen\nbob@example.org,Bob\n", "latin-1")
    rows = list(read_subscriber_csv(path))

    assert isinstance(rows[0], Problem) and "UTF-8" in rows[0].message
    assert rows[1] == CsvRow(2, "bob@example.org", "Bob")


def test_csv_with_nul_bytes_is_still_read(tmp_path: Path) -> None:
    path = write(tmp_path / "p.csv", "jane@example.org,Ja\0ne\n")

    assert list(read_subscriber_csv(path)) == [CsvRow(1, "jane@example.org", "Jane")]


@given(st.text(max_size=200))
def test_any_csv_text_gives_rows_or_problems_never_an_exception(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.csv"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        for row in read_subscriber_csv(path):
            assert isinstance(row, CsvRow | Problem)
            if isinstance(row, CsvRow):
                assert normalise_email(row.email) == row.email


def test_export_writes_every_field_and_reads_back_as_the_same_addresses(tmp_path: Path) -> None:
    when = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    people = [
        Subscriber(1, "jane@example.org", "Jane, Doe", "active", 0, when, when, None),
        Subscriber(2, "bob@example.org", "", "unsubscribed", 0, when, when, when),
    ]
    path = tmp_path / "out.csv"

    assert write_subscriber_csv(path, people) == 2
    with path.open(encoding="utf-8", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert table[0]["name"] == "Jane, Doe"
    assert table[1]["status"] == "unsubscribed"
    assert table[1]["unsubscribed_at"] == when.isoformat()
    assert [r.email for r in read_subscriber_csv(path) if isinstance(r, CsvRow)] == [
        "jane@example.org",
        "bob@example.org",
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]  # no temporary file left
