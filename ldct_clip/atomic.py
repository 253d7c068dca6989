"""Atomic outputs: build under a temporary name beside the target, then rename it into place.

A reader (or a user after a crash) sees either the old output or the complete new one, never a partial
one under the final name.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["move_into_place", "partial_path", "staged_folder"]


def partial_path(target: Path, suffix: str = "") -> Path:
    """A hidden, unique temporary name beside ``target``: ``.<name>.<random>.partial<suffix>``.

    ``suffix`` keeps a file type that writers recognise by extension (e.g. ``.nii.gz``).
    """
    return target.parent / f".{target.name}.{uuid.uuid4().hex[:8]}.partial{suffix}"


def move_into_place(temp: Path, target: Path) -> None:
    """Rename ``temp`` (file or folder) to ``target``; an existing target is moved aside, then deleted.

    Both paths must be on one file system (build ``temp`` beside ``target``). If the final rename fails,
    the old target is put back.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> (folder / "new.tmp").write_text("new"), (folder / "out.txt").write_text("old")
    (3, 3)
    >>> move_into_place(folder / "new.tmp", folder / "out.txt")
    >>> sorted(p.name for p in folder.iterdir()), (folder / "out.txt").read_text()
    (['out.txt'], 'new')
    >>> shutil.rmtree(folder)
    """
    if not target.exists() and not target.is_symlink():
        os.rename(temp, target)
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)
    try:
        os.rename(temp, target)
    except BaseException:
        os.rename(old, target)
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    else:
        old.unlink()


@contextmanager
def staged_folder(target: Path, before_move: Callable[[], None] | None = None) -> Iterator[Path]:
    """A new empty folder beside ``target`` to write into; moved into place when the block completes.

    ``before_move`` runs just before the move (e.g. to check again that ``target`` may be replaced). If the
    block or the check raises, the staging folder is deleted and ``target`` is left as it was.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp()) / "report"
    >>> with staged_folder(out) as folder:
    ...     _ = (folder / "a.txt").write_text("done")
    >>> sorted(p.name for p in out.iterdir())
    ['a.txt']
    >>> shutil.rmtree(out.parent)
    """
    temp = partial_path(target)
    temp.mkdir()  # not tempfile.mkdtemp: its 0700 mode would stay on the renamed output folder
    try:
        yield temp
        if before_move is not None:
            before_move()
        move_into_place(temp, target)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
