"""HU <-> model scale and windows: exact values, exact inverse, numpy/torch/float alike."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ldct_clip.data.hu import HU_MAX, HU_MIN, HU_RANGE, WINDOWS, hu_to_model, model_to_hu, resolve_window, window
from ldct_clip.errors import InputError


def test_constants_match_the_spec() -> None:
    assert (HU_MIN, HU_MAX, HU_RANGE) == (-1024.0, 3072.0, 4096.0)
    assert WINDOWS["display"] == WINDOWS["abdomen"] == (-160.0, 240.0)


@pytest.mark.parametrize(("hu", "x"), [(-1024.0, 0.0), (0.0, 0.25), (1024.0, 0.5), (3072.0, 1.0), (-2048.0, -0.25)])
def test_known_values_unclipped(hu: float, x: float) -> None:
    assert hu_to_model(hu) == x
    assert model_to_hu(x) == hu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_round_trip_to_float_precision(dtype: type) -> None:
    hu = np.random.default_rng(0).uniform(-2000, 4000, size=10_000).astype(dtype)
    x = hu_to_model(hu)
    assert x.dtype == dtype
    np.testing.assert_array_equal(x, (hu + dtype(1024)) / dtype(4096))
    # (HU + 1024) rounds once to the precision of numbers up to ~6000: half an ulp there.
    tolerance = float(np.spacing(dtype(8192))) / 2
    np.testing.assert_allclose(model_to_hu(x), hu, rtol=0, atol=tolerance)


def test_integer_hu_round_trip_exactly_in_float32() -> None:
    hu = np.arange(-1024, 3072, dtype=np.float32)
    np.testing.assert_array_equal(model_to_hu(hu_to_model(hu)), hu)
    x = np.random.default_rng(1).uniform(-0.5, 1.5, size=1000).astype(np.float32)
    np.testing.assert_allclose(hu_to_model(model_to_hu(x)), x, rtol=0, atol=np.spacing(np.float32(2)) / 2)


def test_torch_keeps_type_dtype_and_matches_numpy() -> None:
    hu = torch.linspace(-1500, 3500, 101)
    x = hu_to_model(hu)
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32
    np.testing.assert_array_equal(x.numpy(), hu_to_model(hu.numpy()))
    torch.testing.assert_close(model_to_hu(x), hu, rtol=0, atol=2.5e-4)
    assert hu_to_model(torch.tensor(3072.0, dtype=torch.float64)).dtype == torch.float64


def test_integer_inputs_do_not_overflow() -> None:
    stored = np.array([-1024, 3071, 32767], dtype=np.int16)
    np.testing.assert_allclose(hu_to_model(stored), (stored.astype(np.float64) + 1024) / 4096)
    assert hu_to_model(stored).dtype == np.float32
    assert hu_to_model(torch.tensor([32767], dtype=torch.int16)).item() == pytest.approx(33791 / 4096)
    assert hu_to_model(-1024) == 0.0


def test_window_by_name_pair_and_center_width_agree() -> None:
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 2000.0])
    expected = np.array([0.0, 0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(window(hu, "display"), expected)
    np.testing.assert_allclose(window(hu, (-160, 240)), expected)
    np.testing.assert_allclose(window(hu, center=40, width=400), expected)
    assert resolve_window("full") == (HU_MIN, HU_MAX)


def test_window_types() -> None:
    out = window(torch.tensor([-2000.0, 0.0, 5000.0]), "full")
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.25, 1.0]))
    assert window(40.0, "display") == 0.5
    assert window(np.array([40], dtype=np.int16), "display").dtype == np.float32


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        (("soft",), {}, "unknown name"),
        ((), {}, "give a name"),
        ((), {"center": 40}, "give a name"),
        (((-160, 240),), {"center": 40, "width": 400}, "not both"),
        (((240, -160),), {}, "must exceed"),
        ((), {"center": 40, "width": 0}, "must exceed"),
    ],
)
def test_window_errors_name_the_problem(args: tuple, kwargs: dict, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment) as info:
        resolve_window(*args, **kwargs)
    assert "\n" not in str(info.value)
    if args == ("soft",):
        assert all(name in str(info.value) for name in WINDOWS)
