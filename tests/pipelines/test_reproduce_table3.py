"""pipelines/reproduce_table3.py: four runs, one evaluation on L506, the table beside the quoted rows, resumable."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import ModuleType

import pytest
from pipeline_scripts import load_pipeline

from ldct_clip.cli import EXIT_USER_ERROR, run_cli
from ldct_clip.evaluation import published_rows

METHODS = ("clipdenoising", "noise2sim", "scoresde_ct", "redcnn")
SMALL = ["noise2sim:model.features=[8,16,32]", "redcnn:model.channels=8", "redcnn:data.patches_per_slice=2",
         "scoresde_ct:model.image_size=32", "scoresde_ct:model.attn_resolutions=[8]", "scoresde_ct:model.n=2",
         "scoresde_ct:schedule.warmup_iterations=1"]
FAST = ["data.patch_size=32", "schedule.iterations=2", "train.batch_size=2", "train.val_every=2",
        "train.log_every=1", "train.checkpoint_every=2", "schedule.milestones=[]", "data.val_max_slices=1"]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_pipeline("reproduce_table3")


@pytest.fixture(scope="module")
def mayo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """L067 and L096 train, L506 is Table 3's test patient (L333 is Noise2Sim's second test patient, so its
    split leaves it out of training); four 64×64 slices each, quarter = full + 40 HU noise."""
    from dicom_factory import make_mayo_tree

    return make_mayo_tree(tmp_path_factory.mktemp("mayo"), ("L067", "L096", "L333", "L506"), 4, 64)


def _argv(root: Path, out: Path, *extra: str) -> list[str]:
    sets = [a for kv in (*SMALL, *FAST) for a in ("--set", kv)]
    return ["--data-root", str(root), "--output", str(out), "--smoke", "--device", "cpu", "--no-progress", *sets,
            *extra]


@pytest.mark.slow
def test_trains_four_methods_writes_table3_and_resumes(script: ModuleType, mayo_root: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t3"
    assert run_cli(script.main, _argv(mayo_root, out, "--score-steps", "2")) == 0
    printed = capsys.readouterr().out
    for method in METHODS:
        run = out / "runs" / method
        assert (run / "checkpoints" / "last.safetensors").is_file()
        assert json.loads((run / "run.json").read_text())["method"] == method
    table = (out / "table3.md").read_text()
    assert table in printed  # the table is printed as written
    measured = [line for line in table.splitlines() if "| measured |" in line]
    assert [line.split("|")[1].strip() for line in measured] == [
        "CLIPDenoising [random encoder]", "Noise2Sim", "ScoreSDE-CT", "RED-CNN", "Low-dose input", "TV (Chambolle)"]
    quoted = [line for line in table.splitlines() if "| quoted (paper) |" in line]
    assert [line.split("|")[1].strip() for line in quoted] == [r.method for r in published_rows("clipdenoising")]
    assert "2 steps (5 network evaluations per slice" in table
    assert "RANDOMLY INITIALISED" in table and "L506" in table
    # every measured model row has a CI against the low-dose input: "+x.xx [+a.aa, +b.bb]"
    for line in measured[:4]:
        cells = [c.strip() for c in line.split("|")]
        assert "[" in cells[5] and "]" in cells[5] and "[" in cells[6], line
    assert "reference" in measured[0]  # CLIPDenoising is the reference of the second pair of columns

    rows = list(csv.DictReader((out / "table3.csv").open()))
    assert [r["source"] for r in rows] == ["measured"] * 6 + ["quoted"] * 4
    n2s = rows[1]
    low = float(n2s["d_psnr_vs_low_dose_ci_low"]), float(n2s["d_psnr_vs_low_dose_ci_high"])
    assert low[0] <= float(n2s["d_psnr_vs_low_dose"]) <= low[1]
    assert float(rows[4]["psnr_mean"]) == pytest.approx(
        float(n2s["psnr_mean"]) - float(n2s["d_psnr_vs_low_dose"]), abs=1e-6)
    assert (out / "report" / "report.md").is_file() and (out / "report" / "metrics.csv").is_file()
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary  # the full report is written beside the table

    # rerun: every run is finished, so nothing trains again (run.json and checkpoints untouched)
    stamps = {m: ((out / "runs" / m / "run.json").stat().st_mtime_ns,
                  (out / "runs" / m / "checkpoints" / "resume.safetensors").stat().st_mtime_ns) for m in METHODS}
    assert run_cli(script.main, _argv(mayo_root, out, "--score-steps", "2")) == 0
    assert "skipped" in capsys.readouterr().out
    for method in METHODS:
        assert ((out / "runs" / method / "run.json").stat().st_mtime_ns,
                (out / "runs" / method / "checkpoints" / "resume.safetensors").stat().st_mtime_ns) == stamps[method]
        assert "resumed" not in json.loads((out / "runs" / method / "run.json").read_text())

    # a run folder trained with another recipe is refused rather than mixed with this one
    assert run_cli(script.main, _argv(mayo_root, out, "--set", "redcnn:schedule.iterations=3")) == EXIT_USER_ERROR
    assert "other settings (schedule.iterations differ)" in capsys.readouterr().err


def test_an_interrupted_run_resumes_from_its_saved_step(script: ModuleType, mayo_root: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """A wall-clock budget that runs out after every step stands in for a killed job: each call continues
    from the step the last one saved, and the finished run is then skipped."""
    overrides = script.parse_overrides([*SMALL, *FAST, "train.max_minutes=0.000001"])
    config = script.method_config("redcnn", script.CONFIGS_DIR, str(mayo_root), True, None, overrides, "cpu")
    run_dir = tmp_path / "redcnn"
    first = script.train_method(config, run_dir)
    assert (first.state, first.step) == ("resume", 1)
    second = script.train_method(config, run_dir)
    assert "resuming at step 1 of 2" in capsys.readouterr().out
    assert (second.state, second.step) == ("done", 2)
    assert len(json.loads((run_dir / "run.json").read_text())["resumed"]) == 1
    assert script.train_method(config, run_dir).state == "done"
    assert "skipped" in capsys.readouterr().out


def test_bad_input_is_one_line(script: ModuleType, mayo_root: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (["--data-root", str(mayo_root), "--output", str(tmp_path / "o")], "--encoder-weights"),
        (_argv(mayo_root, tmp_path / "o", "--set", "bogus:model.n=2"), "unknown method 'bogus'"),
        (_argv(mayo_root, tmp_path / "o", "--set", "noequals"), "expected KEY=VALUE"),
        (_argv(mayo_root, tmp_path / "o", "--score-steps", "0"), "--score-steps 0"),
        (_argv(mayo_root, mayo_root / "out"), "inside the data root"),
        (_argv(mayo_root, tmp_path / "o", "--configs-dir", str(tmp_path)), "config not found"),
    ]
    for argv, message in cases:
        assert run_cli(script.main, argv) == EXIT_USER_ERROR
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
