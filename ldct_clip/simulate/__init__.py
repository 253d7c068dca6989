"""Projection-domain low-dose CT simulation: a matched reduced-dose copy of a normal-dose scan.

Method (noise insertion in the projection domain, after Yu et al. 2012 and Zeng et al. 2015), per slice:

1. HU → linear attenuation μ = μ_water · (1 + HU/1000), clipped at 0 (nothing attenuates less than
   vacuum), with μ_water = :data:`MU_WATER_PER_MM` = 0.0192 /mm. The NIST X-ray mass attenuation
   coefficient tables (Hubbell & Seltzer, NIST Standard Reference Database 126) list water μ/ρ =
   0.2059 cm²/g at 60 keV and 0.1837 cm²/g at 80 keV; log-log interpolation gives 0.0194 /mm at 70 keV
   and 0.0192 /mm at 72 keV, about the effective energy of a filtered 120 kVp beam. Pixel size comes from
   the volume's in-plane spacing.
2. Forward projection (:mod:`ldct_clip.projectors`): by default parallel beam over ⌈π/2 · S⌉ views in
   [0°, 180°) (angular Nyquist sampling for an object S pixels across), one detector bin per pixel, the
   operator of scikit-image ``radon``; or (``geometry="fan"``) the fan beam of the Siemens SOMATOM
   Definition AS+ of the AAPM-Mayo data (1152 views over 360°, 736 equiangular channels). Line integrals
   p = ∫ μ dl in mm · 1/mm. ``projector`` picks the implementation: ``skimage`` (the reference, one slice
   at a time), ``nufft`` (the same operators in Fourier space, batched) or ``torch`` (ray-driven, batched,
   CPU or CUDA; the only one for fan beam).
3. Noise of the reduced dose (:func:`add_dose_reduction_noise`). The normal-dose scan already holds the
   noise of I0 incident photons per ray (``photons``) and of the detector electronics (σ_e counts,
   ``electronic_noise``). At dose fraction d the expected reading is λ = d · I0 · e^(−p); a reading of the
   normal-dose scan scaled to that level has variance d·λ + d²σ_e², a real reduced-dose reading
   λ + σ_e². Only the difference is added: a centred Poisson draw with mean (1 − d)·λ (photon noise; it
   keeps Poisson's skew better than a Gaussian when few photons arrive) plus Gaussian electronic noise of
   variance (1 − d²)·σ_e². In line integrals the added variance is, to first order,

       Var Δp = (1/d − 1) · e^p / I0 + (1/d² − 1) · σ_e² · e^(2p) / I0²,

   zero at d = 1. Readings below :data:`MIN_COUNTS` photon (or below λ when λ is smaller) are raised to
   that floor before the log: non-positive readings happen once electronic noise dominates a
   photon-starved ray, the log must stay finite, and a ray without added noise must stay unchanged.
4. −log back to line integrals, and filtered back-projection with the same projector (parallel beam:
   ``iradon``'s linear interpolation; fan beam: equiangular fan-beam FBP), :data:`DEFAULT_FILTER` ramp
   filter: it adds no smoothing of its own, so the added noise has the finest texture the pixel grid
   holds; ``filter_name`` offers skimage's smoother windows, e.g. ``"hann"``, for noise closer to soft
   clinical kernels).
5. The projector's round trip FBP(radon(x)) is not the identity (interpolation blur, edge ringing), so
   only the noise is reconstructed: low = original + 1000/μ_water · (FBP(noisy p) − FBP(noiseless p)),
   computed as FBP of the difference (FBP is linear). The low-dose image therefore keeps the original's
   resolution and mean, and dose 1.0 returns the original exactly. The round trip's own error is
   reported separately by :func:`project_roundtrip_error`; it never enters the output.

Consequences, checked by the tests: the added noise std in a flat region grows like √(1/d − 1) (with
negligible electronic noise), so the total low-dose noise √(σ_full² + σ_added²) grows like 1/√d; the
mean HU does not move (the −log bias is of order Var Δp / 2, far below 1 HU except in photon-starved rays).

Geometry: the slice is projected inside the smallest centred circle that holds every pixel above
:data:`AIR_CONTENT_HU` (at least the circle inscribed in the square of the slice's longer side, which is
the scanner's reconstruction circle for square CT slices); pixels outside that circle are air, are not
projected and are returned unchanged. Slices are independent: each gets its own random stream spawned
from ``seed`` and its slice index, so the noise drawn does not depend on ``workers`` or ``batch_size``
(the fast projectors' thread count only reorders floating-point sums: below 1e-3 HU).

``photons`` is an effective count per ray and view, to calibrate against a real scanner (e.g. until the
simulated quarter dose of an AAPM-Mayo patient shows the noise of its real quarter dose): the image
noise also depends on the number of views, the detector bin size and the filter. Defaults follow common
simulation practice: I0 = 1e5 and σ_e = 10 counts (the TIGRE toolbox's "clinical" example, Biguri et al.
2016); Ma et al. 2012 report an electronic-noise variance of about 10 (σ_e ≈ 3.2) for a clinical scanner.

The parts: :mod:`~ldct_clip.simulate.noise` (step 3 and the physical constants),
:mod:`~ldct_clip.simulate.placement` (the projected square and circle), :mod:`~ldct_clip.simulate.volume`
(steps 1, 2, 4 and 5 on arrays, and the projector's round-trip error), :mod:`~ldct_clip.simulate.headers`
(DICOM headers for volumes read from NIfTI), :mod:`~ldct_clip.simulate.series` (a series in, the
AAPM-Mayo layout out) and :mod:`~ldct_clip.simulate.checks` (argument validation).

References:
    L. Yu, M. Shiung, D. Jondal, C. H. McCollough, "Development and validation of a practical
    lower-dose-simulation tool for optimizing computed tomography scan protocols", J. Comput. Assist.
    Tomogr. 36(4):477-487, 2012.
    D. Zeng, J. Huang, Z. Bian, S. Niu, H. Zhang, Q. Feng, Z. Liang, J. Ma, "A simple low-dose x-ray CT
    simulation from high-dose scan", IEEE Trans. Nucl. Sci. 62(5):2226-2233, 2015.
    J. Ma et al., "Variance analysis of x-ray CT sinograms in the presence of electronic noise
    background", Med. Phys. 39(7):4051-4065, 2012.
    A. Biguri, M. Dosanjh, S. Hancock, M. Soleimani, "TIGRE: a MATLAB-GPU toolbox for CBCT image
    reconstruction", Biomed. Phys. Eng. Express 2(5):055010, 2016.
"""

from ldct_clip.projectors import (
    DEFAULT_FILTER,
    DEFAULT_GEOMETRY,
    DEFAULT_PROJECTOR,
    FILTERS,
    GEOMETRIES,
    PROJECTORS,
)
from ldct_clip.projectors.geometry import VIEWS_PER_PIXEL, default_views
from ldct_clip.simulate.headers import ct_headers_for_volume
from ldct_clip.simulate.noise import (
    DEFAULT_ELECTRONIC_NOISE,
    DEFAULT_PHOTONS,
    MIN_COUNTS,
    MU_WATER_PER_MM,
    add_dose_reduction_noise,
)
from ldct_clip.simulate.placement import AIR_CONTENT_HU
from ldct_clip.simulate.series import (
    FULL_DOSE_FOLDER,
    LOW_DOSE_FOLDER,
    RECORD_NAME,
    ROUNDTRIP_SLICES,
    dose_folders,
    simulate_series,
)
from ldct_clip.simulate.volume import DEFAULT_BATCH, project_roundtrip_error, simulate_low_dose

__all__ = [
    "AIR_CONTENT_HU",
    "DEFAULT_BATCH",
    "DEFAULT_ELECTRONIC_NOISE",
    "DEFAULT_FILTER",
    "DEFAULT_GEOMETRY",
    "DEFAULT_PHOTONS",
    "DEFAULT_PROJECTOR",
    "FILTERS",
    "FULL_DOSE_FOLDER",
    "GEOMETRIES",
    "LOW_DOSE_FOLDER",
    "MIN_COUNTS",
    "MU_WATER_PER_MM",
    "PROJECTORS",
    "RECORD_NAME",
    "ROUNDTRIP_SLICES",
    "VIEWS_PER_PIXEL",
    "add_dose_reduction_noise",
    "ct_headers_for_volume",
    "default_views",
    "dose_folders",
    "project_roundtrip_error",
    "simulate_low_dose",
    "simulate_series",
]
