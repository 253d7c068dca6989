"""Patient-level train/test split presets for the AAPM-Mayo 2016 data.

Splits are by patient only, never by slice: adjacent slices of one patient are nearly identical, so a
slice-level split would leak the test set into training. :class:`Split` refuses any patient in two parts.

Presets (names built from :data:`PRESETS` and :data:`MAYO_PATIENTS`):

- ``clipdenoising``: test L506, train the other nine (the CLIPDenoising paper, Table 3);
- ``noise2sim``: test L333 and L506, train the other eight;
- ``loo-<patient>``: leave that one patient out for testing, train on the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ldct_clip.errors import InputError

logger = logging.getLogger(__name__)

MAYO_PATIENTS: tuple[str, ...] = ("L067", "L096", "L109", "L143", "L192", "L286", "L291", "L310", "L333", "L506")
"""The ten patients of the AAPM-Mayo 2016 Low Dose CT Grand Challenge training data."""

PRESETS: dict[str, tuple[str, ...]] = {
    "clipdenoising": ("L506",),
    "noise2sim": ("L333", "L506"),
}
"""Fixed presets: name -> test patients; every other Mayo patient trains."""

LOO_PREFIX = "loo-"
"""Prefix of the leave-one-patient-out presets, ``loo-<patient>``."""


@dataclass(frozen=True)
class Split:
    """Patients for training, testing and (optionally) validation; no patient may appear twice.

    >>> Split("mine", train=("L067",), test=("L506",)).test
    ('L506',)
    """

    name: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    validation: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        parts = {"train": self.train, "test": self.test, "validation": self.validation}
        seen: dict[str, str] = {}
        for part, patients in parts.items():
            if isinstance(patients, str):
                raise InputError(f"split {self.name!r}: {part} must be a sequence of patient IDs, not one string")
            for patient in patients:
                if patient in seen:
                    raise InputError(
                        f"split {self.name!r}: patient {patient} is in both {seen[patient]} and {part}; "
                        "a patient may belong to one part only"
                    )
                seen[patient] = part

    @property
    def patients(self) -> tuple[str, ...]:
        """All patients of the split, train then validation then test."""
        return self.train + self.validation + self.test


def preset_names() -> tuple[str, ...]:
    """Every valid preset name, fixed presets first, then ``loo-<patient>`` for each Mayo patient.

    >>> preset_names()[:3]
    ('clipdenoising', 'noise2sim', 'loo-L067')
    """
    return tuple(PRESETS) + tuple(LOO_PREFIX + patient for patient in MAYO_PATIENTS)


def _preset_test_patients(name: str, known: Sequence[str]) -> tuple[str, ...]:
    if name in PRESETS:
        return PRESETS[name]
    if name.startswith(LOO_PREFIX) and name[len(LOO_PREFIX) :] in known:
        return (name[len(LOO_PREFIX) :],)
    raise InputError(
        f"split {name!r}: unknown preset; use one of {', '.join(PRESETS)} or {LOO_PREFIX}<patient> "
        f"with a patient from {', '.join(known)}"
    )


def get_split(
    name: str,
    available_patients: Iterable[str] | None = None,
    validation: Sequence[str] = (),
) -> Split:
    """Build the split preset ``name``, restricted to the patients present in the data.

    Args:
        name: ``clipdenoising``, ``noise2sim`` or ``loo-<patient>``.
        available_patients: patients found in the data (e.g. ``manifest.patients``). ``None`` assumes all
            ten Mayo patients. Missing test patients are an error (the test set would silently change);
            missing training patients are logged and dropped. ``loo-<patient>`` also accepts any
            available patient outside the Mayo list; then the other available patients train.
        validation: training patients to hold out for validation instead.

    >>> get_split("clipdenoising").test
    ('L506',)
    >>> len(get_split("noise2sim").train)
    8
    >>> get_split("loo-L067", validation=["L096"]).validation
    ('L096',)
    """
    if available_patients is None:
        available = MAYO_PATIENTS
    else:
        available = tuple(sorted(set(available_patients)))
        if not available:
            raise InputError(f"split {name!r}: no patients available; check that the data manifest lists slices")
    known = tuple(dict.fromkeys(MAYO_PATIENTS + available))
    test = _preset_test_patients(name, known)
    missing_test = [patient for patient in test if patient not in available]
    if missing_test:
        raise InputError(
            f"split {name!r}: test patient(s) {', '.join(missing_test)} not in the data "
            f"(found {', '.join(available)}); add them to the data root or choose another preset"
        )
    if name in PRESETS:
        base = MAYO_PATIENTS
    else:  # leave-one-out: every other patient trains; Mayo ones are expected only when testing a Mayo patient
        base = known if test[0] in MAYO_PATIENTS else available
    preset_train = tuple(patient for patient in base if patient not in test)
    train = tuple(patient for patient in preset_train if patient in available)
    missing_train = [patient for patient in preset_train if patient not in available]
    if missing_train:
        logger.warning("split %s: training patient(s) %s not in the data; training without them", name,
                       ", ".join(missing_train))
    if isinstance(validation, str):
        raise InputError(f"split {name!r}: validation must be a list of patient IDs, not the string {validation!r}")
    unknown_validation = [patient for patient in validation if patient not in train]
    if unknown_validation:
        raise InputError(
            f"split {name!r}: validation patient(s) {', '.join(unknown_validation)} are not training patients "
            f"of this split ({', '.join(train)}); pick validation patients from those"
        )
    train = tuple(patient for patient in train if patient not in validation)
    if not train:
        raise InputError(
            f"split {name!r}: no training patients left in the data (found {', '.join(available)}); "
            "add training patients to the data root or choose another preset"
        )
    return Split(name=name, train=train, test=test, validation=tuple(validation))
