"""Small filesystems of their own for tests that need a full disk or a read-only volume (root only)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _run_or_skip(command: list[str], what: str) -> None:
    """Run a set-up command as root; skip the test, saying why, where it cannot run here."""
    if os.geteuid() != 0:
        pytest.skip(f"{what} needs root")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot do {what} here: {done.stderr.strip()}")


@contextmanager
def tmpfs(path: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` for the block; skips the test where mounting is not allowed."""
    path.mkdir(parents=True, exist_ok=True)
    _run_or_skip(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)], "mounting a tmpfs"
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, options: str) -> None:
    """Change a mounted tmpfs's options (`ro`, `rw`)."""
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


@contextmanager
def ext4_volume(path: Path, size_mb: int = 64) -> Iterator[Path]:
    """An ext4 file system in a loop image, mounted at `path` with `errors=remount-ro`, so a test can
    make the kernel turn it read-only under open files (`fail`), as it does on a disk error. Skips
    where loop devices or mkfs.ext4 are not available."""
    image = path.with_suffix(".img")
    path.mkdir(parents=True, exist_ok=True)
    try:
        with open(image, "wb") as file:
            file.truncate(size_mb * 1024 * 1024)
        _run_or_skip(["mkfs.ext4", "-q", "-F", str(image)], "making an ext4 image")
        _run_or_skip(
            ["mount", "-o", "loop,errors=remount-ro", str(image), str(path)], "mounting a loop device"
        )
        try:
            yield path
        finally:
            subprocess.run(["umount", "-l", str(path)], check=False)
    finally:
        image.unlink(missing_ok=True)


def _device(path: Path) -> str:
    found = subprocess.run(
        ["findmnt", "-n", "-o", "SOURCE", str(path)], capture_output=True, text=True, check=True
    )
    return found.stdout.strip()


def fail(path: Path) -> None:
    """Make the ext4 volume mounted at `path` report an error: the kernel remounts it read-only."""
    Path(f"/sys/fs/ext4/{Path(_device(path)).name}/trigger_fs_error").write_text("a test's disk error\n")


def repair(path: Path) -> None:
    """Unmount the failed volume at `path`, check it with e2fsck and mount it again, writable."""
    image = path.with_suffix(".img")
    subprocess.run(["umount", str(path)], check=True)
    subprocess.run(["e2fsck", "-f", "-y", str(image)], capture_output=True, check=False)  # 1: errors fixed
    subprocess.run(["mount", "-o", "loop,errors=remount-ro", str(image), str(path)], check=True)
