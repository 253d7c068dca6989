"""The training loop and CLI on tiny image folders: runs, learns, resumes exactly, reports clearly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ldct_clip import load_checkpoint
from ldct_clip.cli import run_cli
from ldct_clip.config import ScheduleConfig, config_from_dict
from ldct_clip.train import main as train_main
from ldct_clip.training import StepBatchSampler, Trainer, build_scheduler

ROOT = Path(__file__).resolve().parents[1]
FAST = ["schedule.iterations=4", "schedule.flat_iterations=0", "train.batch_size=2", "data.patch_size=32",
        "train.val_every=2", "train.log_every=1", "train.checkpoint_every=2", "data.workers=0"]


def _write_images(folder: Path, n: int, size: int = 48, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        smooth = 0.5 + 0.4 * np.sin(xx / (4 + i) + i)[..., None] * np.cos(yy / 7)[..., None] * np.array([1, 0.8, 0.6])
        noise = rng.normal(0, 0.01, smooth.shape)
        Image.fromarray((np.clip(smooth + noise, 0, 1) * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("images")
    train, val = _write_images(base / "train", 3), _write_images(base / "val", 1, seed=1)
    for name, src in (("paired_train", train), ("paired_val", val)):
        clean = base / name / "clean"
        noisy = base / name / "noisy"
        clean.mkdir(parents=True)
        noisy.mkdir(parents=True)
        rng = np.random.default_rng(3)
        for p in sorted(src.glob("*.png")):
            img = np.asarray(Image.open(p)).astype(np.float32)
            Image.fromarray(img.astype(np.uint8)).save(clean / p.name)
            Image.fromarray(np.clip(img + rng.normal(0, 10, img.shape), 0, 255).astype(np.uint8)).save(noisy / p.name)
    return {"train": train, "val": val, "paired_train": base / "paired_train", "paired_val": base / "paired_val"}


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    ("config", "data", "val"),
    [("natural_gaussian_sigma15_smoke", "train", "val"), ("srgb_poisson_gaussian_smoke", "paired_train", "paired_val")],
)
def test_image_configs_train_through_the_cli(images: dict[str, Path], tmp_path: Path, config: str, data: str,
                                             val: str, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    code = train_main(["--config", str(ROOT / "configs" / f"{config}.yaml"), "--data-root", str(images[data]),
                       "--output-dir", str(run_dir), "--set", f"data.val_root={images[val]}",
                       *[arg for kv in FAST for arg in ("--set", kv)]])
    assert code == 0
    assert "validation      : PSNR" in capsys.readouterr().out
    info = json.loads((run_dir / "run.json").read_text())
    assert info["encoder_weights"] == "random" and info["encoder_is_random"] is True
    assert info["seed"] == 100 and info["config"]["schedule"]["iterations"] == 4
    assert info["packages"]["torch"] == torch.__version__.split("+")[0]
    assert (run_dir / "config.yaml").is_file() and (run_dir / "curves.png").stat().st_size > 1000
    records = _records(run_dir)
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in records if "val_psnr" in r] == [2, 4]
    model = load_checkpoint(run_dir / "checkpoints" / "last.safetensors")
    assert model.in_channels == 3
    assert (run_dir / "checkpoints" / "best.safetensors").is_file()


def _fixed_set_config(**changes: object) -> object:
    raw = {"name": "t", "model": {"in_channels": 3, "encoder_weights": "random"},
           "data": {"kind": "image_folder", "patch_size": 32, "workers": 0, "noise_sigma": 25.0},
           "schedule": {"iterations": 50}, "train": {"batch_size": 2, "val_every": 1000, "log_every": 1,
                                                      "checkpoint_every": 1000, "device": "cpu"}}
    overrides = [f"{k}={v}" for k, v in changes.items()]
    return config_from_dict(raw, overrides)


def test_loss_falls_on_a_tiny_fixed_set(images: dict[str, Path], tmp_path: Path) -> None:
    config = _fixed_set_config(**{"data.root": str(images["train"]), "data.val_root": str(images["val"]),
                                  "optim.lr": 1e-3})
    Trainer(config, tmp_path / "run").run()
    losses = [r["loss"] for r in _records(tmp_path / "run") if "loss" in r]
    assert len(losses) == 50
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:5])


def test_interrupted_and_resumed_run_continues_exactly(images: dict[str, Path], tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    sets = ["schedule.iterations=6", "train.checkpoint_every=3", "data.workers=1"]
    args = ["--config", str(ROOT / "configs" / "natural_gaussian_sigma15_smoke.yaml"), "--data-root",
            str(images["train"]), "--set", f"data.val_root={images['val']}", "--set", "data.patch_size=32",
            "--set", "train.batch_size=2", "--set", "train.log_every=1", "--set", "train.val_every=100",
            "--set", "schedule.flat_iterations=0", *[a for kv in sets for a in ("--set", kv)]]
    assert train_main([*args, "--output-dir", str(tmp_path / "whole")]) == 0

    original = Trainer.train_step

    def crash_after_three(self: Trainer, batch: dict) -> float:
        if self.step == 4:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(Trainer, "train_step", crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        train_main([*args, "--output-dir", str(tmp_path / "cut")])
    monkeypatch.setattr(Trainer, "train_step", original)
    assert train_main(["--resume", str(tmp_path / "cut")]) == 0

    whole = {r["step"]: r["last_loss"] for r in _records(tmp_path / "whole") if "loss" in r}
    cut = {r["step"]: r["last_loss"] for r in _records(tmp_path / "cut") if "loss" in r}
    assert set(cut) == set(whole) == {1, 2, 3, 4, 5, 6}
    for step in (4, 5, 6):
        assert cut[step] == pytest.approx(whole[step], rel=1e-6, abs=1e-7), step
    resumed = json.loads((tmp_path / "cut" / "run.json").read_text())
    assert len(resumed["resumed"]) == 1


def test_step_batches_depend_only_on_the_step() -> None:
    weights = torch.tensor([1.0, 1.0, 2.0])
    a = list(StepBatchSampler(weights, 4, seed=1, start_step=0, total_steps=5))
    b = list(StepBatchSampler(weights, 4, seed=1, start_step=3, total_steps=5))
    assert a[3:] == b and a[0] != a[1]
    draws = [i for batch in StepBatchSampler(weights, 64, 2, 0, 200) for i, _ in batch]
    share = np.bincount(draws, minlength=3) / len(draws)
    assert share == pytest.approx([0.25, 0.25, 0.5], abs=0.02)


def test_schedule_is_flat_then_cosine_to_eta_min() -> None:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
    sched = build_scheduler(opt, ScheduleConfig(iterations=100, flat_iterations=40, eta_min=1e-6))
    lrs = []
    for _ in range(100):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[0] == lrs[39] == pytest.approx(3e-4)
    assert lrs[70] == pytest.approx(1e-6 + (3e-4 - 1e-6) * 0.5, rel=1e-6)
    assert sched.get_last_lr()[0] == pytest.approx(1e-6)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ldct_clip.train", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def test_cli_errors_are_one_line(tmp_path: Path, images: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    smoke = str(ROOT / "configs" / "ldct_mayo_sigma5_smoke.yaml")
    cases = [
        (("--config", smoke, "--output-dir", str(tmp_path / "a")), "no training data: pass --data-root"),
        (("--config", smoke, "--data-root", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path / "b")),
         "data root not found"),
        (("--config", smoke, "--set", "model.pfa_gama=1"), "did you mean 'model.pfa_gamma'"),
        (("--resume", str(tmp_path)), "no checkpoints/resume.safetensors to resume from"),
        (("--resume", str(tmp_path), "--set", "optim.lr=1e-3"), "drop --config/--set, or start a new run"),
        (("--config", smoke, "--set", "train.metric_preset=clipdenoisng"), "train.metric_preset must be one of"),
        (("--config", str(ROOT / "configs" / "natural_gaussian_sigma15_smoke.yaml"), "--data-root",
          str(images["train"]), "--output-dir", str(tmp_path / "c")), "needs data.val_root"),
    ]
    for args, message in cases:
        assert run_cli(train_main, list(args)) == 2, args
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and message in lines[0], err
    result = _cli("--config", str(tmp_path / "missing.yaml"))  # the real command, end to end
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'missing.yaml'}: config file not found; " \
        "pass one of the YAML files in configs/"


_TRAIN_THEN_CHECK_THE_GROUP = """
import sys
import torch.distributed as dist
from ldct_clip import train

status = train.main(sys.argv[1:])
assert not dist.is_initialized(), "training left its process group (and the group's threads) alive"
sys.exit(status)
"""


def test_torchrun_two_processes_on_cpu(images: dict[str, Path], tmp_path: Path) -> None:
    run_dir = tmp_path / "ddp"
    script = tmp_path / "train_then_check_the_group.py"  # python -m ldct_clip.train, then one check on the way out
    script.write_text(_TRAIN_THEN_CHECK_THE_GROUP)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         "--config", str(ROOT / "configs" / "natural_gaussian_sigma15_smoke.yaml"),
         "--data-root", str(images["train"]), "--output-dir", str(run_dir), "--set", f"data.val_root={images['val']}",
         *[a for kv in FAST for a in ("--set", kv)]],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["world_size"] == 2
    assert [r["step"] for r in _records(run_dir) if "loss" in r] == [1, 2, 3, 4]  # rank 0 logs once per step
    load_checkpoint(run_dir / "checkpoints" / "last.safetensors")


@pytest.fixture(scope="module")
def mayo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three patients in the per-patient Mayo layout: L067 and L096 train, L506 is the clipdenoising test."""
    from dicom_factory import make_mayo_tree

    return make_mayo_tree(tmp_path_factory.mktemp("mayo"), ("L067", "L096", "L506"), 3, 48)


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_ldct_config_trains_on_a_mayo_tree(mayo_root: Path, tmp_path: Path) -> None:
    before = _snapshot(mayo_root)
    run_dir = tmp_path / "ldct"
    code = train_main(["--config", str(ROOT / "configs" / "ldct_mayo_sigma5_smoke.yaml"), "--data-root",
                       str(mayo_root), "--output-dir", str(run_dir), *[a for kv in FAST for a in ("--set", kv)]])
    assert code == 0
    assert _snapshot(mayo_root) == before  # nothing written inside the data root
    assert (run_dir / "manifest.csv").is_file()
    info = json.loads((run_dir / "run.json").read_text())
    assert info["split"]["train"] == ["L067", "L096"] and info["split"]["test"] == ["L506"]
    assert info["split"]["validation"] == ["L506"]  # the released code's choice, warned about
    val = [r for r in _records(run_dir) if "val_psnr" in r]
    assert val and val[-1]["val_items"] == 2 and np.isfinite(val[-1]["val_psnr"])
    assert load_checkpoint(run_dir / "checkpoints" / "best.safetensors").in_channels == 1
    # the cached manifest is reused, and a manifest file works as --data-root too
    # ... and a training patient held out for validation keeps the test patient out of checkpoint selection
    again = train_main(["--config", str(ROOT / "configs" / "ldct_mayo_sigma5_smoke.yaml"), "--data-root",
                        str(run_dir / "manifest.csv"), "--output-dir", str(tmp_path / "again"),
                        "--set", "data.validation_patients=[L096]", *[a for kv in FAST for a in ("--set", kv)]])
    assert again == 0
    split = json.loads((tmp_path / "again" / "run.json").read_text())["split"]
    assert (split["train"], split["validation"], split["test"]) == (["L067"], ["L096"], ["L506"])


def test_split_without_its_test_patient_is_one_line(mayo_root: Path, tmp_path: Path) -> None:
    result = _cli("--config", str(ROOT / "configs" / "ldct_mayo_sigma5_smoke.yaml"), "--data-root", str(mayo_root),
                  "--set", "data.split=noise2sim", "--output-dir", str(tmp_path / "n2s"))
    assert result.returncode == 2
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "L333" in error[0]


def test_time_budget_stops_early_with_a_resumable_checkpoint(images: dict[str, Path], tmp_path: Path) -> None:
    config = _fixed_set_config(**{"data.root": str(images["train"]), "data.val_root": str(images["val"]),
                                  "schedule.iterations": 1000, "train.max_minutes": 1e-6})
    result = Trainer(config, tmp_path / "run").run()
    records = _records(tmp_path / "run")
    assert records[-1] == {"step": 1, "stopped": "max_minutes"}
    assert result["val_items"] == 1
    assert (tmp_path / "run" / "checkpoints" / "resume.safetensors").is_file()


def test_schedule_fitted_to_a_budget_from_timed_real_steps(images: dict[str, Path], tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Four real steps run (one untimed), their median sizes the schedule, and nothing is left behind."""
    from ldct_clip.training import budget

    steps_run = []
    original = Trainer.train_step

    def counted(self: Trainer, batch: dict) -> float:
        steps_run.append(self.step)
        return original(self, batch)

    clock = iter([0.0, 9.0, 10.0, 10.5, 20.0, 20.4, 30.0, 30.6])  # warm-up 9 s, then 0.5, 0.4, 0.6 s
    monkeypatch.setattr(Trainer, "train_step", counted)
    monkeypatch.setattr(budget, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(budget.tempfile, "tempdir", str(tmp_path))
    config = _fixed_set_config(**{"data.root": str(images["train"]), "data.val_root": str(images["val"]),
                                  "train.max_minutes": 1.0})
    assert budget.steps_in_budget(config, minutes=2.0) == int(120 * (1 - budget.RESERVE) / 0.5)
    assert steps_run == [0, 1, 2, 3]
    assert list(tmp_path.iterdir()) == []  # the probe's scratch run folder is gone
    clock = iter([0.0, 9.0, 10.0, 10.5, 20.0, 20.4, 30.0, 30.6])
    assert budget.steps_in_budget(config, minutes=1e-4, minimum=7) == 7


def test_run_folder_inside_the_data_root_is_refused_before_anything_is_written(mayo_root: Path) -> None:
    before = _snapshot(mayo_root)
    code = run_cli(train_main, ["--config", str(ROOT / "configs" / "ldct_mayo_sigma5_smoke.yaml"), "--data-root",
                                str(mayo_root), "--output-dir", str(mayo_root / "run")])
    assert code == 2 and _snapshot(mayo_root) == before and not (mayo_root / "run").exists()


def test_a_run_that_never_started_leaves_no_folder(mayo_root: Path, tmp_path: Path) -> None:
    """A split whose test patient is missing fails after the manifest scan: the new run folder is removed."""
    code = run_cli(train_main, ["--config", str(ROOT / "configs" / "ldct_mayo_sigma5_smoke.yaml"), "--data-root",
                                str(mayo_root), "--set", "data.split=noise2sim", "--output-dir", str(tmp_path / "r")])
    assert code == 2 and not (tmp_path / "r").exists()
