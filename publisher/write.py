"""Write into issues/: an issue via a temp folder renamed into place; site files atomically."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from publisher.errors import WriteError

# Every temp name starts with this, so cleaning up never touches a user's own dotfiles.
TEMP_PREFIX = ".publisher-tmp-"


def safe_path(root: Path, relative: str) -> Path:
    """`root / relative`, refusing any name that could leave `root` (slugs, front matter...)."""
    pure = PurePosixPath(relative)
    if (
        not relative
        or "\\" in relative
        or "\x00" in relative
        or pure.is_absolute()
        or any(part in ("..", ".", "") for part in relative.split("/"))
    ):
        raise WriteError(
            f"refused to write {relative!r}: the name would leave the output folder",
            where=str(root),
            hint="check the article's slug and image paths",
        )
    return root.joinpath(*pure.parts)


def _write_files(folder: Path, files: Mapping[str, bytes], pool: ThreadPoolExecutor) -> None:
    """Write the files durably. Creating a file costs far more than its bytes here, and both
    that and fsync release the GIL, so threads overlap them (and share journal commits)."""
    paths = {name: safe_path(folder, name) for name in sorted(files)}
    for parent in sorted({p.parent for p in paths.values()}):
        parent.mkdir(parents=True, exist_ok=True)
    list(pool.map(lambda name: _write_durably(paths[name], files[name]), paths))
    list(pool.map(_fsync, sorted({p.parent for p in paths.values()})))


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_issue(
    output_dir: Path, folder: str, files: Mapping[str, bytes], *, replace: bool
) -> Path:
    """Write one issue folder all at once: into a temp folder, then renamed into place.

    A published folder is never rewritten unless `replace` (rebuild, or a folder a crashed run
    left before the store recorded it). A crash leaves the old folder or the new one.
    """
    return write_issues(output_dir, {folder: files}, replace=replace)[0]


def write_issues(
    output_dir: Path, issues: Mapping[str, Mapping[str, bytes]], *, replace: bool
) -> list[Path]:
    """Write several issue folders, each whole or not at all, with one durability pass.

    Every folder is written to a temp folder, all of them are made durable together, then
    each is renamed into place: a crash leaves each folder old or new, never half-written.
    """
    targets = {folder: safe_path(output_dir, folder) for folder in issues}
    for target in targets.values():
        if target.exists() and not replace:
            raise WriteError(
                "issue folder exists already; published issues are never rewritten",
                where=str(target),
                hint="run `publisher publish --rebuild` to regenerate the whole site",
            )
    output_dir.mkdir(parents=True, exist_ok=True)
    temps: dict[str, Path] = {}
    trash = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}old.", dir=output_dir))
    current = output_dir
    try:
        with ThreadPoolExecutor(max_workers=16) as pool:
            for folder, files in issues.items():
                current = targets[folder]
                temp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{folder}.", dir=output_dir))
                temps[folder] = temp
                _write_files(temp, files, pool)
                os.chmod(temp, 0o755)  # noqa: S103 (a static site: the web server reads it)
        for folder, target in targets.items():
            current = target
            # Two renames: between them the folder is briefly absent, never half-written.
            replaced = target.exists()
            if replaced:
                os.replace(target, trash / folder)
            try:
                os.replace(temps[folder], target)
            except OSError:
                if replaced:
                    os.replace(trash / folder, target)  # the old issue goes back in place
                raise
            del temps[folder]
    except OSError as exc:
        raise WriteError(
            f"cannot write the issue ({exc.strerror})",
            where=str(current),
            hint="check free space and permissions of the output folder",
        ) from None
    finally:
        for temp in temps.values():
            shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(trash, ignore_errors=True)
    return list(targets.values())


def write_site_files(output_dir: Path, files: Mapping[str, bytes]) -> list[str]:
    """Replace site-wide files (feeds, archive) each with temp file + os.replace.

    A file whose bytes are unchanged is left alone, so its mtime (and HTTP validators) hold.
    Returns the names that changed.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, data in sorted(files.items()):
        path = safe_path(output_dir, name)
        try:
            if path.is_file() and path.read_bytes() == data:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{path.name}.", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(temp, 0o644)
                os.replace(temp, path)
            except BaseException:
                Path(temp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise WriteError(
                f"cannot write ({exc.strerror})",
                where=str(path),
                hint="check free space and permissions of the output folder",
            ) from None
        changed.append(name)
    return changed


def remove_stale_temp(output_dir: Path) -> None:
    """Drop temp folders and files a crashed run left behind."""
    if not output_dir.is_dir():
        return
    for entry in output_dir.iterdir():
        if entry.name.startswith(TEMP_PREFIX):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
