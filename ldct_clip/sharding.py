"""Batch inference over several processes: which rank does which series, resuming, and the run summary.

Under ``torchrun`` every rank plans the same archive, so the split is computed, not communicated:
:func:`balance` assigns series to ranks by slice count (greedy longest-processing-time, ties broken by
relative path), the same on every rank. Ranks never wait on one another's series; they meet only at a
barrier after planning (so no rank sees another's fresh output while it plans) and at the end, when
:meth:`Shard.all_gather` brings every rank's results together for the summary rank 0 writes
(:func:`write_summary`, :func:`summary_table`).

Resuming (``--skip-existing``) relies on the atomic writers (:mod:`ldct_clip.atomic`): an output under
its final name is complete (:func:`output_complete`), and what a killed run leaves behind is a hidden
``.<name>.<random>.partial`` entry (:func:`find_partials`), removed by :func:`tidy_partials`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.distributed as dist

from ldct_clip.atomic import move_into_place, partial_path
from ldct_clip.device import resolve_device
from ldct_clip.errors import InputError

if TYPE_CHECKING:
    from ldct_clip.inference import SeriesResult

__all__ = [
    "PARTIAL_NAME",
    "SUMMARY_NAME",
    "SeriesRecord",
    "Shard",
    "balance",
    "count_slices",
    "find_partials",
    "join_process_group",
    "leave_process_group",
    "output_complete",
    "summary_table",
    "tidy_partials",
    "write_summary",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

SUMMARY_NAME = "inference_summary.json"
"""The run summary rank 0 writes into the output folder of a batch."""


def _partial_pattern(name: str) -> re.Pattern[str]:
    """Names :func:`ldct_clip.atomic.partial_path` makes for targets named ``name`` (a regular expression)."""
    return re.compile(rf"\.{name}\.[0-9a-f]{{8}}\.partial(\.[^/]*)?")


PARTIAL_NAME = _partial_pattern(".+")
"""Names made by :func:`ldct_clip.atomic.partial_path`: ``.<name>.<8 hex digits>.partial<suffix>``."""
RESULTS_TIMEOUT = timedelta(hours=24)
"""How long a rank that has finished waits for the slowest one (the process group's timeout)."""


@dataclass(frozen=True)
class Shard:
    """This process's place in a batch run: rank ``rank`` of ``world_size`` (a single process is 0 of 1).

    >>> Shard().barrier(), Shard().all_gather("mine")
    (None, ['mine'])
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, device: str = "auto") -> Shard:
        """Join the ``torchrun`` process group (only when ``WORLD_SIZE`` > 1) and pick this rank's GPU.

        The group always uses gloo: ranks exchange only a few Python objects, and gloo's timeout
        (:data:`RESULTS_TIMEOUT`) lets a rank that finished early wait for the others, where NCCL's watchdog
        would abort it. Each rank computes on GPU ``LOCAL_RANK`` when the device is CUDA, else on CPU.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if resolve_device(device).type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise InputError(
                    f"LOCAL_RANK {local_rank} but this node has {torch.cuda.device_count()} GPU(s); "
                    "start at most one process per GPU (torchrun --nproc-per-node) or pass --device cpu"
                )
            torch.cuda.set_device(local_rank)
        if world <= 1:
            return cls(local_rank=local_rank)
        join_process_group("gloo", RESULTS_TIMEOUT)
        return cls(dist.get_rank(), dist.get_world_size(), local_rank)

    def barrier(self) -> None:
        """Wait until every rank gets here (a no-op for a single process)."""
        if self.world_size > 1:
            dist.barrier()

    def all_gather(self, value: T) -> list[T]:
        """Every rank's ``value`` (picklable), indexed by rank; each rank waits here for the others."""
        if self.world_size == 1:
            return [value]
        gathered: list[Any] = [None] * self.world_size  # all_gather_object fills every slot
        dist.all_gather_object(gathered, value)
        return gathered

    def close(self) -> None:
        """Leave the process group (a no-op for a single process)."""
        if self.world_size > 1:
            leave_process_group()


def join_process_group(backend: str, timeout: timedelta | None = None) -> None:
    """Join the ``torchrun`` process group (``backend``, ``timeout``) unless this process already has.

    ``torch.distributed.nn`` is imported first, on purpose. Its functions take ``group=group.WORLD`` as a
    default argument, evaluated when the module is imported; importing it after the group exists (as
    ``torch._dynamo`` does, pulled in by timm and open_clip when a model is built) keeps the group
    referenced forever, so ``destroy_process_group`` cannot free it and its gloo worker threads outlive
    the interpreter. A worker that releases a finished collective's tensors during interpreter shutdown
    then dies in ``std::terminate`` ("terminate called without an active exception", SIGABRT), and
    ``torchrun`` reports the run as failed although every rank finished: about one run in ten here.
    Imported before the group exists, those defaults are ``None``.
    """
    import torch.distributed.nn  # noqa: F401  (see above: before the group, never after)

    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timeout)


def leave_process_group() -> None:
    """Destroy the process group, if there is one, so that its threads end before the interpreter does."""
    if dist.is_initialized():
        dist.destroy_process_group()


def count_slices(source: Path) -> int:
    """Cheap slice count of a series: the visible files directly in its folder (1 for a single file).

    Used only to balance ranks, so a file that is not a slice merely skews the estimate a little.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("a.dcm", "b.dcm", ".hidden"):
    ...     _ = (folder / name).write_text("")
    >>> count_slices(folder)
    2
    >>> shutil.rmtree(folder)
    """
    if not source.is_dir():
        return 1
    with os.scandir(source) as entries:
        return sum(1 for entry in entries if not entry.name.startswith(".") and entry.is_file())


def balance(slices: Sequence[int], names: Sequence[str], world_size: int) -> list[int]:
    """The rank of each series: greedy longest-processing-time assignment by slice count.

    Series are taken from the largest down (ties by name, so every rank computes the same split) and each
    goes to the rank with the fewest slices so far (ties to the lower rank). ``names`` are relative paths;
    a series nested inside another one's folder goes with it, so the outer series is written first.

    >>> balance([5, 3, 3, 1], ["a", "b", "c", "d"], world_size=2)
    [0, 1, 1, 0]
    >>> balance([2, 2, 9], ["x", "x/inner", "y"], world_size=2)
    [1, 1, 0]
    """
    if len(slices) != len(names):
        raise ValueError(f"{len(slices)} slice counts for {len(names)} names")
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    known = set(names)
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        outer = [str(parent) for parent in PurePath(name).parents if str(parent) in known]
        groups.setdefault(outer[-1] if outer else name, []).append(index)
    load = [0] * world_size
    ranks = [0] * len(names)
    for group, members in sorted(groups.items(), key=lambda item: (-sum(slices[i] for i in item[1]), item[0])):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        load[rank] += sum(slices[i] for i in members)
        for index in members:
            ranks[index] = rank
    return ranks


def output_complete(target: Path) -> bool:
    """Whether a series' output exists under its final name (a NIfTI file, or a folder holding files).

    The writers rename complete outputs into place, so existing means complete; a folder that holds only
    the folders of nested series is not an output of its own.
    """
    if target.is_file():
        return True
    if not target.is_dir():
        return False
    with os.scandir(target) as entries:
        return any(not entry.name.startswith(".") and entry.is_file() for entry in entries)


def find_partials(target: Path) -> list[Path]:
    """Hidden partial outputs of killed runs: :data:`PARTIAL_NAME` entries inside ``target`` and beside it
    for ``target`` itself (where a single series or file is staged). Nothing else ever matches.

    >>> import tempfile
    >>> from ldct_clip.atomic import partial_path
    >>> out = Path(tempfile.mkdtemp()) / "out"
    >>> (out / "L067").mkdir(parents=True)
    >>> staged = partial_path(out / "L067" / "full_1mm")
    >>> staged.mkdir()
    >>> _ = (out / "L067" / ".notes.partial").write_text("not ours: no random part")
    >>> [p.relative_to(out).parent for p in find_partials(out)]
    [PosixPath('L067')]
    >>> shutil.rmtree(out.parent)
    """
    found = []
    if target.parent.is_dir():
        own = _partial_pattern(re.escape(target.name))
        found += [entry for entry in sorted(target.parent.iterdir()) if own.fullmatch(entry.name)]
    if target.is_dir() and not target.is_symlink():
        for folder, subfolders, files in os.walk(target):
            subfolders.sort()
            here = Path(folder)
            found += [here / name for name in sorted(files) if _is_partial(name)]
            found += [here / name for name in subfolders if _is_partial(name)]
            subfolders[:] = [name for name in subfolders if not _is_partial(name)]
    return found


def tidy_partials(target: Path, remove: bool) -> list[Path]:
    """Remove (``remove``) or name in a warning the partial outputs :func:`find_partials` finds; returns them."""
    partials = find_partials(target)
    if not partials:
        return partials
    listing = ", ".join(str(p) for p in partials)
    if not remove:
        logger.warning("%s: %d hidden partial output(s) left by an interrupted run: %s; rerun with "
                       "--skip-existing to remove them", target, len(partials), listing)
        return partials
    for path in partials:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError as err:
            raise InputError(f"{path}: cannot remove this partial output of an interrupted run "
                             f"({err.strerror or type(err).__name__}); remove it by hand and rerun") from None
    logger.info("%s: removed %d hidden partial output(s) left by an interrupted run: %s", target, len(partials),
                listing)
    return partials


@dataclass(frozen=True)
class SeriesRecord:
    """One series of a batch run as the summary shows it; ``status`` is written, failed or skipped."""

    series: str
    output: str
    slices: int
    seconds: float
    rank: int
    status: str
    error: str | None = None

    @classmethod
    def from_result(cls, result: SeriesResult, root: Path, rank: int) -> SeriesRecord:
        """The record of ``result`` (:class:`~ldct_clip.inference.SeriesResult`), named relative to ``root``.

        >>> from ldct_clip.inference import SeriesResult
        >>> SeriesRecord.from_result(SeriesResult(Path("in/a"), Path("out/a"), 3, 1.5), Path("in"), 1).status
        'written'
        """
        name = result.source.relative_to(root) if result.source.is_relative_to(root) else result.source
        status = "skipped" if result.skipped else "written" if result.ok else "failed"
        return cls(str(name), str(result.target), result.slices, round(result.seconds, 3), rank, status,
                   result.error)


def summary_table(records: Sequence[SeriesRecord]) -> list[str]:
    """A fixed-width table of the series (one line each), with a header.

    >>> print("\\n".join(summary_table([SeriesRecord("L067/full_1mm", "out/L067/full_1mm", 3, 2.0, 1, "written")])))
    series         rank  slices  seconds  status   error
    L067/full_1mm     1       3      2.0  written
    """
    width = max([len("series"), *(len(r.series) for r in records)])
    lines = [f"{'series':<{width}}  rank  slices  seconds  status   error"]
    for r in records:
        line = f"{r.series:<{width}}  {r.rank:>4}  {r.slices:>6}  {r.seconds:>7.1f}  {r.status:<7}  {r.error or ''}"
        lines.append(line.rstrip())
    return lines


def write_summary(output: Path, records: Sequence[SeriesRecord], world_size: int, seconds: float) -> Path:
    """Write ``output/inference_summary.json`` atomically (replacing an older one); returns its path.

    Holds the totals (series written, failed and skipped, slices written, wall-clock seconds, slices per
    second, number of ranks) and one entry per series (:class:`SeriesRecord`).
    """
    written = [r for r in records if r.status == "written"]
    slices = sum(r.slices for r in written)
    summary = {
        "world_size": world_size,
        "seconds": round(seconds, 3),
        "written": len(written),
        "failed": sum(r.status == "failed" for r in records),
        "skipped": sum(r.status == "skipped" for r in records),
        "slices": slices,
        "slices_per_second": round(slices / seconds, 3) if seconds > 0 else None,
        "series": [asdict(r) for r in records],
    }
    path = output / SUMMARY_NAME
    output.mkdir(parents=True, exist_ok=True)  # missing when every series failed
    temp = partial_path(path)
    temp.write_text(json.dumps(summary, indent=2) + "\n")
    move_into_place(temp, path)
    return path


def _is_partial(name: str) -> bool:
    return PARTIAL_NAME.fullmatch(name) is not None
