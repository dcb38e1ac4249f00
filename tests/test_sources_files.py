"""Article files: the plain form, Markdown and HTML, front matter, bad input."""

from __future__ import annotations

import re
from pathlib import Path
from zoneinfo import ZoneInfo

from publisher.sources.files import parse_article

UTC_ZONE = ZoneInfo("UTC")


def test_shared_corpus_article_reads_like_an_editor_expects(shared_dir: Path) -> None:
    path = shared_dir / "corpus" / "articles" / "000_a294275c7f261648.txt"
    article = parse_article(path.name, path.read_bytes(), UTC_ZONE)

    assert article.author == "Ahmed Kamel"
    assert article.publication == "Egypt Daily News"
    assert article.content_html.count("<p>") == 11
    headings = re.findall(r"<h2>(.*?)</h2>", article.content_html)
    assert headings == [
        "Ankara and Cairo in Focus",
        "Turkey’s Position and International Role",
        "Challenges to a Fragile Truce",
        "Regional Diplomacy and Broader Engagement",
        "Looking Ahead",
    ]
    assert "“genocidal”—a charge" in article.content_html
    assert "000_a294275c7f261648" not in article.title
    assert 20 <= len(article.title) <= 120
    assert article.title.startswith("Cairo and Ankara are set to take another step")
