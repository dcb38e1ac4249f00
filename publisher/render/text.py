"""Plain text for email: sanitized HTML to wrapped paragraphs with numbered link references."""

from __future__ import annotations

import re

import lxml.html
from lxml import etree

WIDTH = 78  # RFC 5322 asks for lines of at most 78 characters where possible
MAX_LINE_OCTETS = 998  # RFC 5322's hard limit, without the CRLF

_SPACE = re.compile(r"[ \t\r\n\f]+")
_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_BLOCKS = {
    "address", "article", "aside", "blockquote", "caption", "dd", "div", "dl", "dt", "figcaption",
    "figure", "footer", "header", "hr", "li", "ol", "p", "pre", "section", "table", "tbody",
    "td", "tfoot", "th", "thead", "tr", "ul",
} | _HEADINGS  # fmt: skip


def wrap(text: str, *, width: int = WIDTH, first: str = "", rest: str = "") -> str:
    """Fill one paragraph to `width`; words longer than a line (URLs) stay whole.

    A greedy fill, as textwrap does without hyphen or long-word breaking, at a fraction of its
    cost: a rebuild wraps every paragraph of every issue. Each line ends at the last space
    that fits, found by str.rfind rather than by adding up words one at a time.
    """
    words = _tidy(text).strip(" ")  # ASCII spaces only: NBSP holds
    if not words:
        return first.rstrip()
    lines: list[str] = []
    prefix, start, end = first, 0, len(words)
    while True:
        room = width - len(prefix)
        if end - start <= room:
            lines.append(prefix + words[start:])
            break
        # Words are now separated by single spaces and words[start] is not one.
        cut = words.rfind(" ", start, start + room + 1) if room > 0 else -1
        if cut < 0:  # the first word alone is too long: it gets the line to itself
            cut = words.find(" ", start)
            if cut < 0:
                lines.append(prefix + words[start:])
                break
        lines.append(prefix + words[start:cut])
        prefix, start = rest, cut + 1
    return "\n".join(lines)


def _tidy(text: str) -> str:
    """Runs of ASCII whitespace as one space; most text has none to tidy, and searching is far
    cheaper than substituting every single space with itself. (Five substring searches: a
    tenth of the time of one regex search for the same characters.)"""
    untidy = "  " in text or "\n" in text or "\t" in text or "\r" in text or "\f" in text
    return _SPACE.sub(" ", text) if untidy else text


def heading(text: str, underline: str = "=") -> str:
    """A wrapped heading line(s) underlined as wide as its longest line."""
    wrapped = wrap(text)
    longest = max((len(line) for line in wrapped.splitlines()), default=0)
    return f"{wrapped}\n{underline * min(longest, WIDTH)}"


def limit_line_octets(text: str, limit: int = MAX_LINE_OCTETS) -> str:
    """Hard-split any line longer than `limit` UTF-8 octets, at character boundaries.

    Only a pathological word (a URL thousands of characters long) gets here; SMTP
    servers may reject or mangle longer lines, so a split link beats a lost message.
    """
    if all(len(line) <= limit // 4 for line in text.split("\n")):
        return text  # fast path: no line can exceed the limit even in 4-byte characters
    out: list[str] = []
    for line in text.split("\n"):
        while len(line.encode()) > limit:
            cut = limit
            while len(line[:cut].encode()) > limit:
                cut -= 1
            out.append(line[:cut])
            line = line[cut:]
        out.append(line)
    return "\n".join(out)


def html_to_text(fragment: str, *, width: int = WIDTH) -> str:
    """Sanitized HTML to plain text: paragraphs, headings, lists, quotes; links as [n] refs.

    The references follow the text as `[n] URL` lines. A link whose text is its own
    address is shown once, inline, without a reference.
    """
    if not fragment.strip():
        return ""
    root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    writer = _Writer(width)
    writer.children(root)
    writer.flush()
    text = "".join(sep + block for sep, block in writer.blocks).lstrip("\n")
    if writer.links:
        refs = "\n".join(f"[{n}] {url}" for n, url in enumerate(writer.links, start=1))
        text = f"{text}\n\n{refs}" if text else refs
    return text


class _Writer:
    """Walks an element tree, gathering inline text and emitting wrapped blocks."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.blocks: list[tuple[str, str]] = []  # (separator before it, text)
        self.tight = False  # next block continues a list or table: no blank line before it
        self.links: list[str] = []
        self.inline: list[str] = []
        self.indent = ""  # continuation prefix: list nesting and quote markers
        self.bullet: str | None = None  # first-line prefix of the current list item
        self.lists: list[list[int]] = []  # one [next number] per open <ol>, [-1] for <ul>

    def emit(self, block: str, *, tight: bool = False) -> None:
        self.blocks.append(("\n" if tight and self.tight else "\n\n", block))
        self.tight = tight

    def flush(self, underline: str = "", *, tight: bool = False) -> None:
        raw = "".join(self.inline)
        self.inline = []
        lines = [_tidy(part).strip() for part in raw.split("\n")]
        lines = [line for line in lines if line]
        if not lines:
            return
        tight = tight or self.bullet is not None  # an item's first line follows the last item
        first = self.bullet if self.bullet is not None else self.indent
        self.bullet = None
        out = []
        for i, line in enumerate(lines):
            out.append(wrap(line, width=self.width, first=first if i == 0 else self.indent,
                            rest=self.indent))  # fmt: skip
        text = "\n".join(out)
        if underline:
            longest = max(len(line) - len(self.indent) for line in text.splitlines())
            text += "\n" + self.indent + underline * max(1, min(longest, self.width))
        self.emit(text, tight=tight)

    def children(self, element: etree._Element) -> None:
        if element.text:
            self.inline.append(element.text)
        for child in element:
            self.visit(child)
            if child.tail:
                self.inline.append(child.tail)

    def visit(self, el: etree._Element) -> None:
        tag = el.tag if isinstance(el.tag, str) else ""  # comments and processing instructions
        if not tag:
            return
        tag = tag.lower()
        if tag == "br":
            self.inline.append("\n")
        elif tag == "img":
            alt = _SPACE.sub(" ", el.get("alt") or "").strip()
            self.inline.append(f"[{alt}]" if alt else "[image]")
            # The picture's address as a note, like a link's: a reader of the text can still
            # open it, and both parts of a mail carry the same URLs (spam filters compare).
            self.note(el.get("src"))
        elif tag == "a":
            self.link(el)
        elif tag == "pre":
            self.flush()
            body = "".join(str(part) for part in el.itertext()).strip("\n")
            prefix = self.bullet if self.bullet is not None else self.indent
            self.bullet = None
            lines = body.split("\n")
            self.emit(
                "\n".join(
                    (prefix if i == 0 else self.indent) + line for i, line in enumerate(lines)
                )
            )
        elif tag == "hr":
            self.flush()
            self.emit(self.indent + "* * *")
        elif tag in _HEADINGS:
            self.flush()
            self.children(el)
            self.flush(underline="-")
        elif tag in ("ul", "ol"):
            self.list(el, ordered=tag == "ol")
        elif tag == "li":
            self.item(el)
        elif tag == "blockquote":
            self.flush()
            saved = self.indent
            self.indent += "> "
            if self.bullet is not None:
                self.bullet += "> "
            self.children(el)
            self.flush()
            self.indent = saved
        elif tag == "tr":
            self.flush()
            cells = [c for c in el if isinstance(c.tag, str) and c.tag.lower() in ("td", "th")]
            for i, cell in enumerate(cells):
                if i:
                    self.inline.append(" | ")
                self.children(cell)
            self.flush(tight=True)
        elif tag in _BLOCKS:
            self.flush()
            self.children(el)
            self.flush()
        else:
            self.children(el)

    def link(self, el: etree._Element) -> None:
        start = len(self.inline)
        self.children(el)
        href = (el.get("href") or "").strip()
        shown = _SPACE.sub(" ", "".join(self.inline[start:])).strip()
        if not href or href in (shown, f"mailto:{shown}"):
            return
        if not shown:
            self.inline.append(href)
            return
        self.note(href)

    def note(self, url: str | None) -> None:
        """Mark the text just written with a number, and list `url` under it below.

        Every use gets its own note, even of an address noted before: then the text part
        carries each address as often as the HTML part, which spam filters compare.
        """
        url = (url or "").strip()
        if url:
            self.links.append(url)
            self.inline.append(f" [{len(self.links)}]")

    def list(self, el: etree._Element, *, ordered: bool) -> None:
        self.flush()
        start = el.get("start") or "1"
        self.lists.append([int(start) if ordered and start.lstrip("-").isdigit() else -1])
        self.children(el)
        self.flush()
        self.lists.pop()

    def item(self, el: etree._Element) -> None:
        self.flush()
        counter = self.lists[-1] if self.lists else [-1]
        if counter[0] >= 0:
            marker = f"{counter[0]}. "
            counter[0] += 1
        else:
            marker = "- "
        saved = self.indent
        self.bullet = self.indent + marker
        self.indent += " " * len(marker)
        self.children(el)
        self.flush()
        self.bullet = None
        self.indent = saved
