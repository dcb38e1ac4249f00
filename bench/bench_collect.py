"""Benchmark: collect 1,000 generated articles into a fresh store, then again unchanged."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import ROOT, print_table, run_command, run_python, write_articles

COUNT = 1000
SETTINGS = """\
[site]
title = "Bench"
url = "https://bench.example.org/"
[store]
path = "state/bench.db"
"""
COLLECT = """
from datetime import UTC, datetime
from pathlib import Path
from publisher.pipeline import collect
from publisher.settings import load_settings
report = collect(load_settings(Path('settings.toml')), now=datetime.now(UTC))
print('counts', report.new, report.updated, report.unchanged, report.failed)
"""


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-collect-") as tmp:
        site = Path(tmp)
        (site / "settings.toml").write_text(SETTINGS, encoding="utf-8")
        write_articles(site / "articles", COUNT)
        first = run_python(COLLECT, cwd=site)
        second = run_python(COLLECT, cwd=site)
        cli = run_command([str(ROOT / ".venv/bin/publisher"), "collect"], cwd=site)
        counts = [line for line in first.stdout.splitlines() if line.startswith("counts")]
        assert counts == [f"counts {COUNT} 0 0 0"], counts
    rows = [
        [
            "first collect (1,000 new)",
            f"{first.seconds:.2f}",
            "<= 2.00",
            f"{first.peak_rss_mb:.0f}",
        ],
        ["unchanged re-run", f"{second.seconds:.3f}", "<= 0.30", f"{second.peak_rss_mb:.0f}"],
        ["`publisher collect` unchanged, whole process", f"{cli.seconds:.3f}", "-", "-"],
    ]
    print_table(
        "collect: 1,000 articles (~750 words; .txt/.md/.html), in-process wall time",
        ["run", "seconds", "target", "peak RSS MB (<= 150)"],
        rows,
    )


if __name__ == "__main__":
    main()
