"""Write into issues/: an issue via a temp folder renamed into place; site files atomically."""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
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


def write_issue_temp(output_dir: Path, folder: str, files: Mapping[str, bytes]) -> Path:
    """Write one issue's files into a new temp folder inside `output_dir`; returns its path.

    Nothing is durable yet and nothing is visible under the issue's name: `install_issues`
    makes the folder durable and renames it into place. A crash in between leaves only a
    temp folder, which `remove_stale_temp` drops on the next run. Rebuild workers call this
    so that creating files runs on every core.
    """
    safe_path(output_dir, folder)  # refuse a bad name before creating anything
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{folder}.", dir=output_dir))
    except OSError as exc:
        raise _write_error(exc, output_dir) from None
    current = temp
    try:
        paths = {name: safe_path(temp, name) for name in sorted(files)}
        for parent in sorted({p.parent for p in paths.values()} - {temp}):
            current = parent
            parent.mkdir(parents=True, exist_ok=True)
        for name, path in paths.items():
            current = path
            # No fsync here: `install_issues` makes them durable all at once (see SyncPoint).
            # os.open/os.write: a rebuild creates 1,500 files, and open()'s buffered file
            # object costs more than the write itself. Mode 0o666 less the umask, as open().
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            try:
                data = memoryview(files[name])
                while data:
                    data = data[os.write(fd, data) :]
            finally:
                os.close(fd)
        os.chmod(temp, 0o755)  # noqa: S103 (a static site: the web server reads it)
    except BaseException as exc:
        shutil.rmtree(temp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise _write_error(exc, current) from None
        raise
    return temp


def install_issues(
    output_dir: Path,
    temps: Mapping[str, Path],
    *,
    replace: bool,
    sync_point: SyncPoint | None = None,
) -> list[Path]:
    """Make temp issue folders durable, then rename each into place as `output_dir/<folder>`.

    A published folder is never rewritten unless `replace` (rebuild, or a folder a crashed run
    left before the store recorded it). A crash at any moment leaves each folder old or new,
    never half-written. The temp folders are removed if anything fails. Pass the `sync_point`
    opened before the temp folders were written (see SyncPoint).
    """
    targets = {folder: safe_path(output_dir, folder) for folder in temps}
    left = dict(temps)
    trash: Path | None = None
    current = output_dir
    try:
        for target in targets.values():
            if target.exists() and not replace:
                raise WriteError(
                    "issue folder exists already; published issues are never rewritten",
                    where=str(target),
                    hint="run `publisher publish --rebuild` to regenerate the whole site",
                )
        # Every byte must be on disk before any rename makes it visible.
        if temps:
            if sync_point is None:
                with SyncPoint(output_dir) as late:
                    late.sync(list(temps.values()))
            else:
                sync_point.sync(list(temps.values()))
        for folder, target in targets.items():
            current = target
            # Two renames: between them the folder is briefly absent, never half-written.
            replaced = target.exists()
            if replaced:
                if trash is None:
                    trash = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}old.", dir=output_dir))
                os.replace(target, trash / folder)
            try:
                os.replace(temps[folder], target)
            except OSError:
                if replaced and trash is not None:
                    os.replace(trash / folder, target)  # the old issue goes back in place
                raise
            del left[folder]
        _fsync(output_dir)  # the renames themselves
    except OSError as exc:
        raise _write_error(exc, current) from None
    finally:
        for temp in left.values():
            shutil.rmtree(temp, ignore_errors=True)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    return list(targets.values())


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
    """Write several issue folders, each whole or not at all, with one durability pass."""
    for folder in issues:
        target = safe_path(output_dir, folder)
        if target.exists() and not replace:
            raise WriteError(
                "issue folder exists already; published issues are never rewritten",
                where=str(target),
                hint="run `publisher publish --rebuild` to regenerate the whole site",
            )
    temps: dict[str, Path] = {}
    with SyncPoint(output_dir) as sync_point:
        try:
            for folder, files in issues.items():
                temps[folder] = write_issue_temp(output_dir, folder, files)
        except BaseException:
            for temp in temps.values():
                shutil.rmtree(temp, ignore_errors=True)
            raise
        return install_issues(output_dir, temps, replace=replace, sync_point=sync_point)


class SyncPoint:
    """Makes the files written since it was opened durable: each fsynced, or all in one go.

    With `whole_filesystem` (a rebuild), Linux syncs the filesystem in one call (syncfs),
    which writes the data out in large batches: for a rebuild's 1,500 files a few
    milliseconds instead of the ~0.2 s of CPU that 1,500 fsync calls cost. syncfs also
    flushes whatever else is waiting on that filesystem, so one issue's dozen files are
    fsynced one by one instead: a routine publish never waits on other programs' writes.
    syncfs reports a failed write-back only if it happened after the folder was opened (or
    was never reported to anyone): so open this before writing. Where there is no syncfs,
    every file and folder is fsynced in turn.
    """

    def __init__(self, output_dir: Path, *, whole_filesystem: bool = False) -> None:
        self.whole_filesystem = whole_filesystem
        try:
            output_dir.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(output_dir, os.O_RDONLY)
        except OSError as exc:
            raise _write_error(exc, output_dir) from None
        self.output_dir = output_dir
        self._synced: set[Path] = set()  # a rebuild syncs batches, then installs them all

    def __enter__(self) -> SyncPoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        os.close(self._fd)

    def sync(self, folders: list[Path]) -> None:
        """Put every file and folder below `folders` on disk (raises WriteError).

        Folders this made durable before are skipped: nothing is written into a temp
        folder once it is complete.
        """
        pending = [folder for folder in folders if folder not in self._synced]
        if not pending:
            return
        try:
            self._sync(pending)
        except OSError as exc:
            raise _write_error(exc, Path(exc.filename or self.output_dir)) from None
        self._synced.update(pending)

    def _sync(self, folders: list[Path]) -> None:
        function = _syncfs_function() if self.whole_filesystem else None
        if function is not None:
            if function(self._fd) == 0:
                return
            error = ctypes.get_errno()
            if error not in (errno.ENOSYS, errno.EPERM):  # else blocked by a sandbox: fsync
                raise OSError(error, os.strerror(error), str(self.output_dir))
        for folder in folders:
            for parent, _dirs, names in os.walk(folder):
                for name in names:
                    _fsync(Path(parent, name))
                _fsync(Path(parent))


@functools.cache
def _syncfs_function() -> Callable[[int], int] | None:
    """libc's syncfs, from Linux 5.8 on: before, it could succeed with data lost unreported."""
    if not sys.platform.startswith("linux") or _kernel_version() < (5, 8):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return function


def _kernel_version() -> tuple[int, int]:
    numbers = re.match(r"(\d+)\.(\d+)", os.uname().release)
    return (int(numbers[1]), int(numbers[2])) if numbers else (0, 0)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(exc: OSError, where: Path) -> WriteError:
    return WriteError(
        f"cannot write the issue ({exc.strerror})",
        where=str(where),
        hint="check free space and permissions of the output folder",
    )


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
