"""``python -m ldct_clip.infer``: exit codes, one-line errors, batch mode, and nothing partial left behind."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import torch
from dicom_factory import make_ct_series

from ldct_clip import infer
from ldct_clip.cli import run_cli
from ldct_clip.models import CLIPDenoiser, save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(CLIPDenoiser(encoder_weights="random"), tmp_path_factory.mktemp("ckpt") / "ct.safetensors")


@pytest.fixture(scope="module")
def rgb_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = CLIPDenoiser(in_channels=3, encoder_weights="random")
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "rgb.safetensors")


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = run_cli(infer.main, argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_module_command_denoises_a_series(tmp_path: Path, checkpoint: Path) -> None:
    make_ct_series(tmp_path / "in", n_slices=4)
    result = subprocess.run(
        [sys.executable, "-m", "ldct_clip.infer", "--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
         "--output", str(tmp_path / "out"), "--device", "cpu", "--batch-size", "3", "--precision", "bf16"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "denoised 1 of 1 series (4 slices)"
    assert "4/4" in result.stderr and "slice/s" in result.stderr  # the tqdm bar with its rate
    written = [pydicom.dcmread(p) for p in (tmp_path / "out").iterdir()]
    assert len(written) == 4 and all(ds.DerivationDescription.endswith("ct.safetensors, encoder weights random, bf16")
                                     for ds in written)


def test_batch_mode_goes_on_past_a_broken_series(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "mayo"
    make_ct_series(root / "L067" / "full_1mm", n_slices=3)
    broken = make_ct_series(root / "L096" / "full_1mm", n_slices=3)
    broken[1].write_bytes(broken[1].read_bytes()[:400])  # truncated file
    make_ct_series(root / "L109" / "quarter_1mm", n_slices=2)
    (root / "README.txt").write_text("not a series")
    hashes = _hashes(root)

    code, _, err = _run(["--checkpoint", str(checkpoint), "--input", str(root), "--output", str(tmp_path / "out"),
                         "--device", "cpu"], capsys)

    assert code == 1
    assert len(list((tmp_path / "out" / "L067" / "full_1mm").iterdir())) == 3
    assert len(list((tmp_path / "out" / "L109" / "quarter_1mm").iterdir())) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["L067", "L109", "inference_summary.json"]
    summary = err[err.index("denoised 2 of 3 series (5 slices); 1 failed:"):].strip().splitlines()
    assert len(summary) == 2
    assert summary[1].startswith(f"  FAILED {broken[1]}: ")
    assert _hashes(root) == hashes


def test_batch_mode_writes_nifti_files_in_a_mirrored_tree(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_ct_series(tmp_path / "in" / "a", n_slices=2)
    make_ct_series(tmp_path / "in" / "b" / "c", n_slices=2)
    code, out, _ = _run(["--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"),
                         "--output", str(tmp_path / "out"), "--format", "nifti", "--device", "cpu"], capsys)
    assert code == 0 and out.strip() == "denoised 2 of 2 series (4 slices)"
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*.nii.gz")) == [
        "a.nii.gz", "b/c.nii.gz"
    ]


@pytest.mark.parametrize("case", ["missing", "corrupt", "rgb", "inside", "exists"])
def test_user_errors_are_one_line_exit_2_and_leave_nothing(
    case: str, tmp_path: Path, checkpoint: Path, rgb_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, output = tmp_path / "in", tmp_path / "out"
    make_ct_series(source, n_slices=2)
    ckpt = {"missing": tmp_path / "none.safetensors", "corrupt": tmp_path / "bad.safetensors", "rgb": rgb_checkpoint}
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    if case == "inside":
        output = source / "denoised"
    if case == "exists":
        output.mkdir()
        (output / "keep.txt").write_text("previous result")
    expected = {
        "missing": "none.safetensors: checkpoint not found",
        "corrupt": "bad.safetensors: not a readable safetensors checkpoint",
        "rgb": "rgb.safetensors: checkpoint is for RGB images (in_channels=3), not CT",
        "inside": "output lies inside the input",
        "exists": "out: output already exists; choose another output or pass --overwrite",
    }[case]
    before = sorted(p.name for p in tmp_path.iterdir())
    hashes = _hashes(source)

    code, out, err = _run(["--checkpoint", str(ckpt.get(case, checkpoint)), "--input", str(source),
                           "--output", str(output), "--device", "cpu"], capsys)

    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no output, no temporary folder
    assert _hashes(source) == hashes
    if case == "exists":
        assert [p.name for p in output.iterdir()] == ["keep.txt"]


def test_overwrite_replaces_an_existing_output(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_ct_series(tmp_path / "in", n_slices=2)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.dcm").write_text("previous result")
    code, _, _ = _run(["--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"), "--output",
                       str(tmp_path / "out"), "--device", "cpu", "--overwrite"], capsys)
    assert code == 0
    assert len(list((tmp_path / "out").iterdir())) == 2 and not (tmp_path / "out" / "old.dcm").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def test_series_uid_picks_one_of_several_series(
    tmp_path: Path, checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_ct_series(tmp_path / "in", n_slices=3, series_uid="1.2.3.1", seed=1)
    make_ct_series(tmp_path / "in", n_slices=2, series_uid="1.2.3.2", seed=2)
    argv = ["--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
            "--device", "cpu"]
    code, _, err = _run(argv, capsys)
    assert code == 2 and "2 series found" in err and err.count("\n") == 1
    code, _, _ = _run([*argv, "--series-uid", "1.2.3.2"], capsys)
    assert code == 0
    written = [pydicom.dcmread(p) for p in (tmp_path / "out").iterdir()]
    assert len(written) == 2 and all(ds.SeriesInstanceUID != "1.2.3.2" for ds in written)


def test_console_script_entry_reports_errors_as_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_ct_series(tmp_path / "in", n_slices=1)
    monkeypatch.setattr(sys, "argv", ["ldct-clip-infer", "--checkpoint", str(tmp_path / "none.safetensors"),
                                      "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    assert infer.cli() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "checkpoint not found" in err


def test_rgb_checkpoint_from_the_shell_is_one_line(tmp_path: Path, rgb_checkpoint: Path) -> None:
    make_ct_series(tmp_path / "in", n_slices=1)
    result = subprocess.run(
        [sys.executable, "-m", "ldct_clip.infer", "--checkpoint", str(rgb_checkpoint), "--input", str(tmp_path / "in"),
         "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "not CT" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_overwrite_never_deletes_the_checkpoint_inside_the_output(tmp_path: Path, checkpoint: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    make_ct_series(tmp_path / "in", n_slices=2)
    out = tmp_path / "out"
    out.mkdir()
    inside = out / "model.safetensors"
    inside.write_bytes(checkpoint.read_bytes())
    code, _, err = _run(["--checkpoint", str(inside), "--input", str(tmp_path / "in"), "--output", str(out),
                         "--overwrite", "--device", "cpu"], capsys)
    assert code == 2 and "holds the checkpoint" in err and inside.is_file()


@pytest.mark.parametrize("output", ["/proc/ldct_clip_out", "file/out"])
def test_unwritable_output_is_refused_before_any_work(tmp_path: Path, checkpoint: Path, output: str,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from ldct_clip import inference

    make_ct_series(tmp_path / "in", n_slices=2)
    (tmp_path / "file").write_text("not a folder")
    target = output if output.startswith("/") else str(tmp_path / output)
    monkeypatch.setattr(inference, "read_volume", lambda *a: pytest.fail("read before the output was checked"))
    code, _, err = _run(["--checkpoint", str(checkpoint), "--input", str(tmp_path / "in"), "--output", target,
                         "--device", "cpu"], capsys)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "cannot write the output here" in lines[0] and "Traceback" not in err


def test_tiny_slices_are_refused_naming_the_series(tmp_path: Path, checkpoint: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    make_ct_series(tmp_path / "tiny", n_slices=2, rows=16, columns=16)
    code, _, err = _run(["--checkpoint", str(checkpoint), "--input", str(tmp_path / "tiny"), "--output",
                         str(tmp_path / "out"), "--device", "cpu"], capsys)
    assert code == 2 and f"error: {tmp_path / 'tiny'}: hu has shape" in err


def test_nan_output_of_a_broken_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = CLIPDenoiser(encoder_weights="random")
    with torch.no_grad():
        model.decoder.output.weight.fill_(1e38)  # finite weights whose output overflows
    broken = save_checkpoint(model, tmp_path / "huge.safetensors")
    make_ct_series(tmp_path / "in", n_slices=2)
    code, _, err = _run(["--checkpoint", str(broken), "--input", str(tmp_path / "in"), "--output",
                         str(tmp_path / "out.nii.gz"), "--format", "nifti", "--device", "cpu"], capsys)
    assert code == 2 and "output is NaN or infinite" in err and "checkpoint is broken" in err
    assert not (tmp_path / "out.nii.gz").exists()


def test_batch_mode_finds_series_without_the_dicom_preamble(tmp_path: Path, checkpoint: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    make_ct_series(tmp_path / "archive" / "a", n_slices=2)
    raw = tmp_path / "archive" / "b"
    make_ct_series(raw, n_slices=2)
    for file in raw.iterdir():  # no preamble, no file meta: a raw dataset as some PACS exports write them
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_dataset

        ds = pydicom.dcmread(file)
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        write_dataset(buffer, ds)
        file.write_bytes(buffer.getvalue())
        assert file.read_bytes()[:2] == b"\x08\x00"
    code, out, _ = _run(["--checkpoint", str(checkpoint), "--input", str(tmp_path / "archive"), "--output",
                         str(tmp_path / "out"), "--device", "cpu"], capsys)
    assert code == 0 and "denoised 2 of 2 series" in out


def test_metadata_of_the_wrong_type_is_named_as_such(tmp_path: Path, checkpoint: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(checkpoint), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(meta["config"])
    config["in_channels"] = "1"
    bad = tmp_path / "string.safetensors"
    save_file(tensors, str(bad), metadata={**meta, "config": json.dumps(config)})
    make_ct_series(tmp_path / "in", n_slices=2)
    code, _, err = _run(["--checkpoint", str(bad), "--input", str(tmp_path / "in"), "--output", str(tmp_path / "o")],
                        capsys)
    assert code == 2 and "invalid model config" in err and "checkpoint is for RGB images" not in err
