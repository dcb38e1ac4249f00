"""The pipeline package: every use case resolves lazily, and `collect` stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import publisher.pipeline as pipeline


def test_every_typed_name_resolves_from_its_home_module() -> None:
    tree = ast.parse(Path(pipeline.__file__).read_text(encoding="utf-8"))
    typed = {
        alias.asname or alias.name: node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("publisher.")
        for alias in node.names
    }
    assert set(typed) == set(pipeline._HOMES)
    for name, module in typed.items():
        assert module == f"publisher.pipeline.{pipeline._HOMES[name]}"
        assert getattr(pipeline, name) is getattr(sys.modules[module], name)


def test_collect_loads_no_renderer_smtp_or_http_code() -> None:
    code = (
        "import sys, publisher.pipeline as p; p.collect; "
        "print(sorted(m for m in ('jinja2', 'premailer', 'smtplib', 'httpx', 'feedparser') "
        "if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_feed_polling_process_leaves_feedparser_to_the_parse_workers() -> None:
    code = (
        "import sys, publisher.pipeline.feed_collection; "
        "print(sorted(m for m in ('httpx', 'feedparser', 'chardet') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['httpx']"
