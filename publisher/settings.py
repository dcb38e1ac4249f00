"""Load settings.toml (plus PUBLISHER_<SECTION>__<KEY> overrides) into typed, frozen settings."""

from __future__ import annotations

import os
import re
import tomllib
import zoneinfo
from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from publisher.errors import ConfigError

ENV_PREFIX = "PUBLISHER_"


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
            annotation = parent.model_fields[part].annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                parent = annotation
        return f"{key}: unknown key; allowed: {_allowed(parent)}"
    if kind == "missing":
        return f"{key}: required, but missing"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{key}: {message} (got {err.get('input')!r})"
