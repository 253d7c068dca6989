"""MONAI transforms: exact HU scaling, uniform paired dihedral augmentation, seeded unclipped noise."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from ldct_clip.data.hu import hu_to_model
from ldct_clip.data.transforms import (
    CLEAN_KEY,
    NOISY_KEY,
    AddGaussianNoised,
    evaluation_transforms,
    hu_to_model_scaled,
    model_to_hu_scaled,
    rand_dihedrald,
    training_transforms,
    windowed,
)
from ldct_clip.errors import InputError

ARRAY_TYPES = [np.asarray, torch.as_tensor]


def _dihedral_images(image: np.ndarray) -> list[np.ndarray]:
    """The 8 images of the dihedral group acting on the last two axes."""
    return [np.rot90(flipped, k, axes=(-2, -1)) for flipped in (image, image[..., ::-1, :]) for k in range(4)]


@pytest.mark.parametrize("to_array", ARRAY_TYPES)
def test_hu_scale_matches_pure_function_and_inverts(to_array) -> None:
    hu = np.arange(-1024, 3072, dtype=np.float32).reshape(1, 64, 64)
    x = hu_to_model_scaled("img")({"img": to_array(hu)})["img"]
    np.testing.assert_array_equal(np.asarray(x), hu_to_model(hu))
    back = model_to_hu_scaled("img")({"img": x})["img"]
    np.testing.assert_array_equal(np.asarray(back), hu)  # integer HU: exact in float32
    noisy = np.random.default_rng(0).uniform(-0.2, 1.2, (1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model_to_hu_scaled("img")({"img": noisy})["img"]), noisy * 4096 - 1024,
                               rtol=0, atol=2.5e-4)


@pytest.mark.parametrize("to_array", ARRAY_TYPES)
def test_window_clips(to_array) -> None:
    out = windowed("img", "display")({"img": to_array(np.array([[[-1000.0, 40.0, 3000.0]]]))})["img"]
    np.testing.assert_allclose(np.asarray(out), [[[0.0, 0.5, 1.0]]])


def test_dihedral_is_uniform_over_8_and_moves_pairs_together() -> None:
    image = np.array([[[0.0, 1.0], [2.0, 3.0]]])
    candidates = [tuple(im.ravel()) for im in _dihedral_images(image)]
    assert len(set(candidates)) == 8
    transform = rand_dihedrald(["a", "b"]).set_random_state(0)
    draws = 800
    counts: Counter[tuple[float, ...]] = Counter()
    for _ in range(draws):
        out = transform({"a": image, "b": image + 10})
        a, b = np.asarray(out["a"]), np.asarray(out["b"])
        np.testing.assert_array_equal(b, a + 10)
        counts[tuple(a.ravel())] += 1
    assert set(counts) == set(candidates)
    # each element has probability 1/8: the frequency's std is 0.012; a wrong rotation probability
    # (e.g. MONAI's default 0.1, or 0.5) moves some element's frequency by 0.08 or more
    assert max(abs(n / draws - 1 / 8) for n in counts.values()) < 0.045


@pytest.mark.parametrize("to_array", ARRAY_TYPES)
def test_noise_keeps_source_adds_target_unclipped(to_array) -> None:
    clean = np.zeros((1, 128, 128), np.float32)
    out = AddGaussianNoised(CLEAN_KEY, sigma=5 / 255, target_keys=NOISY_KEY).set_random_state(3)(
        {CLEAN_KEY: to_array(clean)}
    )
    np.testing.assert_array_equal(np.asarray(out[CLEAN_KEY]), clean)
    noise = np.asarray(out[NOISY_KEY])
    assert noise.shape == clean.shape and noise.dtype == np.float32
    assert noise.std() == pytest.approx(5 / 255, rel=0.03)
    assert abs(noise.mean()) < 3 * (5 / 255) / 128
    assert noise.min() < 0  # not clipped to [0, 1]


def test_noise_is_reproducible_and_independent_per_key() -> None:
    data = {"a": np.zeros((1, 16, 16)), "b": np.zeros((1, 16, 16))}
    first = AddGaussianNoised(["a", "b"], sigma=0.1).set_random_state(7)(data)
    again = AddGaussianNoised(["a", "b"], sigma=0.1).set_random_state(7)(data)
    other = AddGaussianNoised(["a", "b"], sigma=0.1).set_random_state(8)(data)
    np.testing.assert_array_equal(np.asarray(first["a"]), np.asarray(again["a"]))
    assert not np.allclose(np.asarray(first["a"]), np.asarray(other["a"]))
    assert not np.allclose(np.asarray(first["a"]), np.asarray(first["b"]))  # in place, own noise per key


def test_noise_validation() -> None:
    with pytest.raises(InputError, match="sigma"):
        AddGaussianNoised("a", sigma=-1.0)
    with pytest.raises(InputError, match="sigma"):
        AddGaussianNoised("a", sigma=float("nan"))
    with pytest.raises(InputError, match="one target per key"):
        AddGaussianNoised(["a", "b"], target_keys="c")


def test_training_transforms_crop_augment_and_noise() -> None:
    rng = np.random.default_rng(0)
    hu = rng.integers(-1024, 3072, size=(1, 40, 36)).astype(np.float32)
    transform = training_transforms(patch_size=16, sigma=5 / 255).set_random_state(100)
    out = transform({CLEAN_KEY: hu})
    assert set(out) == {CLEAN_KEY, NOISY_KEY}
    for key in out:
        assert type(out[key]) is torch.Tensor and not isinstance(out[key], MetaTensor)
        assert out[key].dtype == torch.float32 and out[key].shape == (1, 16, 16)
    clean_hu = out[CLEAN_KEY].numpy() * 4096 - 1024
    # the clean patch is some flip/rotation of some 16x16 window of the slice
    windows = np.lib.stride_tricks.sliding_window_view(hu[0], (16, 16))
    assert any(
        np.any(np.all(windows == candidate[0], axis=(-2, -1))) for candidate in _dihedral_images(clean_hu.round())
    )
    residual = (out[NOISY_KEY] - out[CLEAN_KEY]).numpy()
    assert residual.std() == pytest.approx(5 / 255, rel=0.2)
    again = training_transforms(patch_size=16).set_random_state(100)({CLEAN_KEY: hu})
    torch.testing.assert_close(again[NOISY_KEY], out[NOISY_KEY], rtol=0, atol=0)


def test_training_transforms_validate_patch_size() -> None:
    with pytest.raises(InputError, match="patch_size"):
        training_transforms(patch_size=0)


@pytest.mark.parametrize("to_array", ARRAY_TYPES)
def test_evaluation_transforms(to_array) -> None:
    low = to_array(np.full((1, 8, 8), 1024.0, np.float32))
    full = to_array(np.full((1, 8, 8), -1024.0, np.float32))
    out = evaluation_transforms()({"low": low, "full": full, "patient": "L067"})
    assert type(out["low"]) is torch.Tensor and out["low"].dtype == torch.float32
    assert float(out["low"].max()) == 0.5 and float(out["full"].max()) == 0.0
    assert out["patient"] == "L067"
