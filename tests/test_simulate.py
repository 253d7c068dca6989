"""ldct_clip.simulate: the physics of the projection-domain low-dose simulation and the Mayo-layout writer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import make_ct_series
from skimage.transform import iradon, radon

from ldct_clip.data.mayo import scan_mayo
from ldct_clip.errors import InputError
from ldct_clip.io import CTVolume, read_series, write_nifti
from ldct_clip.simulate import (
    FULL_DOSE_FOLDER,
    LOW_DOSE_FOLDER,
    MU_WATER_PER_MM,
    RECORD_NAME,
    add_dose_reduction_noise,
    default_views,
    dose_folders,
    project_roundtrip_error,
    simulate_low_dose,
    simulate_series,
)

SIZE = 96
PIXEL_MM = 0.75
DOSES = (0.5, 0.25, 0.1)


def water_phantom(n_slices: int = 4, size: int = SIZE) -> np.ndarray:
    """Air around a water cylinder with a bone (1000 HU) and a lung-like (−300 HU) insert; float32 Z×Y×X."""
    y, x = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    image = np.full((size, size), -1000.0, dtype=np.float32)
    image[np.hypot(y - centre, x - centre) < 0.42 * size] = 0.0
    image[np.hypot(y - centre - 0.2 * size, x - centre) < 0.07 * size] = 1000.0
    image[np.hypot(y - centre + 0.2 * size, x - centre) < 0.07 * size] = -300.0
    return np.repeat(image[None], n_slices, axis=0)


def water_roi(size: int = SIZE) -> np.ndarray:
    """Two flat water discs left and right of the centre, clear of the inserts and the cylinder's edge."""
    y, x = np.mgrid[:size, :size]
    centre = (size - 1) / 2
    return (np.hypot(y - centre, x - centre - 0.2 * size) < 0.1 * size) | (
        np.hypot(y - centre, x - centre + 0.2 * size) < 0.1 * size
    )


@pytest.fixture(scope="module")
def phantom() -> np.ndarray:
    return water_phantom()


@pytest.fixture(scope="module")
def added_noise(phantom: np.ndarray) -> dict[float, np.ndarray]:
    """Low dose − original inside the water ROIs of all slices, per dose (defaults, seed 0)."""
    roi = water_roi()
    return {d: (simulate_low_dose(phantom, PIXEL_MM, d, workers=1) - phantom)[:, roi] for d in DOSES}


# --- physics ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("d1", "d2"), [(0.25, 0.5), (0.1, 0.5), (0.1, 0.25)])
def test_added_noise_std_grows_like_sqrt_of_inverse_dose_minus_one(
    added_noise: dict[float, np.ndarray], d1: float, d2: float
) -> None:
    ratio = added_noise[d1].std() / added_noise[d2].std()
    expected = np.sqrt((1 / d1 - 1) / (1 / d2 - 1))
    assert ratio == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize("dose", DOSES)
def test_mean_hu_does_not_move(phantom: np.ndarray, added_noise: dict[float, np.ndarray], dose: float) -> None:
    """Flat water and the flat air ring around the cylinder keep their mean within 5 HU."""
    assert abs(float(added_noise[dose].mean())) < 5.0
    y, x = np.mgrid[:SIZE, :SIZE]
    radius = np.hypot(y - (SIZE - 1) / 2, x - (SIZE - 1) / 2)
    air = (radius > 0.44 * SIZE) & (radius < 0.48 * SIZE)
    low = simulate_low_dose(phantom, PIXEL_MM, dose, seed=1, workers=1)
    assert abs(float((low - phantom)[:, air].mean())) < 5.0
    assert (low - phantom)[:, air].std() > 0.5 * added_noise[dose].std()  # the air got noise too


def test_noise_level_matches_an_independent_prediction(
    phantom: np.ndarray, added_noise: dict[float, np.ndarray]
) -> None:
    """Gaussian sinogram noise of variance (1/d − 1)·e^p/I0, back-projected by hand, has the same std in HU."""
    dose, photons = 0.25, 1e5
    views = np.linspace(0.0, 180.0, default_views(SIZE), endpoint=False)
    rng = np.random.default_rng(7)
    stds = []
    for image in phantom:
        mu = np.maximum(0.0192 * (1 + image.astype(np.float64) / 1000), 0.0)
        p = radon(mu, views, circle=True) * PIXEL_MM
        noise = np.sqrt((1 / dose - 1) * np.exp(p) / photons) * rng.standard_normal(p.shape)
        stds.append(1000 / 0.0192 * iradon(noise / PIXEL_MM, views, output_size=SIZE, circle=True)[water_roi()])
    assert MU_WATER_PER_MM == 0.0192
    assert added_noise[dose].std() == pytest.approx(np.std(stds), rel=0.1)


def test_sinogram_noise_has_the_documented_variance() -> None:
    rng = np.random.default_rng(0)
    dose, photons, sigma_e, p = 0.25, 1e5, 10.0, 5.0
    noisy = add_dose_reduction_noise(np.full(400_000, p), dose, photons, sigma_e, rng)
    poisson = (1 / dose - 1) * np.exp(p) / photons
    electronic = (1 / dose**2 - 1) * sigma_e**2 * np.exp(2 * p) / photons**2
    assert electronic > 0.5 * poisson  # both terms matter at this attenuation
    assert noisy.var() == pytest.approx(poisson + electronic, rel=0.05)
    assert abs(noisy.mean() - p) < 0.05 * np.sqrt(poisson + electronic)
    quiet = add_dose_reduction_noise(np.full(400_000, 1.0), dose, photons, 0.0, rng)
    assert quiet.var() == pytest.approx((1 / dose - 1) * np.exp(1.0) / photons, rel=0.02)


def test_photon_noise_is_a_centred_poisson_draw() -> None:
    """Without electronic noise, reading − expectation + lost photons is a whole number of photons."""
    dose, photons, p = 0.5, 1e3, 4.0
    expected = dose * photons * np.exp(-p)  # about 9 photons: far from Gaussian
    lost = (1 - dose) * expected
    noisy = add_dose_reduction_noise(np.full(100_000, p), dose, photons, 0.0, np.random.default_rng(1))
    drawn = dose * photons * np.exp(-noisy) - expected + lost  # readings never reach the floor here
    assert np.allclose(drawn, np.round(drawn), atol=1e-6)
    assert np.round(drawn).mean() == pytest.approx(lost, rel=0.02)
    assert np.round(drawn).var() == pytest.approx(lost, rel=0.03)


def test_photon_starved_rays_stay_finite() -> None:
    """Readings at or below zero are floored (1 photon, or the expectation if lower) before the log."""
    p = np.linspace(0.0, 25.0, 50_001)
    noisy = add_dose_reduction_noise(p, 0.1, 1e5, 10.0, np.random.default_rng(0))
    assert np.isfinite(noisy).all()
    expected = 0.1 * 1e5 * np.exp(-p)
    assert (noisy <= p + np.maximum(np.log(expected), 0) + 1e-9).all()  # never above the floor's value
    assert (noisy[p > 20] <= p[p > 20] + 1e-9).all()  # < 1 expected photon: the floor is the expectation


def test_electronic_noise_adds_noise_in_dim_rays(phantom: np.ndarray) -> None:
    roi = water_roi()
    quiet = simulate_low_dose(phantom[:2], PIXEL_MM, 0.25, photons=300, electronic_noise=0.0, workers=1)
    loud = simulate_low_dose(phantom[:2], PIXEL_MM, 0.25, photons=300, electronic_noise=10.0, workers=1)
    assert (loud - phantom[:2])[:, roi].std() > 1.2 * (quiet - phantom[:2])[:, roi].std()


def test_full_dose_adds_nothing_beyond_the_reported_roundtrip_error(phantom: np.ndarray) -> None:
    """Dose 1 returns the original exactly; reconstructing in full would instead be off by the round trip."""
    assert np.array_equal(simulate_low_dose(phantom, PIXEL_MM, 1.0, workers=1), phantom)
    p = np.random.default_rng(0).uniform(0, 25, 10_000)  # down to far below one expected photon
    assert np.array_equal(add_dose_reduction_noise(p, 1.0, 1e5, 10.0, np.random.default_rng(0)), p)
    roundtrip = project_roundtrip_error(phantom[:1], workers=1)
    assert 20.0 < roundtrip < 100.0  # sharp 1000 HU edges ring after radon -> iradon
    y, x = np.mgrid[:SIZE, :SIZE]
    blob = (1000.0 * np.exp(-np.hypot(y - SIZE / 2, x - SIZE / 2) ** 2 / (2 * 12.0**2)) - 1000).astype(np.float32)
    assert project_roundtrip_error(blob, workers=1) < 5.0  # smooth images survive the round trip
    assert project_roundtrip_error(np.full((32, 32), -1024.0), workers=1) == 0.0  # below air: μ clipped to 0
    near_full = simulate_low_dose(phantom[:1], PIXEL_MM, 0.99, workers=1) - phantom[:1]
    assert near_full[:, water_roi()].std() < 0.1 * roundtrip


def test_reproducible_and_independent_of_workers(phantom: np.ndarray) -> None:
    """Bitwise with the reference projector; the fast one's threads only reorder float sums (< 1e-3 HU)."""
    reference = simulate_low_dose(phantom[:3], PIXEL_MM, 0.25, seed=5, workers=1, projector="skimage")
    assert np.array_equal(reference, simulate_low_dose(phantom[:3], PIXEL_MM, 0.25, seed=5, workers=2,
                                                       projector="skimage"))
    first = simulate_low_dose(phantom[:3], PIXEL_MM, 0.25, seed=5, workers=1)
    assert np.allclose(first, simulate_low_dose(phantom[:3], PIXEL_MM, 0.25, seed=5, workers=2), rtol=0, atol=1e-3)
    for batch_size in (1, 2):
        assert np.allclose(first, simulate_low_dose(phantom[:3], PIXEL_MM, 0.25, seed=5, workers=1,
                                                    batch_size=batch_size), rtol=0, atol=1e-6)
    assert not np.array_equal(first, simulate_low_dose(phantom[:3], PIXEL_MM, 0.25, seed=6, workers=1))
    assert not np.array_equal(first[0], first[1])  # every slice draws its own noise
    single = simulate_low_dose(phantom[0], PIXEL_MM, 0.25, seed=5, workers=1)
    assert single.shape == (SIZE, SIZE) and single.dtype == np.float32
    assert np.array_equal(single, first[0])


def test_content_beyond_the_inscribed_circle_is_projected() -> None:
    """A non-square slice full of water is projected whole: its corners get noise too."""
    water = np.zeros((1, 40, 64), dtype=np.float32)
    noise = simulate_low_dose(water, PIXEL_MM, 0.25, workers=1) - water
    assert noise[0, :4, :4].std() > 0.2 * noise[0, 16:24, 28:36].std() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dose": 0.0}, "dose=0.0: must be a fraction of the normal dose in (0, 1]"),
        ({"dose": 1.5}, "dose=1.5: must be a fraction"),
        ({"dose": float("nan")}, "dose=nan: must be a fraction"),
        ({"photons": 0}, "photons=0: must be a positive finite number"),
        ({"electronic_noise": -1.0}, "electronic_noise=-1.0: must be"),
        ({"workers": 0}, "workers=0: must be an integer >= 1"),
        ({"filter_name": "sinc"}, "filter_name='sinc': unknown FBP filter"),
        ({"hu": np.zeros(5)}, "hu: array of shape (5,)"),
        ({"hu": np.full((8, 8), np.nan)}, "hu: contains NaN or infinite values"),
    ],
)
def test_bad_arguments_raise_one_line(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"hu": np.zeros((8, 8)), "spacing_mm": 1.0, "dose": 0.25, **kwargs}
    with pytest.raises(InputError) as info:
        simulate_low_dose(**arguments)  # type: ignore[arg-type]
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


# --- the Mayo-layout writer ------------------------------------------------------------------------------------


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def dicom_series(tmp_path: Path) -> Path:
    folder = tmp_path / "input"
    make_ct_series(folder, 3, 64, 64, hu=water_phantom(3, 64), spacing=(1.0, PIXEL_MM, PIXEL_MM), patient_id="P123")
    return folder


def test_series_from_dicom_writes_a_mayo_pair(dicom_series: Path, tmp_path: Path) -> None:
    before = _digests(dicom_series)
    source = read_series(dicom_series)
    patient_dir = simulate_series(dicom_series, tmp_path / "out", patient="SIM001", dose=0.25, seed=3, workers=1)
    assert _digests(dicom_series) == before
    assert patient_dir == tmp_path / "out" / "SIM001"

    full = read_series(patient_dir / FULL_DOSE_FOLDER)
    low = read_series(patient_dir / LOW_DOSE_FOLDER)
    assert np.array_equal(full.hu, source.hu)
    expected = simulate_low_dose(source.hu, PIXEL_MM, 0.25, seed=3, workers=1)
    assert np.abs(low.hu - expected).max() <= 0.5 + 1e-3  # stored as integers
    assert full.spacing == low.spacing == source.spacing and full.origin == low.origin == source.origin

    first_low = pydicom.dcmread(next((patient_dir / LOW_DOSE_FOLDER).iterdir()))
    first_full = pydicom.dcmread(next((patient_dir / FULL_DOSE_FOLDER).iterdir()))
    original = source.slice_headers[0]  # type: ignore[index]
    assert first_low.SeriesDescription == "[simulated 25% dose (ldct_clip, Poisson+Gaussian, I0=1e5)]"
    assert "normal dose" in first_full.SeriesDescription
    assert "round trip" in first_low.DerivationDescription and first_low.ImageType[0] == "DERIVED"
    assert len({first_low.SeriesInstanceUID, first_full.SeriesInstanceUID, original.SeriesInstanceUID}) == 3
    # one new study and frame of reference for the simulated patient, shared by both doses
    assert first_low.StudyInstanceUID == first_full.StudyInstanceUID != original.StudyInstanceUID
    assert first_low.FrameOfReferenceUID == first_full.FrameOfReferenceUID != original.FrameOfReferenceUID
    assert first_low.PatientID == first_full.PatientID == first_low.PatientName == "SIM001"
    other = simulate_series(dicom_series, tmp_path / "out", patient="SIM002", workers=1, roundtrip_slices=1)
    assert pydicom.dcmread(next((other / FULL_DOSE_FOLDER).iterdir())).StudyInstanceUID != first_full.StudyInstanceUID

    record = json.loads((patient_dir / RECORD_NAME).read_text())
    assert record["dose"] == 0.25 and record["seed"] == 3 and record["views"] == default_views(64) == 101
    assert record["roundtrip_rms_hu"] == pytest.approx(project_roundtrip_error(source.hu, workers=1), abs=1e-3)

    manifest = scan_mayo(tmp_path / "out", workers=2)
    assert manifest.patients == ("SIM001", "SIM002") and not manifest.skipped
    pairs = manifest.pairs()
    assert len(pairs) == 6 and all(q.z == f.z and q.patient == f.patient for q, f in pairs)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no staging left behind


def test_series_from_nifti_gets_minimal_ct_headers(tmp_path: Path) -> None:
    direction = np.diag([1.0, 1.0, -1.0])  # slices run against row x column cosines
    hu = water_phantom(2, 48)
    hu[1, 24, 24] = 100.0  # tells the slices apart
    volume = CTVolume(hu, (2.0, 0.8, 0.8), (-10.0, 5.0, 40.0), direction, None, "ct.nii.gz")
    nifti = write_nifti(volume, volume.hu, tmp_path / "ct.nii.gz")
    before = nifti.read_bytes()
    patient_dir = simulate_series(nifti, tmp_path / "mayo", patient="L999", dose=0.5, workers=1, roundtrip_slices=1)
    assert nifti.read_bytes() == before
    assert dose_folders(2.0) == ("full_2mm", "quarter_2mm")  # 2 mm apart: filed as 2 mm
    record = json.loads((patient_dir / RECORD_NAME).read_text())
    assert record["roundtrip_slices"] == [0]  # one slice asked for: the first
    assert record["roundtrip_rms_hu"] == pytest.approx(project_roundtrip_error(hu[:1], workers=1), abs=1e-3)
    full = read_series(patient_dir / "full_2mm")
    low = read_series(patient_dir / "quarter_2mm")
    # read_series orders slices along the normal row x column = -z: the NIfTI's slice order reversed
    assert np.array_equal(full.hu, volume.hu[::-1])
    assert np.allclose(full.direction[:2], direction[:2]) and full.spacing == pytest.approx((2.0, 0.8, 0.8))
    assert np.allclose(full.origin, (-10.0, 5.0, 38.0))
    assert low.shape == full.shape and not np.array_equal(low.hu, full.hu)
    header = pydicom.dcmread(next((patient_dir / "quarter_2mm").iterdir()))
    assert header.Modality == "CT" and header.PatientID == "L999" and "SourceImageSequence" not in header
    assert len(scan_mayo(tmp_path / "mayo", workers=2).pairs()) == 2


def test_series_refuses_to_overwrite_unless_asked(dicom_series: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    simulate_series(dicom_series, out, dose=0.5, workers=1)
    before = _digests(out)
    with pytest.raises(InputError, match="already exists"):
        simulate_series(dicom_series, out, dose=0.25, workers=1)
    assert _digests(out) == before
    patient_dir = simulate_series(dicom_series, out, dose=0.25, workers=1, overwrite=True)
    assert json.loads((patient_dir / RECORD_NAME).read_text())["dose"] == 0.25
    assert sorted(p.name for p in out.iterdir()) == ["SIM001"]
    assert sorted(p.name for p in patient_dir.iterdir()) == sorted([FULL_DOSE_FOLDER, LOW_DOSE_FOLDER, RECORD_NAME])


def test_series_into_an_existing_patient_keeps_its_other_folders(dicom_series: Path, tmp_path: Path) -> None:
    other = tmp_path / "out" / "L067" / "full_3mm"
    other.mkdir(parents=True)
    (other / "IM0001.dcm").write_bytes(b"kept")
    patient_dir = simulate_series(dicom_series, tmp_path / "out", patient="L067", workers=1, roundtrip_slices=1)
    assert sorted(p.name for p in patient_dir.iterdir()) == sorted(
        [FULL_DOSE_FOLDER, LOW_DOSE_FOLDER, RECORD_NAME, "full_3mm"])
    assert (other / "IM0001.dcm").read_bytes() == b"kept"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["L067"]  # no staging left behind


def test_series_bad_input_raises_one_line(dicom_series: Path, tmp_path: Path) -> None:
    cases = [
        ({"input_path": tmp_path / "missing"}, "no such file or folder"),
        ({"output_root": dicom_series / "sim"}, "inside the input folder"),
        ({"dose": 0.0}, "dose=0.0"),
        ({"patient": "../x"}, "not a usable folder name"),
        ({"roundtrip_slices": 0}, "roundtrip_slices=0: must be a positive integer"),
    ]
    rectangular = CTVolume(np.zeros((1, 8, 8), np.float32), (1.0, 0.5, 0.7), (0, 0, 0), np.eye(3), None, "x")
    cases.append(({"input_path": write_nifti(rectangular, rectangular.hu, tmp_path / "rect.nii")}, "not square"))
    for kwargs, message in cases:
        arguments: dict[str, object] = {"input_path": dicom_series, "output_root": tmp_path / "out", **kwargs}
        with pytest.raises(InputError, match=message) as info:
            simulate_series(**arguments, workers=1)  # type: ignore[arg-type]
        assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()
