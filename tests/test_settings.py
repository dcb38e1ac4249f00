"""Settings: the shipped file loads, unknown keys and bad values are all reported at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from publisher.errors import ConfigError
from publisher.settings import load_settings
from tests.conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = '[site]\ntitle = "T"\nurl = "https://example.org/news"\n'


def test_shipped_settings_load_with_every_key_commented() -> None:
    shipped = ROOT / "settings.toml"
    settings = load_settings(shipped, environ={})
    assert settings.site.url == "https://dispatch.example.org/"
    assert settings.articles_dir == ROOT / "articles"
    lines = shipped.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if re.match(r"^[a-z_]+\s*=", line):
            assert lines[number - 1].startswith("#"), f"settings.toml:{number + 1} has no comment"


def test_relative_paths_are_relative_to_the_settings_file(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), environ={})
    assert settings.site.url == "https://example.org/news/"  # a trailing slash is added
    assert settings.articles_dir == tmp_path / "articles"
    assert settings.database_url == f"sqlite:///{tmp_path / 'state' / 'publisher.db'}"


def test_every_problem_is_reported_at_once_naming_file_key_and_what_is_allowed(
    tmp_path: Path,
) -> None:
    path = write(
        tmp_path,
        '[site]\ntitle = "T"\nurl = "example.org"\ntimezone = "Mars/Olympus"\ncolour = "red"\n'
        'language = "English"\n'
        "[issue]\nmax_articles = 0\norder = 'random'\n"
        "[sotre]\npath = 'x.db'\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert message.startswith(f"{path}: 7 problems")
    assert "[site] url: must be an absolute http(s) URL" in message
    assert "[site] timezone: unknown time zone 'Mars/Olympus'" in message
    assert "[site] language: must be a language tag such as 'en', 'de' or 'pt-BR'" in message
    assert "[site] colour: unknown key; allowed: title, url," in message
    assert "[issue] max_articles: Input should be greater than 0" in message
    assert "[issue] order: Input should be 'newest' or 'oldest'" in message
    assert "sotre: unknown key; allowed: site, articles, store," in message


def test_missing_required_key_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[site\] url: required, but missing"):
        load_settings(write(tmp_path, '[site]\ntitle = "T"\n'), environ={})
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found; copy the bundled"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 4"):
        load_settings(write(tmp_path, MINIMAL + "oops = \n"), environ={})


def test_environment_overrides_win_over_the_file(tmp_path: Path) -> None:
    env = {
        "PUBLISHER_SITE__URL": "https://override.example.net/",
        "PUBLISHER_ISSUE__MAX_ARTICLES": "5",
        "PUBLISHER_SMTP__PORT": "2525",
        "PUBLISHER_SETTINGS": "ignored.toml",  # not an override: no section separator
    }
    settings = load_settings(write(tmp_path, MINIMAL), environ=env)
    assert settings.site.url == "https://override.example.net/"
    assert settings.issue.max_articles == 5
    assert settings.smtp.port == 2525


def test_bad_environment_overrides_name_the_variable(tmp_path: Path) -> None:
    env = {"PUBLISHER_SITE__COLOUR": "red", "PUBLISHER_NOPE__X": "1", "PUBLISHER_SMTP__PORT": "x"}
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, MINIMAL), environ=env)
    message = str(caught.value)
    assert "PUBLISHER_SITE__COLOUR: [site] has no key 'colour'" in message
    assert "PUBLISHER_NOPE__X: no section [nope]" in message
    assert "[smtp] port: Input should be a valid integer" in message


def test_secrets_come_only_from_the_named_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A password in the file itself is refused: the file names the variable instead.
    with pytest.raises(ConfigError, match=r"\[smtp\] password: unknown key"):
        load_settings(write(tmp_path, MINIMAL + '[smtp]\npassword = "hunter2"\n'), environ={})
    settings = load_settings(
        write(tmp_path, MINIMAL + '[smtp]\npassword_env = "MY_SMTP_SECRET"\n'), environ={}
    )
    monkeypatch.setenv("MY_SMTP_SECRET", "s3cret")
    assert settings.secret(settings.smtp.password_env) == "s3cret"
    assert "s3cret" not in repr(settings)
    monkeypatch.delenv("MY_SMTP_SECRET")
    assert settings.secret(settings.smtp.password_env) is None


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL), environ={})
    with pytest.raises(ValueError, match="frozen"):
        settings.site.title = "changed"  # type: ignore[misc]
