"""Datasets over a manifest: patch shapes and scale, noise level, balanced weights, pairing, cache, seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_factory import make_ct_series, phantom_hu
from torch.utils.data import DataLoader

from ldct_clip.data.datasets import EvaluationPairs, SliceReader, TrainingPatches
from ldct_clip.data.mayo import Manifest, ManifestRow, scan_mayo
from ldct_clip.errors import InputError

SIZE = 64
QUARTER_OFFSET = 30.0
SIGMA = 5 / 255
SLICES = {"L067": 4, "L096": 2}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """L067 with 4 and L096 with 2 paired 1 mm slices (quarter = full + 30 HU), plus 3 mm for L067."""
    root = tmp_path_factory.mktemp("mayo")
    for seed, (patient, n) in enumerate(SLICES.items()):
        full = phantom_hu(n, SIZE, SIZE)
        for dose, hu in (("full", full), ("quarter", full + QUARTER_OFFSET)):
            make_ct_series(root / patient / f"{dose}_1mm", n, SIZE, SIZE, hu=hu, spacing=(1.0, 0.7, 0.7),
                           seed=2 * seed + (dose == "quarter"))
    make_ct_series(root / "L067" / "full_3mm", 1, SIZE, SIZE, spacing=(3.0, 0.7, 0.7))
    return scan_mayo(root, workers=2)


def _hu_values() -> set[float]:
    return set(np.unique(phantom_hu(max(SLICES.values()), SIZE, SIZE)).tolist())


def test_training_patches_shape_scale_and_noise(manifest: Manifest) -> None:
    data = TrainingPatches(manifest, ["L067", "L096"], patch_size=48, sigma=SIGMA, seed=1)
    assert len(data) == sum(SLICES.values())
    residuals = []
    for item in data:
        assert set(item) == {"noisy", "clean"}
        for value in item.values():
            assert type(value) is torch.Tensor and value.dtype == torch.float32 and value.shape == (1, 48, 48)
        clean_hu = (item["clean"].double() * 4096 - 1024).numpy()
        np.testing.assert_allclose(clean_hu, clean_hu.round(), atol=1e-3)  # integer HU on the model scale
        assert set(np.unique(clean_hu.round()).tolist()) <= _hu_values()  # full-dose pixels only
        residuals.append((item["noisy"] - item["clean"]).numpy())
    noise = np.concatenate(residuals)
    assert noise.std() == pytest.approx(SIGMA, rel=0.02)
    assert abs(noise.mean()) < 3 * SIGMA / np.sqrt(noise.size)


def test_training_patches_are_reproducible(manifest: Manifest) -> None:
    data = TrainingPatches(manifest, ["L067"], patch_size=32, seed=5)
    first = [data[i] for i in range(2)]
    again = TrainingPatches(manifest, ["L067"], patch_size=32, seed=5)
    other = TrainingPatches(manifest, ["L067"], patch_size=32, seed=6)
    for i, item in enumerate(first):
        torch.testing.assert_close(again[i]["noisy"], item["noisy"], rtol=0, atol=0)
        assert not torch.equal(other[i]["noisy"], item["noisy"])


def test_index_seed_keys_fix_the_item(manifest: Manifest) -> None:
    data = TrainingPatches(manifest, ["L067"], patch_size=32, seed=5)
    first = data[(2, 12345)]
    data[0], data[(1, 7)]  # whatever came before does not matter
    torch.testing.assert_close(data[(2, 12345)]["noisy"], first["noisy"], rtol=0, atol=0)
    assert not torch.equal(data[(2, 12346)]["noisy"], first["noisy"])
    other = TrainingPatches(manifest, ["L067"], patch_size=32, seed=6)  # the item seed decides, not `seed`
    torch.testing.assert_close(other[(2, 12345)]["noisy"], first["noisy"], rtol=0, atol=0)
    loader = DataLoader(data, batch_sampler=[[(2, 12345), (3, 1)], [(0, 2)]], num_workers=2)
    torch.testing.assert_close(next(iter(loader))["noisy"][0], first["noisy"], rtol=0, atol=0)


def test_dataloader_workers_draw_different_noise_reproducibly(manifest: Manifest) -> None:
    data = TrainingPatches(manifest, ["L067"], patch_size=SIZE, seed=3)  # whole slices: 2 per worker

    def noise_of_epoch(seed: int) -> list[torch.Tensor]:
        loader = DataLoader(data, batch_size=1, num_workers=2, generator=torch.Generator().manual_seed(seed))
        return [batch["noisy"] - batch["clean"] for batch in loader]

    epoch = noise_of_epoch(0)
    assert len(epoch) == 4
    for i in range(4):  # no two items share noise, within a worker or across workers
        assert not any(torch.allclose(epoch[i], epoch[j]) for j in range(i))
    for a, b in zip(epoch, noise_of_epoch(0), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(epoch[0], noise_of_epoch(1)[0])  # a new epoch seed gives new noise


def test_patient_balanced_weights(manifest: Manifest) -> None:
    data = TrainingPatches(manifest, ["L067", "L096"], patch_size=32)
    weights = data.patient_balanced_weights()
    assert weights.shape == (len(data),) and weights.dtype == torch.float64
    per_patient: dict[str, float] = {}
    for row, weight in zip(data.rows, weights.tolist(), strict=True):
        assert weight == pytest.approx(1 / SLICES[row.patient])
        per_patient[row.patient] = per_patient.get(row.patient, 0.0) + weight
    assert per_patient == pytest.approx({"L067": 1.0, "L096": 1.0})


def test_evaluation_pairs_match_by_position(manifest: Manifest) -> None:
    data = EvaluationPairs(manifest, ["L067", "L096"])
    assert len(data) == sum(SLICES.values())
    seen = []
    for item in data:
        assert item["low"].shape == item["full"].shape == (1, SIZE, SIZE)
        assert item["low"].dtype == torch.float32
        difference_hu = ((item["low"] - item["full"]) * 4096).numpy()
        np.testing.assert_allclose(difference_hu, QUARTER_OFFSET, atol=2e-3)
        assert float(item["full"].min()) == pytest.approx((-1000 + 1024) / 4096)
        assert Path(item["low_path"]).is_file() and "quarter_1mm" in item["low_path"]
        assert "full_1mm" in item["full_path"]
        seen.append((item["patient"], item["z"]))
    assert seen == sorted(seen) and [p for p, _ in seen].count("L067") == 4


def test_evaluation_pairs_batch_in_a_dataloader(manifest: Manifest) -> None:
    batch = next(iter(DataLoader(EvaluationPairs(manifest, ["L096"]), batch_size=2)))
    assert batch["low"].shape == (2, 1, SIZE, SIZE) and batch["patient"] == ["L096", "L096"]


def test_cache_gives_identical_values(manifest: Manifest) -> None:
    plain = EvaluationPairs(manifest, ["L067"])
    cached = EvaluationPairs(manifest, ["L067"], cache=True)
    for _ in range(2):  # the second pass is served from the cache
        for i in range(len(plain)):
            torch.testing.assert_close(cached[i]["low"], plain[i]["low"], rtol=0, atol=0)
            torch.testing.assert_close(cached[i]["full"], plain[i]["full"], rtol=0, atol=0)
    stored = list(cached._read._store.values())
    assert len(stored) == 2 * len(plain) and all(a.dtype == np.int16 for a in stored)
    patches = TrainingPatches(manifest, ["L096"], patch_size=32, seed=9)
    cached_patches = TrainingPatches(manifest, ["L096"], patch_size=32, seed=9, cache=True)
    torch.testing.assert_close(cached_patches[0]["noisy"], patches[0]["noisy"], rtol=0, atol=0)


def test_cache_keeps_fractional_hu_exact(tmp_path: Path) -> None:
    hu = phantom_hu(1, 16, 16) + 0.5  # slope 0.5: HU are not whole numbers, int16 would round them
    [path] = make_ct_series(tmp_path, 1, 16, 16, hu=hu, slope=0.5)
    reader = SliceReader(cache=True)
    np.testing.assert_array_equal(reader(str(path)), hu[0])
    np.testing.assert_array_equal(reader(str(path)), hu[0])
    assert reader._store[str(path)].dtype == np.float32


def test_validation_errors(manifest: Manifest) -> None:
    with pytest.raises(InputError, match="seed=-1"):
        TrainingPatches(manifest, ["L067"], patch_size=32, seed=-1)
    with pytest.raises(InputError, match="sigma"):
        TrainingPatches(manifest, ["L067"], patch_size=32, sigma=-0.1)
    with pytest.raises(InputError, match="L506: not in the manifest"):
        TrainingPatches(manifest, ["L506"])
    with pytest.raises(InputError, match="pass a list"):
        TrainingPatches(manifest, "L067")
    with pytest.raises(InputError, match="empty list"):
        EvaluationPairs(manifest, [])
    with pytest.raises(InputError, match="patch_size=128: larger than"):
        TrainingPatches(manifest, ["L067"], patch_size=128)
    with pytest.raises(InputError, match=r"thickness=5 mm: no full-dose slices of L067.*available: 1, 3 mm"):
        TrainingPatches(manifest, ["L067"], patch_size=32, thickness=5.0)
    with pytest.raises(InputError, match="no quarter/full-dose pairs at 3 mm"):
        EvaluationPairs(manifest, ["L067"], thickness=3.0)


def test_several_kernels_need_a_choice(tmp_path: Path) -> None:
    rows = tuple(
        ManifestRow("L067", dose, 1.0, kernel, 0.0, f"{kernel}_0", 64, 64, f"{kernel}/{dose}.IMA")
        for kernel in ("B30", "D45")
        for dose in ("full", "quarter")
    )
    several = Manifest(tmp_path, rows)
    with pytest.raises(InputError, match=r"several reconstruction kernels \(B30, D45\)"):
        TrainingPatches(several, ["L067"], patch_size=32)
    chosen = EvaluationPairs(several, ["L067"], kernel="D45")
    assert [(q.path, f.path) for q, f in chosen.pairs] == [("D45/quarter.IMA", "D45/full.IMA")]


def test_lazy_package_exports() -> None:
    import ldct_clip.data as data

    assert data.TrainingPatches is TrainingPatches and data.EvaluationPairs is EvaluationPairs
    with pytest.raises(AttributeError, match="no attribute"):
        data.NotAThing  # noqa: B018
