"""Jinja2 theme environment; the email digest (CSS inlined once), the web pages and the archive."""

from __future__ import annotations

import functools
import importlib
import logging
import re
import sys
import types
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import lxml.html
from markupsafe import Markup

from publisher.errors import ConfigError, RenderError
from publisher.model import (
    PLACEHOLDER_GREETING,
    PLACEHOLDER_UNSUBSCRIBE_URL,
    Digest,
    DigestForm,
    IssueContent,
    IssueSummary,
    PublishedArticle,
)
from publisher.render import text
from publisher.settings import Settings
from publisher.sources.clean import shorten

log = logging.getLogger(__name__)

# Gmail clips a message whose HTML is larger than 102 KB and hides the rest (including the
# unsubscribe link) behind "View entire message".
EMAIL_SIZE_LIMIT = 102_400
# Delivery later replaces the placeholders with a greeting and an unsubscribe URL carrying
# a token; keep room for them so a digest that fits here still fits when personalised.
PERSONALISATION_ROOM = 1_024
PREHEADER_LENGTH = 100
# The email column is 600 px with 32 px padding each side. Outlook sizes an image by its
# width attribute alone (it ignores max-width), so wider images are scaled down to this.
EMAIL_CONTENT_WIDTH = 536
DIGEST_FORMS: tuple[DigestForm, ...] = ("full", "summary", "titles")

# Names the issue folder already uses for other files: an article slug must not take them.
RESERVED_PAGE_NAMES = frozenset({"index.html", "email.html"})
_SAFE_PAGE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.html", re.ASCII)

_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip
# Any "%%" in outside text would look like the start of a placeholder to delivery.
_PLACEHOLDER_LIKE = re.compile("%(?=%)")
_ZWNJ = "\u200c"


def default_theme_dir() -> Path:
    """The bundled theme: publisher/templates in a wheel, else templates/ at the repo root."""
    package = Path(__file__).resolve().parent.parent
    bundled = package / "templates"
    return bundled if bundled.is_dir() else package.parent / "templates"


def make_environment(
    settings: Settings, *, bytecode_cache: jinja2.BytecodeCache | None = None
) -> jinja2.Environment:
    """A Jinja2 environment whose templates come from site.theme_dir first, then the default.

    Autoescaping is on for every .html template; an undefined variable is an error. A
    `bytecode_cache` spares recompiling unchanged templates on every run (keyed by source).
    """
    default = default_theme_dir()
    if not default.is_dir():
        raise RenderError(
            "the default theme is missing", where=str(default), hint="reinstall publisher"
        )
    search = [default]
    if settings.site.theme_dir:
        theme = settings.resolve(settings.site.theme_dir)
        if not theme.is_dir():
            raise ConfigError(
                [
                    f"[site] theme_dir: folder {theme} not found; create it, or set "
                    'theme_dir = "" to use the default theme'
                ],
                where=str(settings.source_file),
            )
        search.insert(0, theme)
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader([jinja2.FileSystemLoader(path) for path in search]),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
        bytecode_cache=bytecode_cache,
    )
    zone = settings.zone
    env.filters.update(
        date=_date_filter(settings, zone),
        # HTML's datetime attribute allows at most three digits of a second's fraction.
        isodate=lambda value: _local(value, zone).isoformat(timespec="seconds"),
        text=text.html_to_text,
        fit_images=_fit_images,
        wrap=lambda value: text.wrap(str(value)),
        heading=lambda value, underline="=": text.heading(str(value), underline),
    )
    return env


def render_digest(env: jinja2.Environment, settings: Settings, content: IssueContent) -> Digest:
    """email.html (CSS inlined) and email.txt, in the richest form that Gmail will not clip.

    Full articles first; if too big, summaries with "Read more" links; then titles only.
    """
    content = _defuse_placeholders(content)
    preheader = _preheader(content)
    budget = EMAIL_SIZE_LIMIT - PERSONALISATION_ROOM
    html = ""
    form: DigestForm = "full"
    for form in DIGEST_FORMS:
        raw = _render(env, "email.html", **_digest_context(settings, content, form, preheader))
        # Inlining only adds bytes: skip the costly step when the raw page is already too big.
        if len(raw.encode()) > budget and form != DIGEST_FORMS[-1]:
            continue
        html = _inline_css(raw)
        if len(html.encode()) <= budget:
            break
    else:
        log.warning(
            "digest of issue %d is %d bytes even with titles only; Gmail will clip it",
            content.summary.number,
            len(html.encode()),
        )
    body = _render(env, "email.txt", **_digest_context(settings, content, form, preheader))
    return Digest(
        subject=content.summary.title,
        preheader=preheader,
        html=html,
        text=text.limit_line_octets(body),
        form=form,
    )


def render_issue_pages(
    env: jinja2.Environment, settings: Settings, content: IssueContent
) -> dict[str, bytes]:
    """The issue's web version (index.html) and one permalink page per local article."""
    common = _page_context(settings, root="../")
    issue = content.summary
    pages = {
        "index.html": _render(
            env, "issue.html", **common, issue=issue, articles=content.articles, canonical=issue.url
        ).encode()
    }
    for item in content.articles:
        if not item.is_local:
            continue  # an upstream article lives at its original address
        name = f"{item.article.slug}.html"
        if name in pages or name in RESERVED_PAGE_NAMES or not _SAFE_PAGE_NAME.fullmatch(name):
            raise RenderError(
                f"article slug {item.article.slug!r} cannot name a page in the issue folder",
                where=item.article.source,
                hint="give the article another slug in its front matter",
            )
        pages[name] = _render(
            env, "article.html", **common, issue=issue, item=item, canonical=item.url
        ).encode()
    return pages


def render_archive(
    env: jinja2.Environment, settings: Settings, issues: Sequence[IssueSummary]
) -> bytes:
    """issues/index.html: every issue, newest first, with its date and article titles."""
    newest_first = sorted(issues, key=lambda i: (i.published_at, i.number), reverse=True)
    context = _page_context(settings, root="")
    return _render(
        env, "archive.html", **context, issues=newest_first, canonical=settings.site.url
    ).encode()


def render_assets(env: jinja2.Environment, settings: Settings) -> dict[str, bytes]:
    """Files for the issues/ root that every page links to."""
    return {"style.css": _render(env, "style.css", site=settings.site).encode()}


# -- contexts ---------------------------------------------------------------------------------


def _page_context(settings: Settings, *, root: str) -> dict[str, Any]:
    base = settings.site.url
    return {
        "site": settings.site,
        "root": root,  # relative path from the page to the issues/ root
        "feeds": {
            "rss": f"{base}feed.xml",
            "atom": f"{base}atom.xml",
            "json": f"{base}feed.json",
            "issues": f"{base}issues.xml",
        },
        "subscribe_url": f"{base}subscribe",
    }


def _digest_context(
    settings: Settings, content: IssueContent, form: DigestForm, preheader: str
) -> dict[str, Any]:
    return {
        "site": settings.site,
        "subject": content.summary.title,
        "issue": content.summary,
        "articles": content.articles,
        "form": form,
        "preheader": preheader,
        "greeting": PLACEHOLDER_GREETING,
        "unsubscribe_url": PLACEHOLDER_UNSUBSCRIBE_URL,
    }


def _preheader(content: IssueContent) -> str:
    """The inbox preview line: the lead article's summary, else the titles."""
    if content.articles and content.articles[0].article.summary.strip():
        return shorten(content.articles[0].article.summary, PREHEADER_LENGTH)
    titles = " · ".join(item.article.title for item in content.articles)
    return shorten(titles or content.summary.title, PREHEADER_LENGTH)


def _defuse_placeholders(content: IssueContent) -> IssueContent:
    """Break up "%%" in outside text so delivery fills in only the placeholders we put there."""

    def clean(value: str) -> str:
        return _PLACEHOLDER_LIKE.sub("%" + _ZWNJ, value) if "%%" in value else value

    def clean_item(item: PublishedArticle) -> PublishedArticle:
        a = item.article
        fields = {
            "title": a.title,
            "summary": a.summary,
            "content_html": a.content_html,
            "author": a.author,
            "publication": a.publication,
        }
        changed: dict[str, Any] = {
            k: clean(v) for k, v in fields.items() if v is not None and "%%" in v
        }
        return replace(item, article=replace(a, **changed)) if changed else item

    summary = content.summary
    return replace(
        content,
        summary=replace(summary, title=clean(summary.title)),
        articles=tuple(clean_item(item) for item in content.articles),
    )


# -- helpers ----------------------------------------------------------------------------------


_PREMAILER_OPTIONS: dict[str, Any] = {
    "strip_important": False,  # the @media block overrides inline styles only with !important
    "allow_network": False,  # no <link> is fetched: a theme cannot make rendering go online
    "disable_validation": True,  # email-only properties (mso-*) are fine; skip cssutils' noise
    "disable_basic_attributes": ["height"],  # "height:auto" must not become height="auto"
}


@functools.cache
def _inliner_class() -> type[Any]:
    """premailer with its per-stylesheet work remembered (imported on first use: premailer and
    cssutils cost a tenth of a second, and only publishing needs them).

    Every issue of a theme carries the same stylesheet, yet premailer re-serialises each rule
    with cssutils on every call: half the time of a rebuild. Both methods depend only on their
    arguments and the fixed options above, and transform() does not mutate their results.
    """
    # premailer imports requests (a third of its import time, ~35 ms) only to fetch <link>ed
    # stylesheets, which allow_network=False forbids: it is loaded when first used, if ever.
    _import_lazily("requests")
    from premailer import Premailer

    class Inliner(Premailer):  # type: ignore[misc]
        def _parse_style_rules(self, css_body: str, ruleset_index: int) -> Any:
            return _style_rules(css_body, ruleset_index)

        def _css_rules_to_string(self, rules: Any) -> str:
            return _leftover_css(tuple(rules))

    return Inliner


class _Deferred(types.ModuleType):
    """Stands in for a module in sys.modules; the first attribute read imports the real one
    (which then replaces it in sys.modules) and is answered from it, as is every later read."""

    def __getattr__(self, attribute: str) -> Any:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attribute)


def _import_lazily(name: str) -> None:
    """Let `import name` succeed without running the module until something uses it.

    (importlib.util.LazyLoader cannot do this on Python 3.11: the import statement itself
    reads the module's __spec__, which loads it.)
    """
    if name not in sys.modules:
        sys.modules[name] = _Deferred(name)


@functools.lru_cache(maxsize=16)
def _style_rules(css_body: str, ruleset_index: int) -> Any:
    from premailer import Premailer

    inliner = _inliner_class()(**_PREMAILER_OPTIONS)
    return Premailer._parse_style_rules(inliner, css_body, ruleset_index)


@functools.lru_cache(maxsize=16)
def _leftover_css(rules: tuple[Any, ...]) -> str:
    # Keyed by the rule objects _style_rules hands out, so a cache hit there is one here.
    from premailer import Premailer

    inliner = _inliner_class()(**_PREMAILER_OPTIONS)
    result: str = Premailer._css_rules_to_string(inliner, list(rules))
    return result


def _inline_css(html: str) -> str:
    """Move every style rule that can be inlined into style attributes; keep @media rules
    (with !important) and pseudo-classes in <style>."""
    inliner = _inliner_class()(**_PREMAILER_OPTIONS)
    try:
        out: str = inliner.transform(html, pretty_print=False)
    except Exception as exc:  # premailer raises plain exceptions from cssutils and lxml
        raise RenderError(
            f"could not inline the CSS: {type(exc).__name__}: {_one_line(str(exc))}",
            where="email.html",
            hint="check the theme's email.css",
        ) from exc
    return out if out.endswith("\n") else out + "\n"


def _render(env: jinja2.Environment, name: str, **context: Any) -> str:
    """Render one template; any template mistake becomes a one-line RenderError at file:line."""
    try:
        return env.get_template(name).render(context)
    except jinja2.TemplateSyntaxError as exc:
        where = f"{exc.filename or exc.name or name}:{exc.lineno}"
        raise RenderError(_one_line(exc.message or str(exc)), where=where, hint=_HINT) from None
    except Exception as exc:
        found = _template_frame(exc.__traceback__)
        if found is None and not isinstance(exc, jinja2.TemplateError):
            raise  # a bug in publisher, not in a template
        where = f"{found[0]}:{found[1]}" if found else name
        message = _one_line(str(exc)) or type(exc).__name__
        if not isinstance(exc, jinja2.TemplateError):
            message = f"{type(exc).__name__}: {message}"
        raise RenderError(message, where=where, hint=_HINT) from None


_HINT = "fix the template, or remove it from site.theme_dir to use the default theme"


def _template_frame(tb: TracebackType | None) -> tuple[str, int] | None:
    """The innermost traceback frame inside a template (Jinja rewrites frames to point there)."""
    found = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.endswith(".py") and not filename.startswith("<"):
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _fit_images(fragment: str) -> Markup:
    """Scale down the width/height attributes of images wider than the email column."""
    if "<img" not in fragment:
        return Markup(fragment)  # noqa: S704 (content_html is sanitized by the sources)
    root = lxml.html.fragment_fromstring(fragment, create_parent="div")
    changed = False
    for img in root.iter("img"):
        width, height = img.get("width", ""), img.get("height", "")
        if not width.isdigit() or int(width) <= EMAIL_CONTENT_WIDTH:
            continue
        if height.isdigit():
            img.set("height", str(round(int(height) * EMAIL_CONTENT_WIDTH / int(width))))
        img.set("width", str(EMAIL_CONTENT_WIDTH))
        changed = True
    if not changed:
        return Markup(fragment)  # noqa: S704 (as above)
    html = lxml.html.tostring(root, encoding="unicode")
    return Markup(html[len("<div>") : -len("</div>")])  # noqa: S704 (re-serialized sanitized HTML)


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _local(value: datetime, zone: ZoneInfo) -> datetime:
    return value.astimezone(zone)


def _human_date(value: datetime, zone: ZoneInfo) -> str:
    """ "24 November 2026": English month names, so output never depends on the process locale."""
    local = _local(value, zone)
    return f"{local.day} {_MONTHS[local.month - 1]} {local.year}"


def _date_filter(settings: Settings, zone: ZoneInfo) -> Callable[[datetime], str]:
    """The `date` filter: "24 November 2026" for [site] language "en", else that language's
    own long date from Babel's CLDR data ("24. November 2026" for "de", "November 24, 2026"
    for "en-US"): a theme can translate its words, but not the month names."""
    language = settings.site.language
    if language.lower() in ("", "en"):
        return lambda value: _human_date(value, zone)
    # Imported here: an English site never pays for Babel (~15 ms).
    from babel import Locale, UnknownLocaleError
    from babel.dates import format_date

    try:
        locale = Locale.parse(language, sep="-")
    except (UnknownLocaleError, ValueError):
        raise ConfigError(
            [
                f"[site] language: no dates known for {language!r}; use a language tag such "
                "as 'de', 'fr', 'pt-BR' or 'en'"
            ],
            where=str(settings.source_file),
        ) from None

    @functools.lru_cache(maxsize=1024)
    def formatted(day: date) -> str:
        return str(format_date(day, format="long", locale=locale))

    return lambda value: formatted(_local(value, zone).date())


# -- server (issue 7): what the server's own pages and mails share with the site ---------------


def page_context(settings: Settings, *, root: str) -> dict[str, Any]:
    """What base.html needs besides `canonical`: the site, the feeds, the subscribe URL."""
    return _page_context(settings, root=root)


def render_template(env: jinja2.Environment, name: str, **context: Any) -> str:
    """Render one theme template; a template mistake is a one-line RenderError at file:line."""
    return _render(env, name, **context)
