"""pipelines/ct_generalization.py: conditions simulated once and cached, one table and figure, one-line errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from dicom_factory import make_ct_series, phantom_hu
from pipeline_scripts import load_pipeline

from ldct_clip import CLIPDenoiser, create_model, save_checkpoint
from ldct_clip.cli import run_cli
from ldct_clip.generalization import (
    CACHE_DIR,
    MARKER_NAME,
    SimulationCache,
    average_slabs,
    build_conditions,
    cache_key,
    run_generalization,
)
from ldct_clip.generalization import run as run_module

QUICK = ["--max-slices", "2", "--projector", "torch", "--device", "cpu", "--figure-slices", "1"]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return load_pipeline("ct_generalization")


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 64×64 slices 1 mm apart: the phantom with a little full-dose noise (so flat ROIs have a noise SD)."""
    folder = tmp_path_factory.mktemp("normal") / "series"
    hu = phantom_hu(4, 64, 64) + np.random.default_rng(0).normal(0.0, 5.0, (4, 64, 64))
    make_ct_series(folder, 4, 64, 64, hu=np.round(hu), spacing=(1.0, 0.7, 0.7), patient_id="GEN001")
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return (save_checkpoint(create_model("redcnn", channels=8), folder / "redcnn.safetensors"),
            save_checkpoint(CLIPDenoiser(encoder_weights="random"), folder / "clip.safetensors"))


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "table.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_benchmark_end_to_end_then_a_rerun_takes_every_simulation_from_the_cache(
        script: ModuleType, series: Path, checkpoints: tuple[Path, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench"
    redcnn, clip = checkpoints
    args = ["--input", str(series), "--doses", "0.5", "0.1", "--filters", "ramp", "hann", "--thickness", "1", "2",
            "--output", str(out), *QUICK]
    assert run_cli(script.main, ["--checkpoint", str(redcnn), str(clip), *args]) == 0
    assert "simulations computed: 4, from the cache: 0" in capsys.readouterr().out

    rows = _rows(out)
    keys = ["dose50_ramp_1mm", "dose50_hann_1mm", "dose10_ramp_1mm", "dose10_hann_1mm",
            "dose50_ramp_2mm", "dose50_hann_2mm", "dose10_ramp_2mm", "dose10_hann_2mm"]
    assert list(dict.fromkeys(r["condition"] for r in rows)) == keys
    assert {r["method"] for r in rows} == {"model", "clipdenoising", "low_dose", "tv"} and len(rows) == 8 * 4
    by = {(r["condition"], r["method"]): r for r in rows}
    for key in keys:
        assert (out / "conditions" / key / "report.html").is_file()
        assert by[(key, "model")]["psnr_diff_vs_first"] == ""  # the reference
        second = by[(key, "clipdenoising")]
        assert float(second["psnr_ci_low"]) <= float(second["psnr_diff_vs_first"]) <= float(second["psnr_ci_high"])
        assert int(by[(key, "low_dose")]["slices"]) == 2
    for kernel in ("ramp", "hann"):
        for thickness in ("1mm", "2mm"):  # less dose, more noise: the input's PSNR falls
            assert (float(by[(f"dose10_{kernel}_{thickness}", "low_dose")]["psnr_mean"])
                    < float(by[(f"dose50_{kernel}_{thickness}", "low_dose")]["psnr_mean"]))
    # slabs of 2 independent slices: less noise than a thin slice; a sharp ramp noisier than a smooth hann
    noise = {key: float(by[(key, "low_dose")]["noise_sd_hu"]) for key in keys}
    assert noise["dose10_ramp_2mm"] < noise["dose10_ramp_1mm"] and noise["dose10_hann_1mm"] < noise["dose10_ramp_1mm"]
    assert (out / "figures" / "psnr_vs_dose_clipdenoising.png").read_bytes()[:4] == b"\x89PNG"
    assert "conditions/dose10_hann_2mm/report.md" in (out / "report.md").read_text()
    assert "data:image/png;base64," in (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert [c["key"] for c in summary["conditions"]] == keys and summary["settings"]["projector"] == "torch"
    first_seconds = {c["key"]: c["simulation_seconds_per_thin_slice"] for c in summary["conditions"]}
    assert all(s > 0 for s in first_seconds.values())
    assert len(list((out / CACHE_DIR).glob("*.npy"))) == 4  # one per dose and filter: thickness reuses them

    # an existing folder is refused without --overwrite
    assert run_cli(script.main, ["--checkpoint", str(clip), *args]) == 2
    assert "already exists" in capsys.readouterr().err

    def no_simulation(*args: object, **kwargs: object) -> None:
        raise AssertionError("simulated again instead of using the cache")

    monkeypatch.setattr(run_module, "simulate_low_dose", no_simulation)
    assert run_cli(script.main, ["--checkpoint", str(redcnn), *args, "--overwrite"]) == 0
    assert "simulations computed: 0, from the cache: 4" in capsys.readouterr().out
    rows = _rows(out)
    assert len(rows) == 8 * 3 and {r["method"] for r in rows} == {"model", "low_dose", "tv"}
    summary = json.loads((out / "summary.json").read_text())
    assert {c["key"]: c["simulation_seconds_per_thin_slice"] for c in summary["conditions"]} == first_seconds
    assert all(c["simulation_from_cache"] for c in summary["conditions"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


@pytest.mark.slow
def test_mayo_data_root_adds_the_real_quarter_dose_next_to_the_simulated_one(
        checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    root = tmp_path / "mayo"
    full = phantom_hu(3, 48, 48)
    quarter = full + np.random.default_rng(1).normal(0, 40, full.shape)
    for dose, hu in (("full", full), ("quarter", quarter)):
        make_ct_series(root / "L506" / f"{dose}_1mm", 3, 48, 48, hu=np.round(hu), spacing=(1.0, 0.7, 0.7),
                       patient_id="L506", seed=int(dose == "quarter"))
    result = run_generalization([checkpoints[0]], tmp_path / "bench", data_root=root, doses=[0.5, 0.1],
                                filters=["ramp"], thicknesses=[1.0], projector="torch", device="cpu", baselines=(),
                                figure_slices=0)
    assert [c.condition.key for c in result.conditions] == ["dose50_ramp_1mm", "real_dose25_1mm", "dose10_ramp_1mm"]
    real = result.conditions[1].summary["presets"]["clipdenoising"]["methods"]["low_dose"]
    assert real["n"] == 3 and result.conditions[1].simulation_seconds is None
    assert result.settings["patients"][0]["patient"] == "L506"  # type: ignore[index]
    assert (tmp_path / "bench" / MARKER_NAME).is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--doses", "1.5"], "error: --doses 1.5: must be a fraction of the normal dose in (0, 1)"),
        (["--doses", "0"], "error: --doses 0.0: must be a fraction of the normal dose in (0, 1)"),
        (["--filters", "sharp"], "error: --filters 'sharp': unknown FBP filter"),
        (["--thickness", "1.5"], "error: --thickness 1.5: not a whole number of the 1 mm slice spacing"),
        (["--thickness", "5"], "fewer than one 5 mm slab needs (5)"),
        (["--preset", "psnr"], "error: preset 'psnr': unknown for CT"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(script: ModuleType, series: Path, checkpoints: tuple[Path, Path],
                                                  tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  extra: list[str], message: str) -> None:
    args = ["--checkpoint", str(checkpoints[0]), "--input", str(series), "--output", str(tmp_path / "out"), *QUICK]
    assert run_cli(script.main, [*args, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_output_inside_the_input_or_a_foreign_folder_is_refused(script: ModuleType, series: Path,
                                                                 checkpoints: tuple[Path, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--checkpoint", str(checkpoints[0]), "--input", str(series), *QUICK]
    assert run_cli(script.main, [*base, "--output", str(series / "bench")]) == 2
    assert "inside the input" in capsys.readouterr().err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    assert run_cli(script.main, [*base, "--output", str(foreign), "--overwrite"]) == 2
    assert "not a benchmark folder" in capsys.readouterr().err and (foreign / "notes.txt").is_file()
    assert not (series / "bench").exists()


def test_conditions_put_the_real_quarter_dose_beside_the_simulated_one() -> None:
    keys = [c.key for c in build_conditions([0.05, 0.5, 0.25], ["hann", "ramp"], [3.0, 1.0], real=True)]
    assert keys[:5] == ["dose50_hann_1mm", "dose50_ramp_1mm", "dose25_hann_1mm", "dose25_ramp_1mm", "real_dose25_1mm"]
    assert keys[5:7] == ["dose5_hann_1mm", "dose5_ramp_1mm"] and len(keys) == 14 and keys[-1] == "dose5_ramp_3mm"


def test_averaging_n_independent_slices_lowers_the_noise_by_sqrt_n() -> None:
    noise = np.random.default_rng(0).normal(0.0, 30.0, (300, 32, 32)).astype(np.float32)
    slabs, positions = average_slabs(noise, np.arange(300.0), 3)
    assert slabs.shape == (100, 32, 32) and positions[:2].tolist() == [1.0, 4.0]
    assert abs(slabs.std() / noise.std() - 1 / np.sqrt(3)) < 0.01


def test_cache_hits_the_previous_folder_and_keys_on_every_parameter(tmp_path: Path) -> None:
    parameters = {"dose": 0.25, "filter": "ramp", "seed": 0, "source": [["a.dcm", 10, 5]]}
    key = cache_key(parameters)
    assert key != cache_key({**parameters, "source": [["a.dcm", 10, 6]]})  # a touched source file
    assert key != cache_key({**parameters, "seed": 1}) and key != cache_key({**parameters, "filter": "hann"})
    old = SimulationCache(tmp_path / "old" / CACHE_DIR)
    hu = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    assert not old.put(key, hu, 1.5, parameters).hit
    new = SimulationCache(tmp_path / "new" / CACHE_DIR, previous=tmp_path / "old" / CACHE_DIR)
    assert new.get(key, (3, 2, 2)) is None  # another slice selection: not this entry
    found = new.get(key, (2, 2, 2))
    assert found is not None and found.hit and found.seconds == 1.5 and np.array_equal(found.hu, hu)
    assert (tmp_path / "new" / CACHE_DIR / f"{key}.npy").is_file()  # carried into the new folder


@pytest.mark.slow
def test_demo_runs_a_small_benchmark_on_its_test_patient(checkpoints: tuple[Path, Path], tmp_path: Path) -> None:
    """The plumbing behind ``python -m ldct_clip.demo --doses`` (the whole demo takes minutes)."""
    from ldct_clip import demo

    data_root = tmp_path / "data"
    hu = phantom_hu(3, 64, 64) + np.random.default_rng(2).normal(0.0, 5.0, (3, 64, 64))
    make_ct_series(data_root / demo.TEST_PATIENT / "full_1mm", 3, 64, 64, hu=np.round(hu), spacing=(1.0, 0.7, 0.7))
    folder = demo.run_demo_generalization(tmp_path, data_root, checkpoints[:1], ["RED-CNN (demo)"], [0.5],
                                          device="cpu", progress=False)
    assert folder == tmp_path / "generalization"
    rows = _rows(folder)
    assert [r["condition"] for r in rows if r["method"] == "model"] == ["dose50_ramp_1mm", "dose50_hann_1mm"]
    assert rows[0]["label"] == "RED-CNN (demo)" and {r["slices"] for r in rows} == {str(demo.GENERALIZATION_SLICES)}


def test_demo_doses_option_reaches_run_demo_and_a_bad_dose_fails_first(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from ldct_clip import demo
    from ldct_clip.errors import InputError

    seen: dict[str, object] = {}

    class Stop(Exception):
        pass

    def fake_run_demo(*args: object, **kwargs: object) -> None:
        seen.update(kwargs)
        raise Stop

    with monkeypatch.context() as patch:
        patch.setattr(demo, "run_demo", fake_run_demo)
        with pytest.raises(Stop):
            demo.main(["--output", str(tmp_path / "d"), "--doses", "0.5", "0.1", "--device", "cpu"])
    assert seen["doses"] == [0.5, 0.1]
    with pytest.raises(InputError, match=r"--doses 2\.0: must be a fraction"):
        demo.run_demo(tmp_path / "d", doses=[2.0], encoder_weights="random")
    assert not (tmp_path / "d").exists()
