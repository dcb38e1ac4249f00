"""A throwaway PostgreSQL server for the store tests: its own data folder, a Unix socket only."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DATABASE = "publisher_test"


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL server programs (the newest), or one on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextmanager
def postgres_server(bin_dir: Path) -> Iterator[str]:
    """Start a server in a new folder (no TCP port, so nothing else on the machine is touched
    or in the way) and yield a SQLAlchemy URL of an empty database on it; stop and delete it
    afterwards. PostgreSQL refuses to run as root, so as root it runs as the postgres user."""
    root = Path(tempfile.mkdtemp(prefix="publisher-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"

    def run(*args: str | Path) -> None:
        done = subprocess.run(
            [*prefix, *map(str, args)], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{args[0]} failed:\n{done.stdout}{done.stderr}{tail}")

    pg_ctl = bin_dir / "pg_ctl"
    options = f"-k {root} -c listen_addresses= -c fsync=off -c full_page_writes=off"
    try:
        run(bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-sync")  # fmt: skip
        run(pg_ctl, "-D", data, "-l", log, "-o", options, "-w", "start")
        try:
            run(bin_dir / "createdb", "-h", root, "-U", "postgres", DATABASE)
            yield f"postgresql+psycopg://postgres@/{DATABASE}?host={root}"
        finally:
            run(pg_ctl, "-D", data, "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
