"""Every method trains through the one training loop, writes checkpoints that name it, and resumes exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from ldct_clip import load_checkpoint
from ldct_clip.config import load_config
from ldct_clip.errors import InputError
from ldct_clip.train import main as train_main
from ldct_clip.training import Trainer

ROOT = Path(__file__).resolve().parents[2]
SMALL = {"noise2sim": ["model.features=[8,16,32]", "data.patch_size=32"],
         "redcnn": ["model.channels=8", "data.patch_size=32", "data.patches_per_slice=2"],
         "scoresde_ct": ["model.image_size=32", "model.attn_resolutions=[8]", "model.n=2", "data.patch_size=32",
                         "schedule.warmup_iterations=1"]}
FAST = ["schedule.iterations=4", "train.batch_size=2", "train.val_every=2", "train.log_every=1",
        "train.checkpoint_every=2", "schedule.milestones=[]"]


@pytest.fixture(scope="module")
def mayo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four patients (L067, L096 train; L333, L506 test) of four 48×48 slices, quarter = full + 40 HU noise."""
    from dicom_factory import make_mayo_tree

    return make_mayo_tree(tmp_path_factory.mktemp("mayo"), ("L067", "L096", "L333", "L506"), 4, 48)


def _args(method: str, root: Path, out: Path, *extra: str) -> list[str]:
    sets = [*SMALL[method], *FAST, *extra]
    return ["--config", str(ROOT / "configs" / f"{method}_mayo_smoke.yaml"), "--data-root", str(root),
            "--output-dir", str(out), *[a for kv in sets for a in ("--set", kv)]]


@pytest.mark.parametrize("method", sorted(SMALL))
def test_method_trains_and_its_checkpoints_name_it(method: str, mayo_root: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert train_main(_args(method, mayo_root, tmp_path / "run")) == 0
    out = capsys.readouterr()
    assert "low-dose input" in out.err + out.out  # validation prints the input's own PSNR beside the model's
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    if method == "scoresde_ct":  # the weight average is what is validated and saved
        assert load_config(tmp_path / "run" / "config.yaml").optim.ema_decay == 0.99
    assert info["method"] == method and info["encoder_weights"] is None
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in records if "val_psnr" in r]
    assert val and all(np.isfinite(r["val_input_psnr"]) for r in val)
    model = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert model.method == method
    with safe_open(str(tmp_path / "run" / "checkpoints" / "last.safetensors"), framework="pt") as f:
        assert not any(k.startswith("training/") for k in f.keys())  # the model file holds the model only


def test_noise2sim_can_learn_from_the_test_patients_low_dose(mayo_root: Path, tmp_path: Path) -> None:
    config = load_config(ROOT / "configs" / "noise2sim_mayo_smoke.yaml",
                         [*SMALL["noise2sim"], *FAST, f"data.root={mayo_root}", "data.train_on_test_low_dose=true"])
    trainer = Trainer(config, tmp_path / "run")
    assert trainer.data.split_info["low_dose_training_patients"] == ["L067", "L096", "L333", "L506"]
    assert trainer.data.split_info["train"] == ["L067", "L096"]


def test_a_kill_during_any_save_resumes_exactly(mayo_root: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights and training state are one atomic file: killed inside any save, the resumed run ends where an
    uninterrupted one does, tensor for tensor."""
    import ldct_clip.training.loop as training

    args = lambda out: _args("redcnn", mayo_root, out)  # noqa: E731
    assert train_main(args(tmp_path / "whole")) == 0
    with safe_open(str(tmp_path / "whole" / "checkpoints" / "last.safetensors"), framework="pt") as f:
        whole = {k: f.get_tensor(k) for k in f.keys()}
    original = training.save_checkpoint
    saves_per_checkpoint = 3  # resume, last, best (validation at every checkpoint here)
    for kill_at in range(1, saves_per_checkpoint + 2):
        calls = {"n": 0}

        def killed(*a: object, **k: object) -> object:
            calls["n"] += 1
            if calls["n"] == kill_at:
                raise KeyboardInterrupt  # as if the process died inside this write
            return original(*a, **k)

        out = tmp_path / f"cut{kill_at}"
        monkeypatch.setattr(training, "save_checkpoint", killed)
        with pytest.raises(KeyboardInterrupt):
            train_main(args(out))
        monkeypatch.setattr(training, "save_checkpoint", original)
        if not (out / "checkpoints" / "resume.safetensors").exists():  # killed in the very first save
            assert train_main(args(tmp_path / f"fresh{kill_at}")) == 0
            continue
        assert train_main(["--resume", str(out)]) == 0
        with safe_open(str(out / "checkpoints" / "last.safetensors"), framework="pt") as f:
            resumed = {k: f.get_tensor(k) for k in f.keys()}
        assert resumed.keys() == whole.keys()
        assert all(torch.equal(resumed[k], whole[k]) for k in whole), kill_at


def test_foreign_training_state_is_one_line(mayo_root: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    assert train_main(_args("redcnn", mayo_root, tmp_path / "run")) == 0
    path = tmp_path / "run" / "checkpoints" / "resume.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    state = json.loads(meta["training_state"])
    del state["optimizer"]
    save_file(tensors, str(path), metadata={**meta, "training_state": json.dumps(state)})
    with pytest.raises(InputError, match="training state does not fit this run"):
        train_main(["--resume", str(tmp_path / "run")])
