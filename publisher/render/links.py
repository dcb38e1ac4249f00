"""Make an article's links and images absolute for feeds and mail; pure string work."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

# Sanitized HTML (nh3) always quotes attributes with double quotes, so these suffice.
_IMG = re.compile(r"<img\b[^>]*>")
_ATTR = re.compile(r'\s([a-zA-Z-]+)="([^"]*)"')
_HREF = re.compile(r'(<a\b[^>]*?\shref=")([^"]*)(")')


def is_relative(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc and not url.startswith("#")


def local_image_refs(content_html: str) -> list[str]:
    """The relative `src` of every image, in order, without duplicates."""
    refs: dict[str, None] = {}
    for tag in _IMG.findall(content_html):
        src = html.unescape(dict(_ATTR.findall(tag)).get("src", ""))
        if src and is_relative(src):
            refs[src] = None
    return list(refs)


def publish_html(
    content_html: str, base_url: str, image_urls: Mapping[str, str | None], default_alt: str
) -> str:
    """Relative links resolved against `base_url`; images pointed at their published URLs.

    `image_urls` maps a relative src to its absolute URL, or to None when the file is missing:
    that <img> is dropped. Every image gets alt text, the article title when it has none.
    """

    def image(match: re.Match[str]) -> str:
        attrs = dict(_ATTR.findall(match.group(0)))
        src = html.unescape(attrs.get("src", ""))
        if src in image_urls:
            published = image_urls[src]
            if published is None:
                return ""
            attrs["src"] = html.escape(published)
        elif src and is_relative(src):
            attrs["src"] = html.escape(urljoin(base_url, src))
        if not attrs.get("alt", "").strip():
            attrs["alt"] = html.escape(default_alt)
        order = ["src", "alt", *sorted(k for k in attrs if k not in ("src", "alt"))]
        return "<img " + " ".join(f'{k}="{attrs[k]}"' for k in order) + ">"

    def link(match: re.Match[str]) -> str:
        href = html.unescape(match.group(2))
        if href and is_relative(href):
            href = urljoin(base_url, href)
        return match.group(1) + html.escape(href) + match.group(3)

    return _HREF.sub(link, _IMG.sub(image, content_html))
