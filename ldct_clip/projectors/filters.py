"""FBP filters: the ramp and its windows, built exactly as scikit-image's ``iradon`` builds them.

Hand-written because scikit-image keeps its filter private (``_get_fourier_filter``) while the fast
projectors need the same response on their own FFT lengths: the Ram-Lak kernel sampled in space
(h[0] = 1/4, h[n odd] = −1/(πn)², Kak & Slaney 1988 eq. 3.61, which avoids the DC bias of a sampled
|ω|), transformed, doubled (scikit-image's convention, paired with its π/(2·views) back-projection
weight) and multiplied by the window.
"""

from __future__ import annotations

import numpy as np

__all__ = ["DEFAULT_FILTER", "FILTERS", "fourier_filter", "padded_length"]

FILTERS: tuple[str, ...] = ("ramp", "shepp-logan", "cosine", "hamming", "hann")
"""FBP filters (scikit-image ``iradon``'s names)."""
DEFAULT_FILTER = "ramp"
"""Ram-Lak ramp filter: no smoothing beyond the pixel grid's own."""


def padded_length(samples: int) -> int:
    """FFT length of the filtering: the next power of two of 2 · ``samples``, at least 64 (as ``iradon``).

    >>> padded_length(725)
    2048
    """
    return max(64, int(2 ** np.ceil(np.log2(2 * samples))))


def fourier_filter(size: int, filter_name: str = DEFAULT_FILTER) -> np.ndarray:
    """Frequency response (length ``size``, FFT order) of ``filter_name``: 2 · ramp · window, as ``iradon``.

    >>> f = fourier_filter(64)
    >>> round(float(f[32]), 3), round(float(f[0]), 4)  # 2 x |omega| at Nyquist (0.5 cycles/sample), ~0 at DC
    (0.994, 0.0063)
    """
    n = np.concatenate((np.arange(1, size // 2 + 1, 2), np.arange(size // 2 - 1, 0, -2)))
    kernel = np.zeros(size)
    kernel[0] = 0.25
    kernel[1::2] = -1 / (np.pi * n) ** 2
    response = 2 * np.real(np.fft.fft(kernel))
    if filter_name == "shepp-logan":
        omega = np.pi * np.fft.fftfreq(size)[1:]
        response[1:] *= np.sin(omega) / omega
    elif filter_name == "cosine":
        response *= np.fft.fftshift(np.sin(np.linspace(0, np.pi, size, endpoint=False)))
    elif filter_name == "hamming":
        response *= np.fft.fftshift(np.hamming(size))
    elif filter_name == "hann":
        response *= np.fft.fftshift(np.hanning(size))
    return response
