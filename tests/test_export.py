"""ONNX / TorchScript export: HU round trip at odd sizes, verification before writing, metadata, onnxruntime."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from dicom_factory import make_ct_series

from ldct_clip import __version__, export, exporting, infer
from ldct_clip.cli import run_cli
from ldct_clip.errors import InputError
from ldct_clip.exporting import (
    EXPORT_TOLERANCE_HU,
    EXPORT_TOLERANCE_RGB,
    OnnxDenoiser,
    export_model,
    read_export_metadata,
    verification_input,
)
from ldct_clip.inference import VolumeDenoiser
from ldct_clip.methods import create_model
from ldct_clip.models import save_checkpoint

SMALL = {"redcnn": {"channels": 8}, "noise2sim": {"features": (8, 16, 32)},
         "clipdenoising": {"encoder_weights": "random"}}
SHAPES = [(2, 37, 45), (1, 64, 64), (3, 100, 70)]  # odd sizes, a multiple of 32, and batches of 1, 2 and 3
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
CASES = [pytest.param(name, fmt, marks=[pytest.mark.slow] if name == "clipdenoising" else [])
         for name in SMALL for fmt in SUFFIX]


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    return {name: create_model(name, **settings).eval() for name, settings in SMALL.items()}


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory, models: dict[str, torch.nn.Module]):
    """Exports made on demand, once per (method, format): a dict-like cache."""
    folder = tmp_path_factory.mktemp("exports")
    made: dict[tuple[str, str], Path] = {}

    def get(name: str, fmt: str) -> Path:
        if (name, fmt) not in made:
            path = folder / f"{name}{SUFFIX[fmt]}"
            export_model(models[name], path, fmt, source_sha256="ab" * 32, source_name=f"{name}.safetensors",
                         verify_input=verification_input(1, 64))
            made[name, fmt] = path
        return made[name, fmt]

    return get


def _hu(shape: tuple[int, int, int], seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1000.0, 400.0, shape).astype(np.float32)


@pytest.mark.parametrize(("name", "fmt"), CASES)
def test_export_matches_torch_at_any_batch_and_size(name: str, fmt: str, models, exports) -> None:
    path = exports(name, fmt)
    torch_denoiser = VolumeDenoiser(models[name], batch_size=4, device="cpu")
    for shape in SHAPES:
        hu = _hu(shape)
        expected = torch_denoiser(hu)
        if fmt == "onnx":
            got = OnnxDenoiser(path, batch_size=2, device="cpu")(hu)  # batches of 2 and of 1
        else:
            with torch.inference_mode():
                got = torch.jit.load(str(path))(torch.from_numpy(hu)[:, None]).numpy()[:, 0]
        assert got.shape == shape
        assert np.abs(got - expected).max() <= EXPORT_TOLERANCE_HU / 10, (name, fmt, shape)
        assert np.abs(got - hu).max() > 1.0  # the graph denoises: it is not the identity


@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_metadata_names_the_method_scale_and_source(fmt: str, models, exports) -> None:
    meta = read_export_metadata(exports("noise2sim", fmt))
    assert meta["method"] == "noise2sim" and meta["input_scale"] == "hu" and meta["in_channels"] == "1"
    assert json.loads(meta["settings"]) == models["noise2sim"].settings.to_dict()
    assert "Hounsfield" in meta["input"] and "Hounsfield" in meta["output"]
    assert meta["ldct_clip_version"] == __version__ and meta["source_sha256"] == "ab" * 32
    assert meta["source_checkpoint"] == "noise2sim.safetensors"


@pytest.mark.slow
def test_rgb_model_exports_on_the_unit_scale(tmp_path: Path) -> None:
    model = create_model("clipdenoising", in_channels=3, encoder_weights="random").eval()
    path = tmp_path / "rgb.onnx"
    report = export_model(model, path, "onnx", verify_input=verification_input(3, 64))
    assert report.unit == "[0,1]" and report.max_diff <= EXPORT_TOLERANCE_RGB
    meta = read_export_metadata(path)
    assert meta["input_scale"] == "unit" and meta["in_channels"] == "3" and "[0, 1]" in meta["input"]
    _, ort = exporting.onnx_modules()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image = torch.rand(2, 3, 45, 70, generator=torch.Generator().manual_seed(0))
    got = session.run(None, {"image": image.numpy()})[0]
    with torch.inference_mode():
        expected = model(image).numpy()
    assert got.shape == (2, 3, 45, 70) and np.abs(got - expected).max() <= EXPORT_TOLERANCE_RGB / 10
    with pytest.raises(InputError, match="RGB images"):
        OnnxDenoiser(path, device="cpu")


@pytest.mark.parametrize("fmt", list(SUFFIX))
def test_an_export_beyond_the_tolerance_is_not_written(
    fmt: str, tmp_path: Path, models, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(exporting, "EXPORT_TOLERANCE_HU", -1.0)  # every real difference (even 0) exceeds it
    with pytest.raises(InputError, match=r"model.* not written: the .* export differs from the torch model by up to"):
        export_model(models["redcnn"], tmp_path / f"model{SUFFIX[fmt]}", fmt, verify_input=verification_input(1, 64))
    assert list(tmp_path.iterdir()) == []  # nothing, not even a hidden partial file


def test_cli_exports_a_checkpoint_and_prints_the_differences(
    tmp_path: Path, models, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = save_checkpoint(models["redcnn"], tmp_path / "redcnn.safetensors")
    output = tmp_path / "model.onnx"
    argv = ["--checkpoint", str(checkpoint), "--format", "onnx", "--output", str(output)]
    assert run_cli(export.main, argv) == 0
    line = capsys.readouterr().out.strip()
    assert "verified on a 2x1x512x512 input" in line and "max |diff|" in line and "RMS" in line and "HU" in line
    meta = read_export_metadata(output)
    assert meta["source_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert meta["source_checkpoint"] == "redcnn.safetensors"

    assert run_cli(export.main, argv) == 2  # an existing output is kept
    assert "already exists" in capsys.readouterr().err
    assert run_cli(export.main, [*argv, "--overwrite"]) == 0


def test_sampling_methods_are_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = create_model("scoresde_ct", image_size=32, nf=8, ch_mult=(1, 2, 2), attn_resolutions=(8,), n=2)
    checkpoint = save_checkpoint(model, tmp_path / "score.safetensors")
    code = run_cli(export.main, ["--checkpoint", str(checkpoint), "--output", str(tmp_path / "score.onnx")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "sampler" in err and "not one graph" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["score.safetensors"]


def test_infer_runs_an_onnx_export_like_its_checkpoint(
    tmp_path: Path, models, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = save_checkpoint(models["redcnn"], tmp_path / "redcnn.safetensors")
    onnx_path = tmp_path / "redcnn.onnx"
    export_model(models["redcnn"], onnx_path, "onnx", verify_input=verification_input(1, 64))
    make_ct_series(tmp_path / "in", n_slices=5, rows=48, columns=40)
    common = ["--input", str(tmp_path / "in"), "--device", "cpu", "--batch-size", "2"]

    assert run_cli(infer.main, ["--checkpoint", str(onnx_path), "--output", str(tmp_path / "onnx"), *common]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == "denoised 1 of 1 series (5 slices)" and "5/5" in err and "slice/s" in err
    assert run_cli(infer.main, ["--checkpoint", str(checkpoint), "--output", str(tmp_path / "torch"), *common]) == 0

    def series(folder: Path) -> dict[int, pydicom.Dataset]:
        return {int(ds.InstanceNumber): ds for ds in map(pydicom.dcmread, folder.iterdir())}

    onnx_series, torch_series = series(tmp_path / "onnx"), series(tmp_path / "torch")
    assert sorted(onnx_series) == sorted(torch_series) == [1, 2, 3, 4, 5]
    for number, ds in onnx_series.items():
        stored = ds.pixel_array.astype(np.int64) - torch_series[number].pixel_array
        assert np.abs(stored).max() <= 1  # 1e-4 HU apart before rounding to the stored integers
        assert "ONNX model redcnn.onnx" in ds.DerivationDescription and ds.SeriesInstanceUID
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial outputs

    nifti = ["--format", "nifti", *common]
    assert run_cli(infer.main, ["--checkpoint", str(onnx_path), "--output", str(tmp_path / "o.nii.gz"), *nifti]) == 0
    assert run_cli(infer.main, ["--checkpoint", str(checkpoint), "--output", str(tmp_path / "t.nii.gz"), *nifti]) == 0
    a, b = (np.asarray(nib.load(tmp_path / n).dataobj) for n in ("o.nii.gz", "t.nii.gz"))
    assert a.shape == b.shape and np.abs(a - b).max() <= EXPORT_TOLERANCE_HU


def test_onnx_usage_problems_are_one_line(
    tmp_path: Path, exports, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = exports("redcnn", "onnx")
    make_ct_series(tmp_path / "in", n_slices=2, rows=40, columns=40)
    base = ["--checkpoint", str(path), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    assert run_cli(infer.main, [*base, "--precision", "bf16"]) == 2
    assert "runs in fp32" in capsys.readouterr().err
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert run_cli(infer.main, ["--checkpoint", str(junk), *base[2:]]) == 2
    assert "junk.onnx: not a readable ONNX model" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the extra were not installed
    assert run_cli(infer.main, base) == 2
    assert capsys.readouterr().err == f"error: {exporting.ONNX_EXTRA}\n"


def test_onnx_denoiser_checks_its_input_and_output(exports) -> None:
    denoiser = OnnxDenoiser(exports("redcnn", "onnx"), device="cpu")
    assert denoiser.batch_size == 2 and denoiser.device.type == "cpu"
    bad = _hu((2, 40, 40))
    bad[1, 3, 3] = np.nan
    with pytest.raises(InputError, match="NaN or infinite values in 1 slice"):
        denoiser(bad)
    with pytest.raises(InputError, match="at least 32x32"):
        denoiser(_hu((1, 20, 40)))
    real = denoiser.session

    class BrokenSession:  # the real graph, then slice 2 of each batch made NaN (as from corrupted weights)
        def run(self, names, feeds):
            (y,) = real.run(names, feeds)
            if len(y) > 1:
                y[1, 0, 5, 5] = np.nan
            return [y]

    denoiser.session = BrokenSession()
    assert np.isfinite(denoiser(_hu((1, 40, 40)))).all()
    with pytest.raises(InputError, match="redcnn.onnx: the model's output is NaN or infinite for slice 1:"):
        denoiser(_hu((4, 40, 40)))


def test_onnx_denoiser_uses_the_gpu_torch_was_set_to(exports, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torchrun each rank sets its own GPU (ldct_clip.sharding); the CUDA provider must use that one."""
    import onnxruntime as ort

    path = exports("redcnn", "onnx")  # exported before torch.cuda is patched
    sessions = []

    real_session = ort.InferenceSession

    class Session:  # records the providers, then opens the graph on the CPU
        def __init__(self, path: str, providers: list) -> None:
            sessions.append(providers)
            self.get_inputs = real_session(path, providers=["CPUExecutionProvider"]).get_inputs

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", Session)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    denoiser = OnnxDenoiser(path, device="auto")
    assert denoiser.device == torch.device("cuda", 1)
    assert sessions == [[("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]]
    OnnxDenoiser(path, device="cpu")
    assert sessions[-1] == ["CPUExecutionProvider"]


def test_monai_reads_the_torchscript_export_and_its_metadata(exports) -> None:
    from monai.data import load_net_with_metadata

    net, meta, _ = load_net_with_metadata(str(exports("redcnn", "torchscript")))
    assert meta["method"] == "redcnn" and meta["input_scale"] == "hu"
    hu = torch.from_numpy(_hu((1, 40, 52)))[:, None]
    with torch.inference_mode():
        assert net(hu).shape == (1, 1, 40, 52)
