"""Batch inference on several processes: the split across ranks, resuming after a kill, and the run summary."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
import torch
from dicom_factory import make_ct_series

from ldct_clip import infer
from ldct_clip.atomic import partial_path
from ldct_clip.cli import run_cli
from ldct_clip.inference import SeriesResult, denoise_series
from ldct_clip.models import CLIPDenoiser, save_checkpoint
from ldct_clip.sharding import (
    PARTIAL_NAME,
    SUMMARY_NAME,
    SeriesRecord,
    balance,
    count_slices,
    find_partials,
    output_complete,
    summary_table,
    tidy_partials,
    write_summary,
)

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(CLIPDenoiser(encoder_weights="random"), tmp_path_factory.mktemp("ckpt") / "ct.safetensors")


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "ldct_clip.infer", *args, "--device", "cpu"]


def _pixels(series: Path) -> dict[str, bytes]:
    return {p.name: pydicom.dcmread(p).PixelData for p in sorted(series.iterdir())}


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def _hidden(folder: Path) -> list[Path]:
    return list(folder.rglob(".*"))


# --- the split ----------------------------------------------------------------------------------------


def test_balance_is_longest_processing_time_by_slices_not_by_name() -> None:
    # by name order (round robin) rank 0 would get P0 + P2 = 7 slices and rank 1 P1 + P3 = 5
    assert balance([4, 3, 3, 2], ["P0", "P1", "P2", "P3"], 2) == [0, 1, 1, 0]
    # ties in slice count go by name, wherever the series sit in the list: the same split on every rank
    assert balance([2, 2, 2], ["c", "a", "b"], 2) == [0, 0, 1]
    assert balance([5, 1], ["a", "b"], 3) == [0, 1]  # more ranks than series: some ranks get nothing


def test_balance_keeps_each_rank_within_one_series_of_the_ideal() -> None:
    slices = [(7 * i) % 23 + 1 for i in range(40)]
    names = [f"L{i:03d}/quarter" for i in range(40)]
    for world in (1, 2, 3, 5):
        ranks = balance(slices, names, world)
        loads = [sum(s for s, r in zip(slices, ranks, strict=True) if r == rank) for rank in range(world)]
        assert sorted(set(ranks)) == list(range(world)) and sum(loads) == sum(slices)
        assert max(loads) - min(loads) <= max(slices)
        assert balance(slices[::-1], names[::-1], world) == ranks[::-1]  # independent of the listing order


def test_nested_series_stay_on_the_rank_of_the_series_around_them() -> None:
    ranks = balance([3, 1, 1, 4], ["A", "A/inner", "A/inner/deeper", "B"], 2)
    assert ranks[0] == ranks[1] == ranks[2] != ranks[3]


def test_count_slices_counts_visible_files(tmp_path: Path) -> None:
    make_ct_series(tmp_path / "s", n_slices=5, rows=8, columns=8)
    (tmp_path / "s" / ".DS_Store").write_text("")
    (tmp_path / "s" / "sub").mkdir()
    assert count_slices(tmp_path / "s") == 5
    (tmp_path / "ct.nii.gz").write_bytes(b"")
    assert count_slices(tmp_path / "ct.nii.gz") == 1


# --- resuming -----------------------------------------------------------------------------------------


def test_partial_names_are_exactly_those_atomic_writes_make(tmp_path: Path) -> None:
    for target, suffix in ((tmp_path / "full_1mm", ""), (tmp_path / "s.nii.gz", ".nii.gz"),
                           (tmp_path / SUMMARY_NAME, "")):
        assert PARTIAL_NAME.fullmatch(partial_path(target, suffix).name)
    for name in (".DS_Store", ".notes.partial", "full_1mm.0123abcd.partial", ".x.0123ABCD.partial",
                 ".x.old-0123abcd", ".x.0123abc.partial"):
        assert not PARTIAL_NAME.fullmatch(name), name


def test_tidy_removes_only_partial_outputs_and_names_them_otherwise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    make_ct_series(out / "L067" / "full_1mm", n_slices=2, rows=8, columns=8)
    staged = partial_path(out / "L096" / "full_1mm")
    staged.mkdir(parents=True)
    (staged / "IM00001.dcm").write_bytes(b"half")
    nifti = partial_path(out / "L109.nii.gz", ".nii.gz")
    nifti.write_bytes(b"half")
    beside = partial_path(out)  # a single series staged beside its output
    beside.mkdir()
    keep = [out / ".DS_Store", out / "L067" / ".notes.partial", partial_path(tmp_path / "other"),
            tmp_path / ".out.old-0123abcd"]
    for path in keep:
        path.write_text("not ours")

    assert sorted(find_partials(out)) == sorted([staged, nifti, beside])
    with caplog.at_level("WARNING"):
        assert sorted(tidy_partials(out, remove=False)) == sorted([staged, nifti, beside])
    assert str(staged) in caplog.text and "--skip-existing" in caplog.text and staged.exists()

    assert len(tidy_partials(out, remove=True)) == 3
    assert not staged.exists() and not nifti.exists() and not beside.exists()
    assert all(path.exists() for path in keep)
    assert output_complete(out / "L067" / "full_1mm") and not output_complete(out / "L096" / "full_1mm")
    assert not output_complete(out / "L067")  # holds only the folder of a series, no output of its own


@pytest.mark.slow
def test_skip_existing_resumes_in_one_process(tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str],
                                              caplog: pytest.LogCaptureFixture) -> None:
    root, out = tmp_path / "in", tmp_path / "out"
    for name in ("A", "B", "C"):
        make_ct_series(root / name, n_slices=2, rows=48, columns=48)
    first = denoise_series(checkpoint, root / "A", out / "A", device="cpu")[0]
    before = _hashes(out / "A")
    leftover = partial_path(out / "B")
    leftover.mkdir()

    with caplog.at_level("INFO"):
        code = run_cli(infer.main, ["--checkpoint", str(checkpoint), "--input", str(root), "--output", str(out),
                                    "--device", "cpu", "--skip-existing"])

    out_text, err = capsys.readouterr()
    assert code == 0 and first.ok
    assert out_text.strip() == "denoised 2 of 2 series (4 slices), skipped 1 whose output exists"
    assert f"removed 1 hidden partial output(s) left by an interrupted run: {leftover}" in caplog.text
    table = [line.split() for line in err.splitlines()[-4:]]
    assert table[0] == ["series", "rank", "slices", "seconds", "status", "error"]
    assert [row[:3] + row[4:] for row in table[1:]] == [["A", "0", "0", "skipped"], ["B", "0", "2", "written"],
                                                        ["C", "0", "2", "written"]]
    assert _hashes(out / "A") == before  # not rewritten
    assert not leftover.exists() and _hidden(out) == []
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert [(r["series"], r["status"]) for r in summary["series"]] == [("A", "skipped"), ("B", "written"),
                                                                       ("C", "written")]
    assert (summary["written"], summary["skipped"], summary["slices"]) == (2, 1, 4)


def test_overwrite_and_skip_existing_together_are_a_usage_error(tmp_path: Path, checkpoint: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = run_cli(infer.main, ["--checkpoint", str(checkpoint), "--input", str(tmp_path), "--output",
                                str(tmp_path / "out"), "--overwrite", "--skip-existing"])
    assert code == 2 and "pass only one" in capsys.readouterr().err


# --- the summary --------------------------------------------------------------------------------------


def test_summary_json_and_table(tmp_path: Path) -> None:
    records = [
        SeriesRecord.from_result(SeriesResult(tmp_path / "in/A", tmp_path / "out/A", 3, 1.25), tmp_path / "in", 0),
        SeriesRecord.from_result(SeriesResult(tmp_path / "in/B", tmp_path / "out/B", error="B: corrupt"),
                                 tmp_path / "in", 1),
    ]
    path = write_summary(tmp_path / "out", records, world_size=2, seconds=2.0)
    summary = json.loads(path.read_text())
    assert (summary["world_size"], summary["written"], summary["failed"], summary["slices"]) == (2, 1, 1, 3)
    assert summary["slices_per_second"] == 1.5
    assert summary["series"][1] == {"series": "B", "output": str(tmp_path / "out/B"), "slices": 0, "seconds": 0.0,
                                    "rank": 1, "status": "failed", "error": "B: corrupt"}
    table = summary_table(records)
    assert table[0].split() == ["series", "rank", "slices", "seconds", "status", "error"]
    assert table[2].split() == ["B", "1", "0", "0.0", "failed", "B:", "corrupt"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [SUMMARY_NAME]  # no temporary file left


# --- two processes under torchrun ---------------------------------------------------------------------


@pytest.mark.slow
def test_torchrun_splits_the_series_by_slices_and_goes_on_past_a_failure(tmp_path: Path, checkpoint: Path) -> None:
    root, out = tmp_path / "archive", tmp_path / "out"
    for index, slices in enumerate((4, 3, 3, 2)):
        make_ct_series(root / f"P{index}" / "s", n_slices=slices, rows=48, columns=48, seed=index)
    broken = make_ct_series(root / "Q" / "s", n_slices=2, rows=48, columns=48)
    broken[0].write_bytes(broken[0].read_bytes()[:400])

    run = subprocess.run(_torchrun("--checkpoint", str(checkpoint), "--input", str(root), "--output", str(out)),
                         capture_output=True, text=True, timeout=240, env=ENV)

    assert run.returncode == 1, run.stderr  # a series failed
    summary = json.loads((out / SUMMARY_NAME).read_text())
    records = {r["series"]: r for r in summary["series"]}
    assert summary["world_size"] == 2 and sorted(records) == ["P0/s", "P1/s", "P2/s", "P3/s", "Q/s"]
    # longest processing time: P0 (4) -> 0, P1 (3) -> 1, P2 (3) -> 1, P3 (2) -> 0, Q (2) -> 0: 6 + 2 and 6 slices
    assert {name: r["rank"] for name, r in records.items()} == {"P0/s": 0, "P1/s": 1, "P2/s": 1, "P3/s": 0, "Q/s": 0}
    assert records["Q/s"]["status"] == "failed" and str(broken[0]) in records["Q/s"]["error"]
    for index, slices in enumerate((4, 3, 3, 2)):
        record, series = records[f"P{index}/s"], out / f"P{index}" / "s"
        assert (record["status"], record["slices"], record["error"]) == ("written", slices, None)
        headers = [pydicom.dcmread(p) for p in series.iterdir()]
        assert len(headers) == slices and len({ds.SeriesInstanceUID for ds in headers}) == 1  # written once
    assert not (out / "Q").exists() and _hidden(out) == []
    assert "P0/s       0       4" in run.stderr and "denoised 4 of 5 series (12 slices); 1 failed:" in run.stderr


def _workers(parent: int) -> dict[int, int]:
    """Rank -> pid of the worker processes torchrun (``parent``) started."""
    workers = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0") if ppid == parent else []
        except OSError:  # the process ended meanwhile
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                workers[int(item[5:])] = int(entry.name)
    return workers


@pytest.mark.slow
def test_a_killed_rank_is_resumed_with_skip_existing_to_the_same_pixels(tmp_path: Path, checkpoint: Path) -> None:
    root, out, reference = tmp_path / "archive", tmp_path / "out", tmp_path / "reference"
    names = [f"S{index}" for index in range(6)]
    for index, name in enumerate(names):
        make_ct_series(root / name, n_slices=4, rows=64, columns=64, seed=index)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the same arithmetic as the one-thread torchrun workers
    try:
        assert all(r.ok for r in denoise_series(checkpoint, root, reference, device="cpu"))
    finally:
        torch.set_num_threads(threads)

    command = _torchrun("--checkpoint", str(checkpoint), "--input", str(root), "--output", str(out))
    launcher = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while not any(output_complete(out / name) for name in names):
            assert time.monotonic() < deadline and launcher.poll() is None, "no series was written"
            time.sleep(0.02)
        workers = _workers(launcher.pid)
        os.kill(workers[1], signal.SIGKILL)  # a rank dies mid-way; torchrun then stops the other one
        assert launcher.wait(timeout=60) != 0
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    done = [name for name in names if output_complete(out / name)]
    assert 1 <= len(done) < len(names), done
    stale = partial_path(out / names[-1])  # what a write cut short leaves, whatever this kill happened to hit
    stale.mkdir()
    kept = {name: _hashes(out / name) for name in done}

    rerun = subprocess.run([*command, "--skip-existing"], capture_output=True, text=True, timeout=240, env=ENV)

    assert rerun.returncode == 0, rerun.stderr
    assert f"skipped {len(done)} whose output exists" in rerun.stdout
    assert "removed" in rerun.stderr and _hidden(out) == []
    summary = json.loads((out / SUMMARY_NAME).read_text())
    assert (summary["skipped"], summary["written"], summary["failed"]) == (len(done), len(names) - len(done), 0)
    assert {name: _hashes(out / name) for name in done} == kept  # the finished series were not written again
    for name in names:
        assert _pixels(out / name) == _pixels(reference / name), name


_FREES_ITS_GROUP = """
import gc, weakref
import torch.distributed as dist
from ldct_clip.sharding import Shard

shard = Shard.from_env("cpu")
world = weakref.ref(dist.group.WORLD)
import torch._dynamo  # what building a model pulls in (timm, open_clip), after the group exists
assert shard.all_gather(shard.rank) == [0, 1]
shard.close()
gc.collect()
assert world() is None, "the process group outlives destroy_process_group: its gloo threads outlive Python"
"""


@pytest.mark.slow
def test_closing_a_shard_frees_its_process_group_so_no_gloo_thread_outlives_python(tmp_path: Path) -> None:
    # a group kept alive by torch.distributed.nn's default arguments made ~1 run in 10 die in std::terminate
    script = tmp_path / "frees_its_group.py"
    script.write_text(_FREES_ITS_GROUP)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=180, env=ENV)
    assert run.returncode == 0, run.stderr
