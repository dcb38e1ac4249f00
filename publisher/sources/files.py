"""Read article files: the plain text form, Markdown and HTML, each with optional front matter."""

from __future__ import annotations

import codecs
import functools
import html
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, tzinfo
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from publisher.errors import SourceError
from publisher.model import ParsedArticle
from publisher.sources.clean import html_to_text, normalize_text, sanitize_html, shorten

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

ARTICLE_SUFFIXES = (".txt", ".md", ".html")
FRONT_MATTER_KEYS = ("title", "author", "date", "tags", "summary", "url", "slug", "draft")
TITLE_MAX = 120
SUMMARY_MAX = 300
HEADING_MAX = 90

BlockKind = Literal["title", "byline", "heading", "paragraph"]


@dataclass(frozen=True, slots=True)
class Block:
    """One line-level unit of a plain-text article, with its 1-based line number in the body."""

    kind: BlockKind
    text: str
    line: int


@dataclass(frozen=True, slots=True)
class ArticleFile:
    """An article file found in the articles folder, with what `stat` said of it."""

    key: str  # path relative to the articles folder, with forward slashes
    path: Path
    size: int
    mtime_ns: int


# ---------------------------------------------------------------------------- finding files


def scan_article_files(root: Path) -> tuple[list[ArticleFile], list[tuple[str, str]]]:
    """Every article file under `root` (hidden files and editor backups skipped), sorted.

    Returns the files and (key, problem) pairs for entries that must not be read, such as a
    symlink pointing outside the folder.
    """
    found: list[ArticleFile] = []
    refused: list[tuple[str, str]] = []
    real_root = root.resolve()
    for entry in _walk(root):
        key = PurePosixPath(Path(entry.path).relative_to(root)).as_posix()
        if entry.is_symlink():
            target = Path(entry.path).resolve()
            if not target.is_relative_to(real_root):
                refused.append((key, f"symlink points outside {root.name}/ (to {target}); refused"))
                continue
        try:
            st = entry.stat()
        except OSError as exc:
            refused.append((key, f"cannot read ({exc.strerror}); check the file's permissions"))
            continue
        found.append(ArticleFile(key, Path(entry.path), st.st_size, st.st_mtime_ns))
    found.sort(key=lambda f: f.key)
    return found, refused


def _walk(folder: Path) -> Iterator[os.DirEntry[str]]:
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith((".", "_")) or entry.name.endswith("~"):
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(Path(entry.path))
            elif entry.name.lower().endswith(ARTICLE_SUFFIXES) and not entry.is_dir():
                yield entry


def read_article_bytes(file: ArticleFile, max_bytes: int) -> bytes:
    """The file's bytes, after the checks that need no parsing."""
    if file.size == 0:
        raise SourceError("empty file (0 bytes)", hint="write the article or delete the file")
    if file.size > max_bytes:
        raise SourceError(
            f"file is {file.size:,} bytes, over articles.max_bytes ({max_bytes:,})",
            hint="split the article or raise articles.max_bytes in the settings",
        )
    try:
        return file.path.read_bytes()
    except OSError as exc:
        raise SourceError(
            f"cannot read ({exc.strerror})", hint="check the file's permissions"
        ) from None


# ---------------------------------------------------------------------------- decoding


def decode(data: bytes) -> str:
    """UTF-8, UTF-8 with BOM or UTF-16 with BOM; anything else names the first bad byte."""
    offset = 0
    encoding = "utf-8"
    if data.startswith(codecs.BOM_UTF8):
        offset = len(codecs.BOM_UTF8)
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    try:
        return data[offset:].decode(encoding)
    except UnicodeDecodeError as exc:
        bad = data[offset + exc.start : offset + exc.start + 1]
        raise SourceError(
            f"not valid {encoding.upper()}: byte 0x{bad.hex().upper() or '??'} at offset "
            f"{offset + exc.start}",
            hint="save the file as UTF-8 and collect again",
        ) from None


# ---------------------------------------------------------------------------- front matter

_HEADER_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)[ \t]*:[ \t]*(.*?)[ \t]*$")


def split_front_matter(text: str) -> tuple[dict[str, tuple[Any, int]], str, int]:
    """Split off a `---` YAML block or `Key: value` header lines.

    Returns {key: (value, line)}, the body, and how many lines came before the body.
    """
    lines = text.split("\n")
    if lines and lines[0].strip() == "---":
        return _yaml_front_matter(lines)
    first = _HEADER_LINE.match(lines[0]) if lines else None
    if first and first.group(1).lower() in FRONT_MATTER_KEYS:
        return _header_front_matter(lines)
    return {}, text, 0


def _yaml_front_matter(lines: list[str]) -> tuple[dict[str, tuple[Any, int]], str, int]:
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None:
        raise SourceError(
            "line 1: front matter opened with '---' is never closed",
            hint="end it with a line holding only '---'",
        )
    block = "\n".join(lines[1:end])
    import yaml  # here, not at the top: an unchanged collect run never parses front matter

    loader = yaml.SafeLoader(block)
    try:
        # One pass: the node tree gives each key's line, the document its values.
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise SourceError(
            f"line {line}: malformed front matter ({problem})",
            hint="fix the YAML between the '---' lines",
        ) from None
    finally:
        loader.dispose()
    if data is None:
        data = {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise SourceError(
            "line 2: front matter must be 'key: value' lines", hint="fix the YAML block"
        )
    key_lines = {str(k.value): k.start_mark.line + 2 for k, _ in node.value}
    fields = {str(k): (v, key_lines.get(str(k), 2)) for k, v in data.items()}
    return fields, "\n".join(lines[end + 1 :]), end + 1


def _header_front_matter(lines: list[str]) -> tuple[dict[str, tuple[Any, int]], str, int]:
    fields: dict[str, tuple[Any, int]] = {}
    for i, line in enumerate(lines):
        if not line.strip():
            return fields, "\n".join(lines[i + 1 :]), i + 1
        match = _HEADER_LINE.match(line)
        if not match:
            raise SourceError(
                f"line {i + 1}: expected 'Key: value' in the header lines",
                hint="end the header with a blank line before the article text",
            )
        fields[match.group(1)] = (match.group(2), i + 1)
    return fields, "", len(lines)


@dataclass(frozen=True, slots=True)
class FrontMatter:
    title: str | None = None
    author: str | None = None
    date: datetime | None = None
    tags: tuple[str, ...] = ()
    summary: str | None = None
    url: str | None = None
    slug: str | None = None
    draft: bool = False


def check_front_matter(fields: Mapping[str, tuple[Any, int]], zone: tzinfo) -> FrontMatter:
    """Typed front matter; a bad key or value names its line."""
    values: dict[str, Any] = {}
    for key, (value, line) in fields.items():
        name = key.lower()
        if name not in FRONT_MATTER_KEYS:
            raise SourceError(
                f"line {line}: unknown front matter key {key!r}",
                hint=f"use one of: {', '.join(FRONT_MATTER_KEYS)}",
            )
        try:
            values[name] = _FIELD_CHECKS[name](value, zone)
        except ValueError as exc:
            raise SourceError(f"line {line}: front matter {name}: {exc}") from None
    return FrontMatter(**values)


def _text_value(value: Any, _zone: tzinfo) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict | list):
        raise ValueError("expected text, got a list or table")
    return normalize_text(str(value)).strip() or None


def _url_value(value: Any, zone: tzinfo) -> str | None:
    text = _text_value(value, zone)
    if text is not None:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{text!r} is not an absolute http(s) URL")
    return text


def _date_value(value: Any, zone: tzinfo) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime.combine(value, time())
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is not a date; write it as 2026-11-24 or 2026-11-24T07:30:00+01:00"
            ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)


def _tags_value(value: Any, _zone: tzinfo) -> tuple[str, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, list) else str(value).split(",")
    tags = (normalize_text(str(item)).strip() for item in items)
    return tuple(dict.fromkeys(tag for tag in tags if tag))


def _bool_value(value: Any, _zone: tzinfo) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1", "on"):
        return True
    if text in ("false", "no", "0", "off", ""):
        return False
    raise ValueError(f"{value!r} is not true or false")


_FIELD_CHECKS = {
    "title": _text_value,
    "author": _text_value,
    "summary": _text_value,
    "slug": _text_value,
    "url": _url_value,
    "date": _date_value,
    "tags": _tags_value,
    "draft": _bool_value,
}


# ---------------------------------------------------------------------------- the plain form

_CLOSING_PUNCTUATION = ".!?…:;,"
_TRAILING_QUOTES = "\"'”’»)]"
_BYLINE_BY = re.compile(r"^By\s+(?P<author>[^\s].{0,80}?)(?:\s+[–—-]\s+(?P<pub>.{2,80}))?$")
_BYLINE_DASH = re.compile(r"^(?P<author>[^–—\-\s][^–—]{0,58}?)\s+[–—-]\s+(?P<pub>[^–—]{2,80})$")
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"'”’)]?\s+(?=[\"“‘(]?[A-Z0-9])")
_CLAUSE_BREAK = re.compile(r"(?:,|;|:|\s[–—-])\s")


def _ends_with_closing_punctuation(line: str) -> bool:
    stripped = line.rstrip(_TRAILING_QUOTES)
    return bool(stripped) and stripped[-1] in _CLOSING_PUNCTUATION


def is_heading_like(line: str) -> bool:
    """Short, and no closing punctuation: a heading or title if a paragraph follows."""
    return (
        len(line) <= HEADING_MAX
        and len(line.split()) <= 14
        and not _ends_with_closing_punctuation(line)
    )


def parse_byline(line: str) -> tuple[str, str | None] | None:
    """(author, publication) from `Author – Publication` or `By Author`, else None."""
    if len(line) > 140 or _ends_with_closing_punctuation(line):
        return None
    match = _BYLINE_BY.match(line) or _BYLINE_DASH.match(line)
    if not match:
        return None
    author = match.group("author").strip()
    if len(author.split()) > 6 or not any(ch.isupper() for ch in author[:1]):
        return None
    pub = match.group("pub")
    return author, pub.strip() if pub else None


def parse_plain_blocks(body: str) -> list[Block]:
    """Split a plain-text body into title, byline, headings and paragraphs.

    Every non-empty line becomes exactly one block. Leading lines may be a byline and a
    title line (in either order) before the first paragraph.
    """
    lines = [(i + 1, line.strip()) for i, line in enumerate(body.split("\n")) if line.strip()]
    blocks: list[Block] = []
    seen_title = seen_byline = seen_paragraph = False
    for index, (number, line) in enumerate(lines):
        has_next = index + 1 < len(lines)
        next_is_text = has_next and not is_heading_like(lines[index + 1][1])
        if not seen_paragraph and not seen_byline and parse_byline(line) is not None:
            blocks.append(Block("byline", line, number))
            seen_byline = True
        elif not seen_paragraph and not seen_title and is_heading_like(line) and has_next:
            blocks.append(Block("title", line, number))
            seen_title = True
        elif seen_paragraph and is_heading_like(line) and next_is_text:
            blocks.append(Block("heading", line, number))
        else:
            blocks.append(Block("paragraph", line, number))
            seen_paragraph = True
    return blocks


def title_from_lede(lede: str) -> str:
    """The lede's first sentence, cut at a clause break the way an editor would shorten it."""
    sentence = _SENTENCE_END.split(lede.strip(), maxsplit=1)[0]
    if len(sentence) > TITLE_MAX:
        breaks = [m.start() for m in _CLAUSE_BREAK.finditer(sentence) if m.start() >= 30]
        fitting = [b for b in breaks if b <= TITLE_MAX]
        sentence = sentence[: fitting[-1]] if fitting else shorten(sentence, TITLE_MAX)
    return sentence.rstrip(" .;:,")


def title_from_file_name(stem: str) -> str | None:
    """A title from a meaningful file name, e.g. 'spring-garden-notes'; None for hash-like names.

    Number-only parts (dates, counters) are dropped; any part mixing letters and digits
    ('a294275c7f261648', '77b0') marks a generated name.
    """
    words = [w for w in re.split(r"[-_.\s]+", stem) if w and not w.isdigit()]
    if any(re.search(r"\d", w) for w in words):
        return None
    if sum(ch.isalpha() for w in words for ch in w) < 4:
        return None
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _plain_to_html(blocks: list[Block]) -> str:
    parts = []
    for block in blocks:
        if block.kind == "heading":
            parts.append(f"<h2>{html.escape(block.text, quote=False)}</h2>")
        elif block.kind == "paragraph":
            parts.append(f"<p>{html.escape(block.text, quote=False)}</p>")
    return "\n".join(parts)


# ---------------------------------------------------------------------------- the three forms


@functools.cache
def _markdown() -> MarkdownIt:
    # Built on first use: an unchanged collect run never renders Markdown.
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": True})


_MD_H1 = re.compile(r"^\s{0,3}#\s+(.+?)(?:\s+#+)?\s*$")
_HTML_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.S | re.I)
_HTML_H1 = re.compile(r"<h1[^>]*>(.*?)</h1>", re.S | re.I)
_HTML_BODY = re.compile(r"<body[^>]*>(.*?)(?:</body>|$)", re.S | re.I)
_FIRST_PARAGRAPH = re.compile(r"<p[^>]*>(.*?)</p>", re.S)


def parse_article(name: str, data: bytes, zone: tzinfo) -> ParsedArticle:
    """Parse one article file's bytes; `name` is its file name, `zone` the site's time zone."""
    text = normalize_text(decode(data))
    if not text.strip():
        raise SourceError("empty file (only white space)", hint="write the article or delete it")
    fields, body, _ = split_front_matter(text)
    front = check_front_matter(fields, zone)
    if not body.strip():
        raise SourceError("front matter but no article text", hint="write the article below it")
    stem, suffix = PurePosixPath(name).stem, PurePosixPath(name).suffix.lower()
    author: str | None = None
    publication: str | None = None
    found_title: str | None = None
    lede = ""
    if suffix == ".txt":
        blocks = parse_plain_blocks(body)
        content = _plain_to_html(blocks)
        for block in blocks:
            if block.kind == "byline" and (byline := parse_byline(block.text)):
                author, publication = byline
            elif block.kind == "title":
                found_title = block.text
        lede = next((b.text for b in blocks if b.kind == "paragraph"), "")
    else:
        if suffix == ".md":
            first_line = body.lstrip("\n").split("\n", 1)
            match = _MD_H1.match(first_line[0])
            if match:
                found_title = html_to_text(_markdown().renderInline(match.group(1)))
                body = first_line[1] if len(first_line) > 1 else ""
            content = sanitize_html(_markdown().render(body))
        else:
            title_tag = _HTML_TITLE.search(body)
            h1 = _HTML_H1.search(body)
            body_match = _HTML_BODY.search(body)
            fragment = body_match.group(1) if body_match else body
            if h1 and h1.group(0) in fragment:
                found_title = html_to_text(h1.group(1))
                fragment = fragment.replace(h1.group(0), "", 1)
            elif title_tag:
                found_title = html_to_text(title_tag.group(1))
            content = sanitize_html(_HTML_TITLE.sub("", fragment))
        paragraph = _FIRST_PARAGRAPH.search(content)
        lede = html_to_text(paragraph.group(1) if paragraph else content)
    if not html_to_text(content) and not found_title:
        raise SourceError("no article text left after cleaning", hint="check the file's content")
    title = (
        front.title
        or (shorten(found_title, TITLE_MAX) if found_title else None)
        or title_from_file_name(stem)
        or title_from_lede(lede)
        or "Untitled"
    )
    return ParsedArticle(
        title=title,
        content_html=content,
        summary=front.summary or shorten(lede, SUMMARY_MAX),
        author=front.author or author,
        publication=publication,
        date=front.date,
        url=front.url,
        slug=front.slug,
        tags=front.tags,
        draft=front.draft,
    )


# ---------------------------------------------------------------------------- images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".avif")


def read_image(root: Path, article_key: str, ref: str, max_bytes: int) -> bytes:
    """An image an article refers to by a relative path, checked to stay inside `root`.

    SVG is refused: served from the site's own origin it could run scripts.
    """
    relative = PurePosixPath(article_key).parent / ref.split("?", 1)[0].split("#", 1)[0]
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise SourceError(f"image {ref!r} lies outside {root.name}/; refused")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise SourceError(
            f"image {ref!r} is not a {', '.join(IMAGE_SUFFIXES)} file; left out",
            hint="convert it to PNG or JPEG",
        )
    try:
        if path.stat().st_size > max_bytes:
            raise SourceError(
                f"image {ref!r} is over articles.max_bytes ({max_bytes:,} bytes); left out",
                hint="make it smaller or raise the limit",
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise SourceError(
            f"image {ref!r} not found; the issue publishes without it",
            hint="put the file beside the article",
        ) from None
    except OSError as exc:
        raise SourceError(f"image {ref!r} cannot be read ({exc.strerror})") from None
