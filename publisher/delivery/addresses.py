"""Subscriber addresses: checking and normalising them, and CSV files of subscribers."""

from __future__ import annotations

import csv
import os
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from publisher.errors import DeliveryError
from publisher.model import Problem, Subscriber

NAME_MAX_LENGTH = 200
EXPORT_COLUMNS = (
    "email",
    "name",
    "status",
    "created_at",
    "confirmed_at",
    "unsubscribed_at",
    "bounce_count",
)
_EMAIL_HEADERS = {"email", "e-mail", "email address", "e-mail address", "mail", "address"}
_NAME_HEADERS = {"name", "full name", "display name"}


def normalise_email(raw: str) -> str:
    """The address as stored: syntax checked (no DNS), ASCII domain, lower case.

    Raises ValueError with a message a person can act on. Lower case: mailbox names are
    case-insensitive at every provider that matters, and one person must be one row.
    """
    from email_validator import EmailNotValidError, validate_email  # only when addresses come in

    text = raw.strip()
    if not text:
        raise ValueError("empty address")
    try:
        info = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{text!r} is not a valid address: {exc}") from None
    return (info.ascii_email or info.normalized).lower()


def clean_name(raw: str) -> str:
    """A display name safe for headers and pages: no control characters, one line, short."""
    kept = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
        for ch in raw
        if unicodedata.category(ch) not in ("Cf", "Cs", "Co")
    )
    return " ".join(kept.split())[:NAME_MAX_LENGTH]


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int
    email: str  # normalised
    name: str  # cleaned


def read_subscriber_csv(path: Path) -> Iterator[CsvRow | Problem]:
    """Rows of a subscriber CSV, streamed: a good row, or a Problem naming its line.

    The first row is a header when one of its cells is "email"; then a "name" column is used
    if there is one. Without a header the columns are email, then name.
    """
    shown = str(path)
    try:
        handle = path.open(encoding="utf-8-sig", errors="replace", newline="")
    except OSError as exc:
        raise DeliveryError(f"cannot read the file ({exc.strerror})", where=shown) from None
    with handle:
        # NUL bytes make the csv module stop; a spreadsheet export may hold a few.
        reader = csv.reader(line.replace("\0", "") for line in handle)
        email_col, name_col = 0, 1
        first = True
        try:
            for cells in reader:
                line = reader.line_num
                if first:
                    first = False
                    lowered = [c.strip().lower() for c in cells]
                    if any(c in _EMAIL_HEADERS for c in lowered):
                        email_col = next(i for i, c in enumerate(lowered) if c in _EMAIL_HEADERS)
                        name_col = next(
                            (i for i, c in enumerate(lowered) if c in _NAME_HEADERS), -1
                        )
                        continue
                if not any(c.strip() for c in cells):
                    continue
                yield _row(shown, line, cells, email_col, name_col)
        except csv.Error as exc:
            yield Problem(
                f"{shown}:{reader.line_num}", f"not readable as CSV ({exc}); the rest was skipped"
            )


def _row(
    shown: str, line: int, cells: list[str], email_col: int, name_col: int
) -> CsvRow | Problem:
    where = f"{shown}:{line}"
    raw = cells[email_col] if email_col < len(cells) else ""
    if "\ufffd" in "".join(cells):
        return Problem(where, "not UTF-8 text; save the file as UTF-8 and import it again")
    try:
        email = normalise_email(raw)
    except ValueError as exc:
        return Problem(where, str(exc))
    name = cells[name_col] if 0 <= name_col < len(cells) else ""
    return CsvRow(line, email, clean_name(name))


def write_subscriber_csv(path: Path, subscribers: Iterable[Subscriber]) -> int:
    """Write every subscriber to `path` (a temporary file, then renamed); returns the count."""
    folder = path.resolve().parent
    if not folder.is_dir():
        raise DeliveryError("folder not found", where=str(folder), hint="create it first")
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(EXPORT_COLUMNS)
            for s in subscribers:
                writer.writerow(
                    (
                        s.email,
                        s.name,
                        s.status,
                        s.created_at.isoformat(),
                        s.confirmed_at.isoformat() if s.confirmed_at else "",
                        s.unsubscribed_at.isoformat() if s.unsubscribed_at else "",
                        s.bounce_count,
                    )
                )
                count += 1
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return count
