"""Noise2Sim pairs: neighbours within one series, clamping at the ends, the 30 HU box-mean mask (on clipped HU),
one crop and flip for input, target and weight, determinism per key, low-dose slices only."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_factory import make_ct_series
from numpy.lib.stride_tricks import sliding_window_view
from torch.utils.data import DataLoader

from ldct_clip.data.adjacent_slices import AdjacentSlicePairs, neighbor_offset, similarity_weight
from ldct_clip.data.hu import MODEL_SCALE, IntensityScale
from ldct_clip.data.mayo import Manifest, scan_mayo
from ldct_clip.errors import InputError

SIZE = 32
STEP_HU = 20.0  # quarter-dose slice j of a patient = PATTERN + patient offset + 20 HU x j
N2S = IntensityScale(-160.0, 240.0, clip=True)
SLICES = {"L067": (5, 0.0), "L096": (3, 100.0)}  # patient: (slices, HU offset)
PATTERN = np.random.default_rng(0).integers(0, 40, (SIZE, SIZE)).astype(np.float32)
STEP_COLUMN = 19  # L143 / L192: slice 1 steps up at this column


def _series(folder: Path, hu: np.ndarray, seed: int, thickness: float = 1.0) -> None:
    make_ct_series(folder, len(hu), SIZE, SIZE, hu=hu, spacing=(thickness, 0.7, 0.7), seed=seed)


def _stack(patient: str) -> np.ndarray:
    n, offset = SLICES[patient]
    return np.stack([PATTERN + offset + STEP_HU * j for j in range(n)])


def _step_pair(low: float, high: float) -> np.ndarray:
    second = np.full((SIZE, SIZE), low, np.float32)
    second[:, STEP_COLUMN:] = high
    return np.stack([np.full((SIZE, SIZE), low, np.float32), second])


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """L067 (5 slices) and L096 (3) with both doses; quarter-only L109 (1 slice), L143 (0 | 40 HU step),
    L192 (300 | 400 HU step, both above the window); a 3 mm quarter series of L067 that must stay apart."""
    root = tmp_path_factory.mktemp("mayo")
    for seed, patient in enumerate(SLICES):
        quarter = _stack(patient)
        _series(root / patient / "quarter_1mm", quarter, seed=10 + seed)
        _series(root / patient / "full_1mm", quarter - 15.0, seed=20 + seed)
    _series(root / "L067" / "quarter_3mm", _stack("L067")[:2] - 150.0, seed=30, thickness=3.0)
    _series(root / "L109" / "quarter_1mm", _stack("L067")[:1], seed=31)
    _series(root / "L143" / "quarter_1mm", _step_pair(0.0, 40.0), seed=32)
    _series(root / "L192" / "quarter_1mm", _step_pair(300.0, 400.0), seed=33)
    return scan_mayo(root, workers=2)


@pytest.fixture(scope="module")
def pairs(manifest: Manifest) -> AdjacentSlicePairs:
    return AdjacentSlicePairs(manifest, ["L067", "L096"], N2S, cache=True)


def _box_mean_oracle(hu: np.ndarray, box: int) -> np.ndarray:
    """Zero-padded box mean / box**2, written out, as the official F.conv2d with a ones kernel."""
    padded = np.pad(hu.astype(np.float64), box // 2)
    return sliding_window_view(padded, (box, box)).sum(axis=(-1, -2)) / box**2


def _hu(item: dict[str, torch.Tensor], key: str, scale: IntensityScale = N2S) -> np.ndarray:
    return scale.to_hu(item[key][0].double().numpy())


def test_one_item_per_quarter_slice_in_z_order(pairs: AdjacentSlicePairs) -> None:
    assert len(pairs) == 5 + 3
    assert [r.patient for r in pairs.rows] == ["L067"] * 5 + ["L096"] * 3
    assert all(r.dose == "quarter" and r.thickness_mm == 1.0 for r in pairs.rows)
    for patient in SLICES:
        z = [r.z for r in pairs.rows if r.patient == patient]
        assert z == sorted(z)
    item = pairs[(0, 1)]
    assert set(item) == {"noisy", "clean", "weight"}
    for value in item.values():
        assert type(value) is torch.Tensor and value.dtype == torch.float32 and value.shape == (1, SIZE, SIZE)
    assert set(item["weight"].unique().tolist()) <= {0.0, 1.0}


def test_targets_are_neighbours_of_the_same_series_clamped_at_the_ends(pairs: AdjacentSlicePairs) -> None:
    seen: dict[int, set[int]] = {}
    for index, row in enumerate(pairs.rows):
        series = [r for r in pairs.rows if r.patient == row.patient]
        position = series.index(row)
        for seed in range(60):
            target = pairs.target_row(index, seed)
            assert (target.patient, target.dose, target.thickness_mm, target.kernel) == (
                row.patient, "quarter", row.thickness_mm, row.kernel)
            seen.setdefault(index, set()).add(series.index(target) - position)
    assert seen[0] == {1, 2} and seen[4] == {-1, -2}  # L067: first slice forward, last backward
    assert seen[1] == {-1, 1, 2} and seen[2] == {-2, -1, 1, 2} and seen[3] == {-1, -2, 1}
    assert seen[5] == {1, 2} and seen[6] == {-1, 1} and seen[7] == {-1, -2}  # L096, 3 slices


def test_item_pixels_come_from_the_announced_target(pairs: AdjacentSlicePairs) -> None:
    for index in (0, 2, 6):
        row = pairs.rows[index]
        series = [r for r in pairs.rows if r.patient == row.patient]
        for seed in range(4):
            k = series.index(pairs.target_row(index, seed)) - series.index(row)
            item = pairs[(index, seed)]
            # same crop and flip for both: the difference is the constant 20 HU x k everywhere
            np.testing.assert_allclose(_hu(item, "clean") - _hu(item, "noisy"), STEP_HU * k, atol=1e-3)
            offset = SLICES[row.patient][1] + STEP_HU * series.index(row)
            assert _hu(item, "noisy").min() == pytest.approx(PATTERN.min() + offset, abs=1e-3)


def test_neighbor_offset_draws_as_the_official_code() -> None:
    rng = np.random.default_rng(1)
    draws = 8000
    middle = Counter(neighbor_offset(5, 10, 2, rng) for _ in range(draws))
    assert set(middle) == {-2, -1, 1, 2}
    assert all(abs(c / draws - 0.25) < 0.02 for c in middle.values())
    near_start = Counter(neighbor_offset(1, 10, 2, rng) for _ in range(draws))  # backward: only k = 1
    assert abs(near_start[-1] / draws - 0.5) < 0.02 and abs(near_start[2] / draws - 0.25) < 0.02
    assert {neighbor_offset(0, 10, 3, rng) for _ in range(200)} == {1, 2, 3}
    assert {neighbor_offset(9, 10, 3, rng) for _ in range(200)} == {-1, -2, -3}
    assert {neighbor_offset(0, 2, 2, rng) for _ in range(50)} == {1}
    assert {neighbor_offset(0, 1, 2, rng) for _ in range(20)} == {0}


def test_single_slice_series_is_its_own_target(manifest: Manifest) -> None:
    data = AdjacentSlicePairs(manifest, ["L109"], N2S)
    assert len(data) == 1 and data.target_row(0, 5) == data.rows[0]
    item = data[(0, 5)]
    torch.testing.assert_close(item["noisy"], item["clean"], rtol=0, atol=0)
    assert item["weight"].min() == 1.0


def test_similarity_weight_is_the_zero_padded_box_mean_test() -> None:
    rng = np.random.default_rng(2)
    a = rng.normal(0, 40, (20, 27)).astype(np.float32)
    b = a + rng.normal(0, 40, a.shape).astype(np.float32)
    b[5:12, 3:15] += 60.0
    for box, threshold in ((7, 30.0), (3, 10.0), (5, 25.0)):
        diff = np.abs(_box_mean_oracle(a, box) - _box_mean_oracle(b, box))
        expected = (diff <= threshold).astype(np.float32)
        weight = similarity_weight(a, b, threshold, box)
        assert weight.dtype == np.float32 and 0 < weight.mean() < 1
        np.testing.assert_array_equal(weight, expected)


def test_a_40_hu_step_masks_the_pixels_whose_box_sees_enough_of_it() -> None:
    a, b = _step_pair(0.0, 40.0)
    weight = similarity_weight(a, b)
    # 40 HU x (box columns inside the step) / 7 exceeds 30 HU from 6 columns on: the step's first
    # column + 2, up to 3 columns before the border (zero padding outside the image counts as equal)
    row = weight[SIZE // 2]
    assert row[: STEP_COLUMN + 2].min() == 1 and row[SIZE - 2:].min() == 1
    assert row[STEP_COLUMN + 2: SIZE - 2].max() == 0
    assert weight[0].min() == 1 and weight[SIZE - 1].min() == 1  # 4 of 7 box rows inside: 40 x 4/7 HU
    assert weight[3, STEP_COLUMN + 2: SIZE - 2].max() == 0


def test_dataset_mask_uses_the_clipped_hu_and_moves_with_the_flip(manifest: Manifest) -> None:
    step = AdjacentSlicePairs(manifest, ["L143"], N2S)
    expected = similarity_weight(*_step_pair(0.0, 40.0))
    seen = set()
    for seed in range(12):
        item = step[(0, seed)]
        weight = item["weight"][0].numpy()
        assert weight.min() == 0
        np.testing.assert_array_equal(weight, similarity_weight(_hu(item, "noisy"), _hu(item, "clean")))
        seen.add(weight.tobytes())
        assert any(np.array_equal(weight, np.rot90(t, r)) for t in (expected, expected.T) for r in range(4))
    assert len(seen) > 2  # several orientations: the flip really moved the mask with the images
    # 300 vs 400 HU: both clip to 240 HU in Noise2Sim's window, so nothing is masked there ...
    assert AdjacentSlicePairs(manifest, ["L192"], N2S)[(0, 3)]["weight"].min() == 1
    # ... while an unclipped scale sees the 100 HU step
    assert AdjacentSlicePairs(manifest, ["L192"], MODEL_SCALE)[(0, 3)]["weight"].min() == 0


def test_crops_share_position_and_flip_and_the_mask_is_computed_on_the_crop(manifest: Manifest) -> None:
    data = AdjacentSlicePairs(manifest, ["L067"], MODEL_SCALE, patch_size=16, cache=True)
    positions = set()
    for seed in range(10):
        item = data[(2, seed)]
        noisy, clean = _hu(item, "noisy", MODEL_SCALE), _hu(item, "clean", MODEL_SCALE)
        assert item["noisy"].shape == item["clean"].shape == item["weight"].shape == (1, 16, 16)
        difference = clean - noisy
        np.testing.assert_allclose(difference, difference.flat[0], atol=1e-3)
        np.testing.assert_array_equal(item["weight"][0].numpy(), similarity_weight(noisy, clean))
        pattern = noisy - (STEP_HU * 2)  # slice 2 of L067
        windows = sliding_window_view(PATTERN, (16, 16))
        found = [(y, x) for y in range(windows.shape[0]) for x in range(windows.shape[1])
                 for t in (pattern, pattern.T) for r in range(4)
                 if np.allclose(np.rot90(t, r), windows[y, x], atol=1e-3)]
        assert found, "the patch is no flipped/rotated window of the slice"
        positions.update(found)
    assert len(positions) > 3


def test_same_key_same_item_any_instance_any_history(manifest: Manifest) -> None:
    data = AdjacentSlicePairs(manifest, ["L067", "L096"], N2S, patch_size=16)
    first = data[(3, 777)]
    data[(1, 5)], data[2]
    again = AdjacentSlicePairs(manifest, ["L067", "L096"], N2S, patch_size=16, seed=9)[(3, 777)]
    for key in first:
        torch.testing.assert_close(again[key], first[key], rtol=0, atol=0)
        torch.testing.assert_close(data[(3, 777 + 2**32)][key], first[key], rtol=0, atol=0)
    assert any(not torch.equal(data[(3, s)]["noisy"], first["noisy"]) for s in range(778, 782))
    batch = next(iter(DataLoader(data, batch_sampler=[[(3, 777), (0, 1)]])))
    torch.testing.assert_close(batch["weight"][0], first["weight"], rtol=0, atol=0)


def test_integer_keys_replay_from_the_seed(manifest: Manifest) -> None:
    one = AdjacentSlicePairs(manifest, ["L067"], N2S, patch_size=16, seed=4)
    two = AdjacentSlicePairs(manifest, ["L067"], N2S, patch_size=16, seed=4)
    other = AdjacentSlicePairs(manifest, ["L067"], N2S, patch_size=16, seed=5)
    a, b, c = ([d[i]["noisy"] for i in range(5)] for d in (one, two, other))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_patient_balanced_weights(pairs: AdjacentSlicePairs) -> None:
    weights = pairs.patient_balanced_weights()
    assert weights.dtype == torch.float64
    torch.testing.assert_close(weights, torch.tensor([1 / 5] * 5 + [1 / 3] * 3, dtype=torch.float64))


def test_only_low_dose_slices_are_read(tmp_path: Path) -> None:
    quarter = _stack("L067")
    _series(tmp_path / "L506" / "quarter_1mm", quarter, seed=1)
    _series(tmp_path / "L506" / "full_1mm", quarter, seed=2)
    manifest = scan_mayo(tmp_path, workers=1)
    for path in (tmp_path / "L506" / "full_1mm").iterdir():
        path.write_bytes(b"not a slice any more")
    data = AdjacentSlicePairs(manifest, ["L506"], N2S)
    assert len(data) == 5 and all(data[(i, 0)]["noisy"].shape == (1, SIZE, SIZE) for i in range(5))


@pytest.mark.parametrize(
    "kwargs",
    [{"neighbor": 0}, {"neighbor": True}, {"box": 6}, {"box": 0}, {"threshold_hu": -1.0},
     {"threshold_hu": float("nan")}, {"patch_size": 0}, {"patch_size": SIZE + 1}, {"scale": (-160, 240)},
     {"patients": ["L999"]}, {"thickness": 2.0}, {"seed": -1}],
)
def test_bad_arguments_raise_one_line_input_errors(manifest: Manifest, kwargs: dict[str, object]) -> None:
    arguments = {"patients": ["L067"], "scale": N2S, **kwargs}
    with pytest.raises(InputError) as info:
        AdjacentSlicePairs(manifest, **arguments)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)
