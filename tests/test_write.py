"""Writing output: whole issue folders or nothing, atomic site files, no path escapes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from publisher.errors import WriteError
from publisher.write import (
    TEMP_PREFIX,
    SyncPoint,
    install_issues,
    remove_stale_temp,
    safe_path,
    write_issue,
    write_issue_temp,
    write_site_files,
)


@pytest.mark.parametrize(
    "name", ["../x", "a/../../x", "/etc/passwd", "a\\..\\x", "", "a//b", "./a", "a\x00b"]
)
def test_names_that_could_leave_the_output_folder_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(WriteError, match="would leave the output folder"):
        safe_path(tmp_path, name)


def test_an_issue_folder_appears_whole_and_is_never_rewritten(tmp_path: Path) -> None:
    files = {"index.html": b"<p>web</p>", "slug/photo.jpg": b"\xff\xd8", "issue.json": b"{}"}
    target = write_issue(tmp_path, "2026-11-24", files, replace=False)
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "index.html",
        "issue.json",
        "slug/photo.jpg",
    ]
    assert (target / "slug/photo.jpg").read_bytes() == b"\xff\xd8"
    with pytest.raises(WriteError, match="published issues are never rewritten"):
        write_issue(tmp_path, "2026-11-24", {"index.html": b"changed"}, replace=False)
    assert (target / "index.html").read_bytes() == b"<p>web</p>"
    write_issue(tmp_path, "2026-11-24", {"index.html": b"rebuilt"}, replace=True)
    assert [p.name for p in target.iterdir()] == ["index.html"]
    assert [p.name for p in tmp_path.iterdir()] == ["2026-11-24"]  # no temp left behind


def test_a_failing_write_leaves_no_folder_and_no_temp(tmp_path: Path) -> None:
    with pytest.raises(WriteError):
        write_issue(tmp_path, "2026-11-24", {"ok.html": b"x", "../evil": b"y"}, replace=False)
    assert list(tmp_path.iterdir()) == []


def test_site_files_are_replaced_only_when_their_bytes_change(tmp_path: Path) -> None:
    assert write_site_files(tmp_path, {"feed.xml": b"one", "index.html": b"a"}) == [
        "feed.xml",
        "index.html",
    ]
    os.utime(tmp_path / "feed.xml", ns=(1, 1))
    assert write_site_files(tmp_path, {"feed.xml": b"one", "index.html": b"b"}) == ["index.html"]
    assert (tmp_path / "feed.xml").stat().st_mtime_ns == 1  # untouched: validators hold
    assert (tmp_path / "index.html").read_bytes() == b"b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feed.xml", "index.html"]


def test_leftovers_of_a_crashed_run_are_removed_but_user_dotfiles_stay(tmp_path: Path) -> None:
    (tmp_path / f"{TEMP_PREFIX}2026-11-24.abc").mkdir()
    (tmp_path / f"{TEMP_PREFIX}feed.xml.x").write_bytes(b"half")
    (tmp_path / ".htaccess").write_text("keep me")
    remove_stale_temp(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [".htaccess"]


@pytest.mark.parametrize("syncfs", [True, False], ids=["syncfs", "fsync-each-file"])
def test_a_temp_issue_folder_stays_invisible_until_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, syncfs: bool
) -> None:
    from publisher import write

    if not syncfs:  # as on a system without syncfs(2): every file is fsynced instead
        monkeypatch.setattr(write, "_syncfs_function", lambda: None)
    files = {"index.html": b"<p>web</p>", "slug/photo.jpg": b"\xff\xd8"}
    with SyncPoint(tmp_path, whole_filesystem=True) as sync_point:  # as a rebuild does
        temp = write_issue_temp(tmp_path, "2026-11-24", files)
        assert temp.parent == tmp_path and temp.name.startswith(TEMP_PREFIX)
        assert not (tmp_path / "2026-11-24").exists()  # a crash now leaves only the temp folder
        [target] = install_issues(
            tmp_path, {"2026-11-24": temp}, replace=False, sync_point=sync_point
        )
    assert target == tmp_path / "2026-11-24"
    assert (target / "slug/photo.jpg").read_bytes() == b"\xff\xd8"
    assert [p.name for p in tmp_path.iterdir()] == ["2026-11-24"]


def test_installing_over_a_published_issue_is_refused_and_the_temp_removed(tmp_path: Path) -> None:
    write_issue(tmp_path, "2026-11-24", {"index.html": b"first"}, replace=False)
    temp = write_issue_temp(tmp_path, "2026-11-24", {"index.html": b"second"})
    with pytest.raises(WriteError, match="published issues are never rewritten"):
        install_issues(tmp_path, {"2026-11-24": temp}, replace=False)
    assert (tmp_path / "2026-11-24" / "index.html").read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["2026-11-24"]


def test_a_disk_error_while_syncing_leaves_the_published_issue_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from publisher import write

    write_issue(tmp_path, "2026-11-24", {"index.html": b"first"}, replace=False)

    def failing_fsync(path: Path) -> None:  # a disk error cannot be made on purpose here
        raise OSError(5, "Input/output error", str(path))

    monkeypatch.setattr(write, "_syncfs_function", lambda: None)
    monkeypatch.setattr(write, "_fsync", failing_fsync)
    with pytest.raises(
        WriteError, match=r"cannot write the issue \(Input/output error\)"
    ) as raised:
        write_issue(tmp_path, "2026-11-24", {"index.html": b"second"}, replace=True)
    assert TEMP_PREFIX in raised.value.where  # names the file it could not sync
    assert (tmp_path / "2026-11-24" / "index.html").read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["2026-11-24"]


def test_folders_synced_while_a_rebuild_renders_are_not_synced_again_at_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from publisher import write

    synced: list[Path] = []
    real_fsync = write._fsync
    monkeypatch.setattr(write, "_syncfs_function", lambda: None)  # every file fsynced
    monkeypatch.setattr(write, "_fsync", lambda path: (synced.append(path), real_fsync(path)))
    with SyncPoint(tmp_path, whole_filesystem=True) as sync_point:
        first = write_issue_temp(tmp_path, "2026-11-24", {"index.html": b"a"})
        sync_point.sync([first])
        second = write_issue_temp(tmp_path, "2026-11-25", {"index.html": b"b"})
        install_issues(
            tmp_path,
            {"2026-11-24": first, "2026-11-25": second},
            replace=False,
            sync_point=sync_point,
        )
    files = [p for p in synced if p.name == "index.html"]
    assert len(files) == 2  # each issue's file once, though `first` was passed twice
    assert (tmp_path / "2026-11-25" / "index.html").read_bytes() == b"b"
