"""The wheel as users install it: built from this checkout, it publishes on its own.

The test environment runs publisher from the checkout (an editable install), where the
theme and the migrations sit beside the code; only a real wheel shows what ships.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0 and "Could not find a version" in done.stderr:
        pytest.skip(f"pip could not fetch the build backend (no package index?): {done.stderr}")
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("publisher-*.whl")
    return built


def test_the_wheel_carries_the_theme_and_the_migrations_and_nothing_of_the_checkout(
    wheel: Path,
) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    theme = {p.name for p in (ROOT / "templates").iterdir() if p.is_file()}
    migrations = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "publisher" / "migrations").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }

    assert {f"publisher/templates/{name}" for name in theme} <= names
    assert migrations <= names
    assert not [n for n in names if n.startswith(("tests/", "bench/", "articles/", "issues/"))]


def test_publisher_installed_from_the_wheel_builds_the_sample_site(
    wheel: Path, tmp_path: Path
) -> None:
    target = tmp_path / "installed"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "-t", target, wheel],
        check=True,
        timeout=300,
    )
    site = tmp_path / "site"
    shutil.copytree(ROOT / "articles", site / "articles")
    shutil.copy(ROOT / "settings.toml", site)
    # The installed copy first on the path, so the checkout's editable install is not used;
    # the dependencies come from the test environment.
    code = (
        "import sys; sys.path.insert(0, sys.argv.pop(1)); import publisher; "
        "print(publisher.__file__, file=sys.stderr); "
        "from publisher.cli import main; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(target), "build"],
        cwd=site,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.startswith(str(target / "publisher" / "__init__.py"))
    issue = next((site / "issues").glob("20*"))
    assert {"index.html", "email.html", "email.txt", "email.eml"} <= {
        p.name for p in issue.iterdir()
    }
    assert "issues/feed.xml" in done.stdout
    # The default theme came from the wheel: its stylesheet is the checkout's.
    assert (site / "issues" / "style.css").read_bytes() == (
        ROOT / "templates" / "style.css"
    ).read_bytes()
