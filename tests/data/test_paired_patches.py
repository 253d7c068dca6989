"""RED-CNN patches: k aligned quarter/full patch pairs per slice pair, unflipped, independent positions,
determinism per key, paired slices only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from dicom_factory import make_ct_series
from numpy.lib.stride_tricks import sliding_window_view
from torch.utils.data import DataLoader

from ldct_clip.data.hu import MODEL_SCALE, IntensityScale
from ldct_clip.data.mayo import Manifest, scan_mayo
from ldct_clip.data.paired_patches import PairedPatches
from ldct_clip.errors import InputError

SIZE = 32
DOSE_GAP_HU = 35.0  # every quarter-dose pixel = its full-dose pixel + 35 HU
SLICES = {"L067": 3, "L096": 2}
PATTERN = np.random.default_rng(0).integers(-900, 900, (SIZE, SIZE)).astype(np.float32)


def _full(patient: str) -> np.ndarray:
    offset = 1000.0 * list(SLICES).index(patient)
    return np.stack([PATTERN + offset + 50.0 * j for j in range(SLICES[patient])])


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    """L067 (3 pairs) and L096 (2 pairs) at 1 mm; L067 has one extra unpaired quarter slice; L109 quarter only."""
    root = tmp_path_factory.mktemp("mayo")
    for seed, patient in enumerate(SLICES):
        full = _full(patient)
        quarter = full + DOSE_GAP_HU
        if patient == "L067":  # an extra quarter slice 5 mm past the full-dose range: unpaired
            quarter = np.concatenate([quarter, quarter[-1:]])
            make_ct_series(root / patient / "quarter_1mm", 4, SIZE, SIZE, hu=quarter, spacing=(1.0, 0.7, 0.7),
                           positions=[(0.0, 0.0, 100.0 + z) for z in (0, 1, 2, 7)], seed=10)
        else:
            make_ct_series(root / patient / "quarter_1mm", len(quarter), SIZE, SIZE, hu=quarter,
                           spacing=(1.0, 0.7, 0.7), origin=(0.0, 0.0, 100.0), seed=11)
        make_ct_series(root / patient / "full_1mm", len(full), SIZE, SIZE, hu=full, spacing=(1.0, 0.7, 0.7),
                       origin=(0.0, 0.0, 100.0), seed=20 + seed)
    make_ct_series(root / "L109" / "quarter_1mm", 2, SIZE, SIZE, hu=_full("L096"), spacing=(1.0, 0.7, 0.7), seed=30)
    return scan_mayo(root, workers=2)


@pytest.fixture(scope="module")
def patches(manifest: Manifest) -> PairedPatches:
    return PairedPatches(manifest, ["L067", "L096"], MODEL_SCALE, patch_size=8, patches_per_slice=6, cache=True)


def test_items_are_stacks_of_patch_pairs(patches: PairedPatches) -> None:
    assert len(patches) == 3 + 2  # pairs only: the extra quarter slice of L067 is left out
    assert [r.patient for r in patches.rows] == ["L067"] * 3 + ["L096"] * 2
    item = patches[(0, 1)]
    assert set(item) == {"noisy", "clean"}
    for value in item.values():
        assert type(value) is torch.Tensor and value.dtype == torch.float32 and value.shape == (6, 1, 8, 8)
    batch = next(iter(DataLoader(patches, batch_size=2)))
    assert batch["noisy"].shape == (2, 6, 1, 8, 8)


def test_quarter_and_full_patches_are_cut_at_the_same_place_without_flips(patches: PairedPatches) -> None:
    for index, row in enumerate(patches.rows):
        series = [r for r in patches.rows if r.patient == row.patient]
        windows = sliding_window_view(_full(row.patient)[series.index(row)], (8, 8))
        item = patches[(index, 3)]
        full_hu = MODEL_SCALE.to_hu(item["clean"].double().numpy())
        quarter_hu = MODEL_SCALE.to_hu(item["noisy"].double().numpy())
        np.testing.assert_allclose(quarter_hu - full_hu, DOSE_GAP_HU, atol=1e-3)
        starts = set()
        for patch in full_hu[:, 0]:
            hits = np.argwhere(np.all(np.abs(windows - patch) < 1e-3, axis=(-1, -2)))
            assert len(hits) == 1, "each patch is an unflipped window of its own full-dose slice"
            starts.add(tuple(hits[0]))
        assert len(starts) > 1  # independent positions per patch


def test_patch_positions_reach_both_ends(manifest: Manifest) -> None:
    data = PairedPatches(manifest, ["L096"], MODEL_SCALE, patch_size=SIZE - 1, patches_per_slice=4)
    corners = set()
    for seed in range(8):
        for patch in MODEL_SCALE.to_hu(data[(0, seed)]["clean"].double().numpy())[:, 0, 0, 0]:
            corners.add(round(float(patch)))
    assert corners == {round(float(PATTERN[y, x] + 1000.0)) for y in (0, 1) for x in (0, 1)}
    whole = PairedPatches(manifest, ["L096"], MODEL_SCALE, patch_size=SIZE, patches_per_slice=2)[(1, 0)]
    assert whole["clean"].shape == (2, 1, SIZE, SIZE)  # a patch as large as the slice is allowed


def test_scale_is_applied_to_both_doses(manifest: Manifest) -> None:
    window = IntensityScale(-160.0, 240.0, clip=True)
    item = PairedPatches(manifest, ["L067"], window, patch_size=8, patches_per_slice=3)[(0, 0)]
    assert 0 <= item["clean"].min() and item["noisy"].max() <= 1


def test_same_key_same_item(manifest: Manifest, patches: PairedPatches) -> None:
    first = patches[(2, 99)]
    patches[(0, 1)], patches[1]
    again = PairedPatches(manifest, ["L067", "L096"], MODEL_SCALE, patch_size=8, patches_per_slice=6, seed=3)
    for key in first:
        torch.testing.assert_close(again[(2, 99)][key], first[key], rtol=0, atol=0)
    assert not torch.equal(patches[(2, 100)]["noisy"], first["noisy"])
    one, two = (PairedPatches(manifest, ["L096"], MODEL_SCALE, patch_size=8, seed=7) for _ in range(2))
    assert all(torch.equal(one[i % 2]["clean"], two[i % 2]["clean"]) for i in range(4))


def test_patient_balanced_weights(patches: PairedPatches) -> None:
    torch.testing.assert_close(
        patches.patient_balanced_weights(), torch.tensor([1 / 3] * 3 + [1 / 2] * 2, dtype=torch.float64)
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"patch_size": SIZE + 1}, {"patch_size": 0}, {"patches_per_slice": 0}, {"patches_per_slice": True},
     {"scale": "model"}, {"patients": ["L109"]}, {"patients": "L067"}, {"thickness": 3.0}],
)
def test_bad_arguments_raise_one_line_input_errors(manifest: Manifest, kwargs: dict[str, object]) -> None:
    arguments = {"patients": ["L067"], "scale": MODEL_SCALE, **kwargs}
    with pytest.raises(InputError) as info:
        PairedPatches(manifest, **arguments)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_mismatched_pair_sizes_are_refused(tmp_path: Path) -> None:
    make_ct_series(tmp_path / "L506" / "quarter_1mm", 1, SIZE, SIZE, hu=np.zeros((1, SIZE, SIZE)), seed=1)
    make_ct_series(tmp_path / "L506" / "full_1mm", 1, SIZE, SIZE + 4, hu=np.zeros((1, SIZE, SIZE + 4)), seed=2)
    with pytest.raises(InputError, match="cannot be cut at one position"):
        PairedPatches(scan_mayo(tmp_path, workers=1), ["L506"], MODEL_SCALE, patch_size=8)
