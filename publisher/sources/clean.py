"""Sanitize incoming HTML, normalise text, strip the characters XML forbids."""

from __future__ import annotations

import functools
import html
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

import nh3

# XML 1.0 allows tab, LF, CR and everything from U+0020 except surrogates, U+FFFE and U+FFFF.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "cite", "code", "dd", "del", "dfn", "div",
    "dl", "dt", "em", "figcaption", "figure", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
    "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong",
    "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "u", "ul",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
    "ol": {"start"},
    "time": {"datetime"},
    "abbr": {"title"},
}
_URL_SCHEMES = {"http", "https", "mailto"}
_BLOCK_TAG = re.compile(
    r"</?(?:p|div|h[1-6]|li|ul|ol|br|hr|tr|td|th|table|blockquote|pre|figure|figcaption|dl|dt|dd)"
    r"\b[^>]*>",
    re.IGNORECASE,
)
_TAG = re.compile(r"<[^>]*>")
_LINK_REL = "noopener noreferrer"
# nh3 writes every attribute value in double quotes with < > " escaped, so a start tag ends
# at the first ">" and ' href="' can only be an attribute.
_ANCHOR_TAG = re.compile(r"<a [^>]*>")
_SPACE = re.compile(r"\s+")


def strip_xml_forbidden(text: str) -> str:
    return _XML_FORBIDDEN.sub("", text)


def normalize_text(text: str) -> str:
    """NFC, Unix newlines, no characters XML forbids. Curly quotes and dashes stay as written."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return strip_xml_forbidden(unicodedata.normalize("NFC", text))


def sanitize_html(fragment: str, *, base_url: str | None = None) -> str:
    """Keep structure and links; drop scripts, styles, event handlers and unsafe URLs.

    A link left without its URL keeps its text, as an <a> with no href (and no rel).
    An <h1> becomes an <h2>: the article title is the page's only <h1>. With `base_url`,
    relative links and image sources are made absolute against it in the same pass. The
    result holds no character XML forbids, even written as a reference ("&#1;").
    """
    allowed = strip_xml_forbidden(fragment)
    cleaned = _cleaner(base_url).clean(allowed)
    if "&#" in allowed:
        # nh3 decodes character references, so text and attributes may hold forbidden
        # characters again (URL attributes were cleaned of them in the filter, before their
        # scheme was checked). Named references never stand for such a character.
        cleaned = strip_xml_forbidden(cleaned)
    if "<a " in cleaned:
        cleaned = _ANCHOR_TAG.sub(_rel_only_with_href, cleaned)
    return cleaned.replace("<h1>", "<h2>").replace("</h1>", "</h2>")


def _rel_only_with_href(anchor: re.Match[str]) -> str:
    # nh3 gives every <a> the rel, but HTML forbids rel on an <a> without href (one whose
    # unsafe link was dropped): the W3C checker rejects such a page.
    tag = anchor.group()
    return tag if ' href="' in tag else tag.replace(f' rel="{_LINK_REL}"', "")


_URL_ATTRIBUTES = frozenset({"href", "src", "cite"})


@functools.lru_cache(maxsize=64)
def _cleaner(base_url: str | None) -> nh3.Cleaner:
    # Built once per base: handing nh3 the options on every call costs a third of the work.
    return nh3.Cleaner(
        tags=_ALLOWED_TAGS | {"h1"},
        clean_content_tags={"script", "style", "template", "noscript", "iframe", "object"},
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        link_rel=_LINK_REL,
        attribute_filter=_url_filter(base_url),
    )


def _url_filter(base_url: str | None) -> Callable[[str, str, str], str | None]:
    base = urlsplit(base_url or "")
    # Joining onto an http(s) base keeps its scheme, so only a value naming a scheme of
    # its own needs checking; any other base is checked every time.
    web_base = base.scheme in ("http", "https") and bool(base.netloc)
    origin = f"{base.scheme}://{base.netloc}"

    def check(_tag: str, attribute: str, value: str) -> str | None:
        if attribute not in _URL_ATTRIBUTES or value.startswith(("https://", "http://")):
            return value
        # nh3 checked the scheme of the value as it decoded it; removing a forbidden
        # character afterwards could make one ("java&#1;script:"), so it goes first and
        # the scheme is checked here again. The filter's result is not checked by nh3.
        value = strip_xml_forbidden(value)
        try:
            if base_url is None:
                scheme = urlsplit(value).scheme.lower()
                return value if not scheme or scheme in _URL_SCHEMES else None
            value = value.strip()
            if web_base and ":" not in value:
                # Feeds link root-relative paths most often; urljoin is slow for those.
                if value.startswith("/") and not value.startswith("//") and _PLAIN_PATH(value):
                    return origin + value
                return urljoin(base_url, value)
            absolute = urljoin(base_url, value)
            return absolute if urlsplit(absolute).scheme.lower() in _URL_SCHEMES else None
        except ValueError:  # e.g. "//[x": not a URL at all (an exception here nh3 would print)
            return None

    return check


# A path urljoin would leave as it is: no dot segments, backslashes, stray white space,
# or an empty query or fragment (which urljoin drops).
_PLAIN_PATH = re.compile(r"^(?!.*(?:/\.|\\|[\t\n\r ]|\?(?:#|$)|#$))").match


def html_to_text(fragment: str) -> str:
    """Visible text of an HTML fragment on one line, for summaries and titles."""
    # Block tags part words; inline ones ("see <a>this</a>.") must not add a space.
    text = _TAG.sub("", _BLOCK_TAG.sub(" ", fragment))
    return _SPACE.sub(" ", html.unescape(text)).strip()


def shorten(text: str, limit: int) -> str:
    """Cut at a word boundary at most `limit` characters long, ending with an ellipsis."""
    text = _SPACE.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:–—-")
    return cut + "…"
