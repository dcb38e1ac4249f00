"""Load settings.toml (plus PUBLISHER_<SECTION>__<KEY> overrides) into typed, frozen settings."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from publisher.errors import ConfigError

ENV_PREFIX = "PUBLISHER_"
# A BCP 47 tag in its common shape: a language, then subtags (script, region, variant).
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SiteSettings(_Section):
    title: Annotated[str, Field(min_length=1)]
    url: str
    description: str = ""
    language: str = "en"
    timezone: str = "UTC"
    author: str = ""
    email: str = ""
    theme_dir: str = ""

    @field_validator("url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an absolute http(s) URL such as 'https://example.org/news/'")
        return value if value.endswith("/") else value + "/"

    @field_validator("language")
    @classmethod
    def _language_tag(cls, value: str) -> str:
        if value and not _LANGUAGE_TAG.fullmatch(value):
            raise ValueError("must be a language tag such as 'en', 'de' or 'pt-BR' (BCP 47)")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name such as 'Europe/Berlin' or 'UTC'"
            ) from None
        return value


class ArticlesSettings(_Section):
    dir: str = "articles"
    max_bytes: Annotated[int, Field(gt=0)] = 1_000_000


class StoreSettings(_Section):
    path: str = "state/publisher.db"
    url: str = ""  # a SQLAlchemy database URL; when set it wins over `path`


class OutputSettings(_Section):
    dir: str = "issues"


class IssueSettings(_Section):
    max_articles: Annotated[int, Field(gt=0)] = 20
    order: Literal["newest", "oldest"] = "newest"


class FeedsSettings(_Section):
    max_items: Annotated[int, Field(gt=0)] = 50


class SmtpSettings(_Section):
    host: str = "localhost"
    port: Annotated[int, Field(gt=0, lt=65536)] = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password_env: str = "PUBLISHER_SMTP_PASSWORD"  # noqa: S105 (a variable name, not a secret)
    timeout: Annotated[float, Field(gt=0)] = 30.0
    # --- delivery (issue 5): the connection pool and the rate limit
    connections: Annotated[int, Field(ge=1, le=50)] = 4
    rate_per_second: Annotated[float, Field(ge=0)] = 0.0  # 0 = no limit
    rate_per_hour: Annotated[int, Field(ge=0)] = 0  # 0 = no limit
    local_hostname: str = ""  # the name sent in EHLO; "" = this machine's FQDN


_LIST_ID = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)+$")


class DeliverySettings(_Section):
    from_address: str = ""
    token_key_env: str = "PUBLISHER_TOKEN_KEY"  # noqa: S105 (a variable name, not a secret)
    # --- delivery (issue 5)
    envelope_from: str = ""  # MAIL FROM (bounces go there); "" = the From address
    list_id: str = ""  # RFC 2919 list id such as "dispatch.example.org"; "" = from the site
    unsubscribe_url: str = ""  # "" = <site.url>unsubscribe; the token is added as ?token=
    unsubscribe_mailto: str = ""  # address for mailto: unsubscribes; "" = the From address
    greeting: str = "Hello"  # "Hello Jane," or "Hello,"
    max_attempts: Annotated[int, Field(ge=1)] = 6
    retry_base: Annotated[float, Field(ge=0)] = 300.0  # seconds before the first retry
    retry_max: Annotated[float, Field(ge=0)] = 21600.0  # the longest wait between retries
    bounce_threshold: Annotated[int, Field(ge=1)] = 3
    claim_timeout: Annotated[float, Field(gt=0)] = 900.0
    dry_run_dir: str = "state/dry-run"
    dkim_selector: str = ""  # "" = no DKIM signature
    dkim_domain: str = ""  # "" = the From address's domain
    dkim_key_env: str = "PUBLISHER_DKIM_KEY_FILE"

    @field_validator("from_address", "envelope_from", "unsubscribe_mailto")
    @classmethod
    def _address(cls, value: str) -> str:
        if value and "@" not in parseaddr(value)[1]:
            raise ValueError("must be an email address such as 'News <news@example.org>'")
        return value

    @field_validator("unsubscribe_url")
    @classmethod
    def _https_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme != "https" or not parts.netloc):
            raise ValueError("must be an https:// URL (RFC 8058 one-click needs HTTPS)")
        return value

    @field_validator("list_id")
    @classmethod
    def _list_id(cls, value: str) -> str:
        if value and not _LIST_ID.match(value):
            raise ValueError("must look like 'news.example.org' (RFC 2919: label.domain)")
        return value


# ---------------------------------------------------------------------------- upstream feeds


class FeedSource(_Section):
    """One `[[sources.feeds]]` entry: an upstream RSS, Atom or JSON feed to collect from."""

    url: Annotated[str, Field(max_length=2000)]
    # Credited as the publication of every article from this feed, and named in reports.
    name: Annotated[str, Field(min_length=1)]
    # Keep only entries mentioning one of these words or phrases (title, tags or text).
    include: tuple[str, ...] = ()
    # Drop entries mentioning any of these.
    exclude: tuple[str, ...] = ()
    # Override [sources] max_age_days / min_interval_minutes for this feed.
    max_age_days: Annotated[int, Field(ge=0)] | None = None
    min_interval_minutes: Annotated[int, Field(ge=0)] | None = None

    @field_validator("url")
    @classmethod
    def _feed_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                "must be an absolute http(s) URL such as 'https://example.org/feed.xml'"
            )
        return value.strip()

    @field_validator("include", "exclude")
    @classmethod
    def _keywords(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        words = tuple(word.strip() for word in value)
        if any(not word for word in words):
            raise ValueError("keywords must not be empty")
        return words


class SourcesSettings(_Section):
    concurrency: Annotated[int, Field(ge=1, le=64)] = 8
    connect_timeout: Annotated[float, Field(gt=0)] = 10.0
    read_timeout: Annotated[float, Field(gt=0)] = 30.0
    # Whole-response deadline: a server trickling bytes cannot hold a poll forever.
    total_timeout: Annotated[float, Field(gt=0)] = 120.0
    max_bytes: Annotated[int, Field(gt=0)] = 10_000_000
    min_interval_minutes: Annotated[int, Field(ge=0)] = 30
    max_age_days: Annotated[int, Field(ge=0)] = 30  # 0: no limit
    backoff_minutes: Annotated[int, Field(gt=0)] = 15
    backoff_max_hours: Annotated[int, Field(gt=0)] = 24
    parse_processes: Annotated[int, Field(ge=0, le=64)] = 0  # 0: one per CPU core
    feeds: tuple[FeedSource, ...] = ()

    @field_validator("feeds")
    @classmethod
    def _distinct_urls(cls, value: tuple[FeedSource, ...]) -> tuple[FeedSource, ...]:
        seen: set[str] = set()
        for feed in value:
            if feed.url in seen:
                raise ValueError(f"{feed.url} is listed twice; keep one [[sources.feeds]] entry")
            seen.add(feed.url)
        return value


# --- server (issue 7): `publisher serve`
class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, lt=65536)] = 8000  # 0 = any free port
    # Peers whose X-Forwarded-For / X-Forwarded-Proto headers are believed (IPs or networks).
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    # Origins besides site.url's that may post the subscribe form ("https://example.org").
    allowed_origins: tuple[str, ...] = ()
    confirm_ttl_hours: Annotated[float, Field(gt=0)] = 48.0
    confirm_resend_minutes: Annotated[float, Field(ge=0)] = 10.0
    rate_window: Annotated[float, Field(gt=0)] = 3600.0  # seconds
    subscribe_limit: Annotated[int, Field(ge=0)] = 10  # per IP per window; 0 = no limit
    mail_per_hour: Annotated[int, Field(ge=0)] = 300  # confirmation mails, all IPs; 0 = none
    max_body_bytes: Annotated[int, Field(ge=256, le=1_048_576)] = 4096
    cache_mb: Annotated[int, Field(ge=0)] = 64  # static files kept in memory

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not an IP address or network such as '10.0.0.0/8'"
                ) from None
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for item in value:
            parts = urlsplit(item)
            if (
                parts.scheme not in ("http", "https")
                or not parts.netloc
                or parts.path not in ("", "/")
                or parts.query
                or parts.fragment
            ):
                raise ValueError(f"{item!r} is not an origin such as 'https://example.org'")
            out.append(f"{parts.scheme}://{parts.netloc}".lower())
        return tuple(out)


# --- scheduling (issue 6)


class ScheduleSettings(_Section):
    # Each job: a crontab line ("0 7 * * mon-fri"), an interval ("every 30m"), or "" for never.
    collect: str = ""
    publish: str = ""
    send: str = ""
    send_after_publish: bool = True
    misfire_grace_time: Annotated[int, Field(ge=1)] = 3600  # seconds a missed run may be late
    timezone: str = ""  # "" = [site] timezone
    lock_timeout: Annotated[int, Field(ge=5)] = 120  # seconds without a heartbeat: holder dead

    @field_validator("collect", "publish", "send")
    @classmethod
    def _timespec(cls, value: str) -> str:
        from publisher.timespec import parse_timespec

        if value.strip():
            parse_timespec(value)  # a ValueError here names the key with the problem
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return SiteSettings._known_zone(value) if value else value


class Settings(_Section):
    site: SiteSettings
    articles: ArticlesSettings = ArticlesSettings()
    store: StoreSettings = StoreSettings()
    output: OutputSettings = OutputSettings()
    issue: IssueSettings = IssueSettings()
    feeds: FeedsSettings = FeedsSettings()
    smtp: SmtpSettings = SmtpSettings()
    delivery: DeliverySettings = DeliverySettings()
    sources: SourcesSettings = SourcesSettings()
    server: ServerSettings = ServerSettings()
    schedule: ScheduleSettings = ScheduleSettings()  # issue 6
    # Relative paths in the file are relative to the folder the file is in.
    base_dir: Path = Path()
    source_file: Path = Path("settings.toml")

    def resolve(self, relative: str) -> Path:
        return (self.base_dir / relative).resolve()

    @property
    def articles_dir(self) -> Path:
        return self.resolve(self.articles.dir)

    @property
    def output_dir(self) -> Path:
        return self.resolve(self.output.dir)

    @property
    def database_url(self) -> str:
        if self.store.url:
            return self.store.url
        return f"sqlite:///{self.resolve(self.store.path)}"

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.site.timezone)

    @property
    def schedule_zone(self) -> zoneinfo.ZoneInfo:
        """The zone cron lines in [schedule] are read in (issue 6)."""
        return zoneinfo.ZoneInfo(self.schedule.timezone or self.site.timezone)

    def secret(self, env_name: str) -> str | None:
        """A secret from the environment variable the settings name; never from the file."""
        return os.environ.get(env_name) or None


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, override from the environment, validate; report every problem at once."""
    where = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            ["file not found; copy the bundled settings.toml or pass --settings FILE"],
            where=where,
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"cannot read the file ({exc})"], where=where) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"not valid TOML: {exc}"], where=where) from None

    problems = _apply_env_overrides(raw, os.environ if environ is None else environ)
    for reserved in ("base_dir", "source_file"):
        if reserved in raw:
            problems.append(f"{reserved}: unknown key; allowed sections: {_allowed(Settings)}")
            raw.pop(reserved)
    raw["base_dir"] = path.resolve().parent
    raw["source_file"] = path
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_describe(err) for err in exc.errors())
        settings = None
    if problems or settings is None:
        raise ConfigError(problems, where=where)
    return settings


def _apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        model = Settings.model_fields.get(section)
        section_type = model.annotation if model else None
        if not (isinstance(section_type, type) and issubclass(section_type, _Section)):
            problems.append(f"{name}: no section [{section}]; sections: {_allowed(Settings)}")
            continue
        if key not in section_type.model_fields:
            problems.append(
                f"{name}: [{section}] has no key {key!r}; keys: {_allowed(section_type)}"
            )
            continue
        target = raw.setdefault(section, {})
        if isinstance(target, dict):
            target[key] = _parse_env_value(value)
    return problems


def _parse_env_value(value: str) -> Any:
    # Lists and tables come as TOML; scalars stay strings and pydantic converts them.
    if value.startswith(("[", "{")):
        try:
            return tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            return value
    return value


def _allowed(model: type[BaseModel]) -> str:
    hidden = {"base_dir", "source_file"}
    return ", ".join(name for name in model.model_fields if name not in hidden)


def _describe(err: Mapping[str, Any]) -> str:
    loc = [str(part) for part in err["loc"]]
    key = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else loc[0] if loc else "?"
    kind = err["type"]
    if kind == "extra_forbidden":
        parent: type[BaseModel] = Settings
        for part in loc[:-1]:
            info = parent.model_fields.get(part)
            # A list of tables ([[sources.feeds]]) names its item model in the annotation's args.
            annotation = info.annotation if info else None
            for candidate in (annotation, *get_args(annotation)):
                if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                    parent = candidate
                    break
        return f"{key}: unknown key; allowed: {_allowed(parent)}"
    if kind == "missing":
        return f"{key}: required, but missing"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{key}: {message} (got {err.get('input')!r})"
