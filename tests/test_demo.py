"""python -m ldct_clip.demo: real CT slices -> simulated low dose -> training -> denoised series -> report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from open_clip.modified_resnet import ModifiedResNet
from safetensors.torch import save_file

from ldct_clip import demo
from ldct_clip.data.mayo import scan_mayo
from ldct_clip.errors import InputError
from ldct_clip.io import read_nifti, read_series
from ldct_clip.models import encoder as encoder_module
from ldct_clip.simulate import FULL_DOSE_FOLDER, LOW_DOSE_FOLDER, RECORD_NAME

OFFLINE = "huggingface.co cannot be reached (test)"


def _offline() -> Path:
    raise InputError(f"encoder_weights='openai': {OFFLINE}")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """One tiny demo through the command's main(): 64×64 slices, two iterations, no network."""
    folder = tmp_path_factory.mktemp("demo") / "out"
    with pytest.MonkeyPatch.context() as mp, _capture() as captured:
        mp.setattr(encoder_module, "_download_openai", _offline)
        code = demo.main(["--output", str(folder), "--iterations", "2", "--slice-size", "64", "--device", "cpu"])
    assert code == 0
    return folder, *captured


class _capture:
    """Capture stdout/stderr written through sys.stdout/sys.stderr (module-scoped, so not capsys)."""

    def __enter__(self) -> list[str]:
        import io

        self.out, self.err = io.StringIO(), io.StringIO()
        self.saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self.out, self.err
        self.result: list[str] = []
        return self.result

    def __exit__(self, *exc: object) -> None:
        sys.stdout, sys.stderr = self.saved
        self.result.extend([self.out.getvalue(), self.err.getvalue()])


def test_demo_leaves_data_run_series_and_a_complete_report(demo_run: tuple[Path, str, str]) -> None:
    folder, out, _ = demo_run
    summary = json.loads((folder / demo.SUMMARY_NAME).read_text())
    # Mayo-layout data with simulated quarter dose, paired slice by slice
    data = folder / "data"
    for patient, names in demo.DEMO_PATIENTS.items():
        record = json.loads((data / patient / RECORD_NAME).read_text())
        assert record["dose"] == demo.DOSE
        full = read_series(data / patient / FULL_DOSE_FOLDER)
        low = read_series(data / patient / LOW_DOSE_FOLDER)
        assert full.shape == low.shape == (len(names), 64, 64)
        assert 5.0 < np.std(low.hu - full.hu) < 500.0  # noise was added, the anatomy kept
        np.testing.assert_allclose(full.hu, read_nifti(folder / "sources" / f"{patient}.nii.gz").hu, atol=0.5)
    assert len(scan_mayo(data).pairs()) == 5
    # training run and checkpoint
    checkpoint = Path(summary["checkpoint"])
    assert checkpoint.is_file() and checkpoint.name == "last.safetensors"
    assert (folder / "run" / "run.json").is_file() and (folder / "run" / "curves.png").is_file()
    for method in demo.COMPARISON_METHODS:  # the comparison methods trained beside it, each in its own run
        info = json.loads((folder / f"run_{method}" / "run.json").read_text())
        assert info["method"] == method
    # the denoised series, a new DICOM series beside the low-dose one
    denoised = read_series(summary["denoised_series"])
    low = read_series(data / demo.TEST_PATIENT / LOW_DOSE_FOLDER)
    assert denoised.shape == low.shape and not np.array_equal(denoised.hu, low.hu)
    assert denoised.slice_headers is not None and low.slice_headers is not None
    assert denoised.slice_headers[0].SeriesInstanceUID != low.slice_headers[0].SeriesInstanceUID
    assert "ldct_clip denoised" in denoised.slice_headers[0].SeriesDescription
    # the report: every file, the model beside input and TV, and the demo's notes
    report = folder / "report"
    for name in ("report.md", "report.html", "metrics.csv", "summary.json"):
        assert (report / name).is_file(), name
    assert sorted(p.name for p in (report / "figures").iterdir()) == [
        "psnr_clipdenoising.png", "slice_0000.png", "slice_0001.png"]
    scores = json.loads((report / "summary.json").read_text())
    assert scores["patients"] == [demo.TEST_PATIENT] and scores["slices"] == 2
    assert {"model", "low_dose", "tv"} <= {m["key"] for m in scores["methods"]}
    assert any("pydicom's test data" in note for note in scores["notes"])
    # the terminal says where everything is
    for key in ("denoised_series", "figures", "checkpoint"):
        assert summary[key] in out
    assert str(report / "report.html") in out


def test_offline_openai_falls_back_to_random_loudly_in_terminal_and_report(demo_run: tuple[Path, str, str]) -> None:
    folder, _, err = demo_run
    summary = json.loads((folder / demo.SUMMARY_NAME).read_text())
    assert summary["encoder_weights"] == "random" and OFFLINE in summary["random_encoder_reason"]
    assert err.count("RANDOMLY INITIALISED encoder: its numbers are NOT CLIPDenoising's") == 2  # start and end
    markdown = (folder / "report" / "report.md").read_text()
    assert "[random encoder]" in markdown and OFFLINE in markdown and "NOT CLIPDenoising's" in markdown
    assert json.loads((folder / "report" / "summary.json").read_text())["model"]["encoder_is_random"] is True


def test_openai_weights_are_used_when_they_can_be_had(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torch.manual_seed(0)
    visual = ModifiedResNet(layers=(3, 4, 6, 3), output_dim=1024, heads=32, image_size=224, width=64)
    weights = tmp_path / "open_clip_pytorch_model.safetensors"
    save_file({f"visual.{k}": v.contiguous() for k, v in visual.state_dict().items()}, str(weights))
    monkeypatch.setattr(encoder_module, "_download_openai", lambda: weights)
    assert demo.choose_encoder_weights("openai") == ("openai", None)
    monkeypatch.setattr(encoder_module, "_download_openai", _offline)
    chosen, reason = demo.choose_encoder_weights("openai")
    assert chosen == "random" and reason is not None and OFFLINE in reason


def test_only_openai_falls_back(tmp_path: Path) -> None:
    """A weights file the user names must load; the demo never swaps it for a random encoder."""
    with pytest.raises(InputError, match="RN50.pt"):
        demo.run_demo(tmp_path / "out", encoder_weights=str(tmp_path / "RN50.pt"))
    assert not (tmp_path / "out").exists()


def test_existing_folders_are_refused_or_replaced_only_when_the_demo_made_them(tmp_path: Path) -> None:
    own = tmp_path / "mine"
    own.mkdir()
    (own / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="already holds files; pass another --output or --overwrite"):
        demo.run_demo(own)
    with pytest.raises(InputError, match="not a demo folder"):
        demo.run_demo(own, overwrite=True)
    assert (own / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--minutes", "0"], "--minutes 0.0: must be a positive number"),
        (["--iterations", "0"], "--iterations 0: must be a positive integer"),
        (["--slice-size", "32"], "--slice-size 32: must be an integer of at least 64"),
    ],
)
def test_bad_arguments_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    run = subprocess.run([sys.executable, "-m", "ldct_clip.demo", "--output", str(tmp_path / "out"), *args],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().startswith(f"error: {message}")
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_without_iterations_each_schedule_is_fitted_to_its_budget(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """The demo's configs ask steps_in_budget how many steps of that very recipe fit, and span exactly those."""
    probes = []

    def fake_steps(config, minutes: float, minimum: int) -> int:  # noqa: ANN001
        probes.append((config.method, config.schedule.iterations, config.train.max_minutes, minutes, minimum))
        return 40

    monkeypatch.setattr(demo, "steps_in_budget", fake_steps)
    clip = demo.demo_config(tmp_path, 2.5, "random")
    noise2sim = demo.comparison_config("noise2sim", tmp_path, 1.5)
    score = demo.comparison_config("scoresde_ct", tmp_path, 3.0)
    assert [c.schedule.iterations for c in (clip, noise2sim, score)] == [40, 40, 40]
    assert score.schedule.warmup_iterations == 4 and clip.train.val_every == 10  # derived from the fitted length
    assert probes == [("clipdenoising", demo.MIN_ITERATIONS, 2.5, 2.5, demo.MIN_ITERATIONS),
                      ("noise2sim", demo.MIN_ITERATIONS, 1.5, 1.5, demo.MIN_ITERATIONS),
                      ("scoresde_ct", demo.MIN_ITERATIONS, 3.0, 3.0, demo.MIN_ITERATIONS)]
    assert demo.demo_config(tmp_path, 2.5, "random", iterations=7).schedule.iterations == 7 and len(probes) == 3


def test_with_scoresde_trains_and_reports_the_score_model_too(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    code = demo.main(["--output", str(tmp_path / "out"), "--iterations", "2", "--slice-size", "64", "--device", "cpu",
                      "--encoder-weights", "random", "--with-scoresde"])
    assert code == 0
    assert (tmp_path / "out" / "run_scoresde_ct" / "checkpoints" / "last.safetensors").is_file()
    summary = json.loads((tmp_path / "out" / "report" / "summary.json").read_text())
    labels = [m["label"] for m in summary["methods"]]
    assert any(label.startswith("ScoreSDE-CT") for label in labels), labels
    assert "ScoreSDE-CT 30%" in capsys.readouterr().out
