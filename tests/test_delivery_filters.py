"""Every kind of mail publisher sends, scored by SpamAssassin's own rules: no rule may cost points.

Debian's SpamAssassin (installed by `make spamassassin`) runs with its local rules only (-L:
no DNS blocklists, no network) and without Bayes, so the score depends on the message alone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest

from publisher import pipeline
from publisher.pipeline import Subscriptions
from publisher.settings import Settings
from publisher.store import Store
from tests.conftest import DATA, ROOT, Site
from tests.delivery_support import PUBLISHED, SEND_NOW, confirm_token, mail_body, smtp_settings
from tests.smtp_sink import SmtpSink

SPAMASSASSIN = shutil.which("spamassassin")
pytestmark = [
    pytest.mark.skipif(
        SPAMASSASSIN is None,
        reason="spamassassin is missing: `make spamassassin` installs Debian's (apt-get, as root)",
    ),
    pytest.mark.usefixtures("token_key"),
]

# SpamAssassin's own test string: any filter must score it as spam.
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
# A rule worth less than this is informational (HTML_MESSAGE is 0.001, NO_RECEIVED -0.0001).
COSTLY = 0.01


@dataclass(frozen=True)
class Verdict:
    score: float
    rules: dict[str, float]  # every rule that hit, with its points

    @property
    def costly(self) -> dict[str, float]:
        return {rule: points for rule, points in self.rules.items() if points >= COSTLY}


@pytest.fixture(scope="module")
def spam_check(tmp_path_factory: pytest.TempPathFactory) -> Callable[[bytes], Verdict]:
    home = tmp_path_factory.mktemp("spamassassin")
    prefs = home / "user_prefs"
    prefs.write_text("", encoding="utf-8")
    # HOME keeps SpamAssassin's per-user files (Bayes, reputation) out of the real home.
    environ = {**os.environ, "HOME": str(home)}

    def check(message: bytes) -> Verdict:
        assert SPAMASSASSIN is not None
        done = subprocess.run(
            [SPAMASSASSIN, "-L", "-t", "-p", str(prefs), "--cf", "use_bayes 0"],
            input=message,
            capture_output=True,
            env=environ,
            timeout=120,
            check=True,
        )
        return parse_report(done.stdout.decode("utf-8", "replace"))

    return check


def parse_report(out: str) -> Verdict:
    """The score from X-Spam-Status and the rules from the "Content analysis details" table."""
    status = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", out, re.M)
    table = out.split("Content analysis details:", 1)
    assert status is not None and len(table) == 2, f"no SpamAssassin report in:\n{out[:2000]}"
    rules = {
        name: float(points)
        for points, name in re.findall(r"^\s*(-?\d+(?:\.\d+)?) ([A-Z][A-Z0-9_]+)\s", table[1], re.M)
    }
    return Verdict(float(status.group(1)), rules)


def delivered_digest(site: Site, sink: SmtpSink) -> bytes:
    """Collect, publish and send the site's articles; the digest as the SMTP server got it."""
    settings = site.settings()
    pipeline.collect(settings, now=PUBLISHED - timedelta(hours=1))
    published = pipeline.publish(settings, now=PUBLISHED)
    assert published.issue is not None
    with Store.open(settings.database_url) as store:
        store.add_subscriber("juergen@example.org", "Jürgen Groß-Öztürk", now=PUBLISHED)
    report = pipeline.send(settings, now=SEND_NOW)
    assert report.sent == 1 and len(sink.messages) == 1
    return sink.messages[0].data


@pytest.fixture
def delivery(make_site: Callable[..., Site], smtp_sink: SmtpSink) -> Site:
    return make_site(extra=smtp_settings(smtp_sink))


def test_the_digest_of_the_bundled_sample_costs_no_points(
    delivery: Site, smtp_sink: SmtpSink, spam_check: Callable[[bytes], Verdict]
) -> None:
    shutil.copytree(ROOT / "articles", delivery.articles, dirs_exist_ok=True)

    verdict = spam_check(delivered_digest(delivery, smtp_sink))

    assert verdict.costly == {}, verdict.rules
    assert verdict.score <= 0.0


def test_a_long_digest_in_summary_form_costs_no_points(
    delivery: Site, smtp_sink: SmtpSink, spam_check: Callable[[bytes], Verdict]
) -> None:
    prose = (DATA / "prose.md").read_text(encoding="utf-8")
    for n in range(1, 21):  # ~24,000 words: past Gmail's clipping size, so summaries
        delivery.write(f"story-{n:02}.md", f"# Story {n} from the quay\n\n{prose}\n{prose}")

    data = delivered_digest(delivery, smtp_sink)
    verdict = spam_check(data)

    assert "Read more" in mail_body(data, "html")  # the summary form, as meant
    assert verdict.costly == {}, verdict.rules
    assert verdict.score <= 0.0


def test_the_confirmation_and_welcome_mails_cost_no_points(
    delivery: Site, spam_check: Callable[[bytes], Verdict]
) -> None:
    settings: Settings = delivery.settings()
    with Subscriptions(settings) as subscriptions:
        asked = subscriptions.subscribe("jane@example.org", now=PUBLISHED)
        assert asked.notice is not None
        confirmed = subscriptions.confirm(confirm_token(asked.notice), now=PUBLISHED)
        assert confirmed.notice is not None

    for notice in (asked.notice, confirmed.notice):
        verdict = spam_check(notice.data)
        assert verdict.costly == {}, (notice.data[:300], verdict.rules)


def test_the_check_itself_scores_spam_as_spam(
    delivery: Site, smtp_sink: SmtpSink, spam_check: Callable[[bytes], Verdict]
) -> None:
    # The same digest with the standard test string in an article: if this passed as
    # clean, the checks above would prove nothing.
    delivery.write("gtube.txt", f"A message for the filters\n\n{GTUBE}\n")

    verdict = spam_check(delivered_digest(delivery, smtp_sink))

    assert "GTUBE" in verdict.rules
    assert verdict.score >= 5.0
