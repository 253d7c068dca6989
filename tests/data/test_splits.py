"""Split presets: the published patient lists, no patient in two parts, clear errors."""

from __future__ import annotations

import logging

import pytest

from ldct_clip.data.splits import MAYO_PATIENTS, PRESETS, Split, get_split, preset_names
from ldct_clip.errors import InputError


def test_ten_mayo_patients() -> None:
    assert MAYO_PATIENTS == ("L067", "L096", "L109", "L143", "L192", "L286", "L291", "L310", "L333", "L506")


def test_clipdenoising_preset() -> None:
    split = get_split("clipdenoising")
    assert split.test == ("L506",)
    assert split.train == ("L067", "L096", "L109", "L143", "L192", "L286", "L291", "L310", "L333")
    assert split.validation == ()


def test_noise2sim_preset() -> None:
    split = get_split("noise2sim")
    assert split.test == ("L333", "L506")
    assert split.train == ("L067", "L096", "L109", "L143", "L192", "L286", "L291", "L310")


@pytest.mark.parametrize("patient", MAYO_PATIENTS)
def test_leave_one_out(patient: str) -> None:
    split = get_split(f"loo-{patient}")
    assert split.test == (patient,)
    assert set(split.train) == set(MAYO_PATIENTS) - {patient}


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_is_disjoint_and_covers_all_patients(name: str) -> None:
    split = get_split(name)
    assert not set(split.train) & set(split.test)
    assert sorted(split.patients) == sorted(MAYO_PATIENTS)


def test_split_refuses_a_patient_in_two_parts() -> None:
    with pytest.raises(InputError, match="L506 is in both train and test"):
        Split("bad", train=("L067", "L506"), test=("L506",))
    with pytest.raises(InputError, match="L067 is in both train and validation"):
        Split("bad", train=("L067",), test=("L506",), validation=("L067",))
    with pytest.raises(InputError, match="not one string"):
        Split("bad", train="L067", test=("L506",))  # type: ignore[arg-type]


def test_validation_patients_move_out_of_train() -> None:
    split = get_split("clipdenoising", validation=["L333"])
    assert split.validation == ("L333",)
    assert "L333" not in split.train and len(split.train) == 8
    with pytest.raises(InputError, match="not training patients"):
        get_split("clipdenoising", validation=["L506"])
    with pytest.raises(InputError, match="not the string"):
        get_split("clipdenoising", validation="L333")


def test_unknown_preset_lists_the_valid_ones() -> None:
    with pytest.raises(InputError) as info:
        get_split("random-80-20")
    message = str(info.value)
    assert "\n" not in message
    assert all(name in message for name in PRESETS)
    assert "loo-<patient>" in message and "L506" in message
    with pytest.raises(InputError, match="unknown preset"):
        get_split("loo-L999")


def test_restricted_to_available_patients(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        split = get_split("clipdenoising", available_patients=["L506", "L067", "L096", "X1"])
    assert split.train == ("L067", "L096") and split.test == ("L506",)
    assert "L109" in caplog.text  # dropped training patients are reported


def test_missing_test_patient_is_an_error() -> None:
    with pytest.raises(InputError, match="test patient\\(s\\) L333 not in the data"):
        get_split("noise2sim", available_patients=["L067", "L506"])


def test_empty_train_or_data_is_an_error() -> None:
    with pytest.raises(InputError, match="no training patients"):
        get_split("clipdenoising", available_patients=["L506"])
    with pytest.raises(InputError, match="no patients available"):
        get_split("clipdenoising", available_patients=[])


def test_leave_one_out_of_non_mayo_patients(caplog: pytest.LogCaptureFixture) -> None:
    split = get_split("loo-P2", available_patients=["P1", "P2", "P3"])
    assert split.test == ("P2",) and split.train == ("P1", "P3")
    assert not caplog.records  # own data: no warning about absent Mayo patients


def test_leave_one_mayo_patient_out_warns_about_absent_mayo_patients(caplog: pytest.LogCaptureFixture) -> None:
    split = get_split("loo-L067", available_patients=["L067", "L096", "P1"])
    assert split.train == ("L096", "P1")
    assert "L109" in caplog.text and "not in the data" in caplog.text
