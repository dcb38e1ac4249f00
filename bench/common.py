"""Shared pieces of the benchmarks: generated articles, measured child processes, tables."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORDS = (
    "harbour council ferry island winter market street library river bridge school budget "
    "vote plan city crew light cable repair spring summer autumn evening morning report "
    "people family garden coffee bread station train road night weather storm coast boat "
    "fish price water power energy museum theatre music festival book reader writer editor "
    "mayor board member week month year region village north south east west old new small "
    "large quiet busy early late open closed first last public private local national"
).split()


def sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[:1].upper() + text[1:] + "."


def paragraph(rng: random.Random, words: int = 60) -> str:
    parts, left = [], words
    while left > 0:
        n = min(left, rng.randint(8, 20))
        parts.append(sentence(rng, n))
        left -= n
    return " ".join(parts)


def write_articles(folder: Path, count: int, words: int = 750, seed: int = 7) -> None:
    """`count` articles of about `words` words, a third each as .txt, .md and .html."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        paras = [paragraph(rng) for _ in range(max(1, words // 60))]
        title = sentence(rng, 6).rstrip(".")
        kind = i % 3
        if kind == 0:
            body = "By Maren Holt – The Bench Post\n" + "\n".join(paras) + "\n"
            (folder / f"article-{i:05d}.txt").write_text(body, encoding="utf-8")
        elif kind == 1:
            body = f"---\ntitle: {title} {i}\ntags: [bench]\n---\n" + "\n\n".join(paras) + "\n"
            (folder / f"article-{i:05d}.md").write_text(body, encoding="utf-8")
        else:
            html = "".join(f"<p>{p}</p>\n" for p in paras)
            body = f"<html><head><title>{title} {i}</title></head><body>{html}</body></html>"
            (folder / f"article-{i:05d}.html").write_text(body, encoding="utf-8")


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_rss_mb: float
    stdout: str


def run_python(code: str, cwd: Path | None = None, python: str = sys.executable) -> Measured:
    """Run `code` in a fresh interpreter; its wall time and peak RSS (this child only)."""
    wrapper = (
        "import resource, sys, time\n"
        "t0 = time.perf_counter()\n"
        f"exec(compile({code!r}, '<bench>', 'exec'))\n"
        "elapsed = time.perf_counter() - t0\n"
        "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(f'@@ {elapsed} {rss}')\n"
    )
    done = subprocess.run(
        [python, "-c", wrapper], cwd=cwd, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child failed:\n{done.stderr}")
    marker = [line for line in done.stdout.splitlines() if line.startswith("@@ ")][-1]
    _, seconds, rss = marker.split()
    return Measured(float(seconds), float(rss), done.stdout)


def run_command(args: list[str], cwd: Path | None = None) -> Measured:
    """Wall time and peak RSS of a whole command (interpreter start and exit included); the
    RSS is that of its biggest process (the command or a worker it waited for)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        process = subprocess.Popen(args, cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - t0
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode not in (0, 1):
            raise RuntimeError(f"{args} failed:\n{err.read()}")
        return Measured(elapsed, usage.ru_maxrss / 1024, out.read())


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
