"""NCSN++ (Song et al., 2021), the score network of ScoreSDE-CT, for one-channel images in [0, 1].

Official: ``models/ncsnpp.py``, ``layerspp.py`` and ``up_or_down_sampling.py`` of yang-song/score_sde_pytorch
(the PyTorch port of the JAX model that yang-song/score_inverse_problems trains), configured as
``configs/ve/ldct_512_ncsnpp_continuous.py``. Only the branches that config takes are built: BigGAN residual
blocks with FIR resampling, progressive ``output_skip`` / ``input_skip`` with ``sum`` combining, GroupNorm,
swish, Gaussian Fourier features of log sigma, ``skip_rescale``, ``init_scale = 0``, no dropout and
``centered = False`` (the input is mapped to 2x - 1 inside). The numeric settings are :class:`NCSNppSettings`.

Two deliberate differences, neither changing the function the network computes:
- attention is placed by level (the resolution ``image_size / 2**level`` the network was built for), so a
  network built for 512 also runs on other multiples of ``size_multiple``; the official forward looks at the
  actual feature width and only runs at ``image_size``;
- NIN layers are 1x1 convolutions and the Fourier weights are a buffer (officially a frozen parameter).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

GROUP_NORM_EPS = 1e-6
"""GroupNorm epsilon of every official NCSN++ normalisation layer."""
MAX_GROUPS = 32
"""GroupNorm uses ``min(channels // 4, 32)`` groups, as officially."""
ZERO_INIT_SCALE = 1e-10
"""The official ``init_scale = 0`` is applied as this tiny scale (``default_init``), so the layers start near zero."""


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _groups(channels: int) -> int:
    return min(channels // 4, MAX_GROUPS)


@dataclass(frozen=True)
class NCSNppSettings:
    """The architecture a checkpoint must reproduce; defaults are the official LDCT 512 config.

    ``attn_resolutions`` are feature-map sides (of ``image_size / 2**level``) that get self-attention;
    ``fir_kernel`` is the separable FIR filter of every up/down-sampling; ``fourier_scale`` is the standard
    deviation of the Fourier feature frequencies; ``scale_by_sigma`` divides the output by sigma.

    >>> NCSNppSettings(image_size=64, nf=8, ch_mult=(1, 2, 2)).to_dict()["ch_mult"]
    [1, 2, 2]
    """

    image_size: int = 512
    nf: int = 16
    ch_mult: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 32)
    num_res_blocks: int = 1
    attn_resolutions: tuple[int, ...] = (16,)
    fir_kernel: tuple[int, ...] = (1, 3, 3, 1)
    fourier_scale: float = 16.0
    scale_by_sigma: bool = True

    def __post_init__(self) -> None:
        for field in ("ch_mult", "attn_resolutions", "fir_kernel"):
            value = getattr(self, field)
            if isinstance(value, (list, tuple)):
                object.__setattr__(self, field, tuple(value))
        _check_int("nf", self.nf, 1)
        _check_int("num_res_blocks", self.num_res_blocks, 1)
        if not isinstance(self.ch_mult, tuple) or not self.ch_mult:
            raise ValueError(f"ch_mult must be a non-empty list of integers >= 1, got {self.ch_mult!r}")
        for mult in self.ch_mult:
            _check_int("every ch_mult entry", mult, 1)
            channels = self.nf * mult
            if channels < 4 or channels % _groups(channels):
                raise ValueError(f"nf * ch_mult gives {channels} channels, which GroupNorm (min(C // 4, 32) groups) "
                                 f"cannot split evenly; use multiples of 4 up to 128, then of 32")
        _check_int("image_size", self.image_size, 1)
        if self.image_size % self.size_multiple:
            raise ValueError(f"image_size must be a multiple of {self.size_multiple} (2 ** (len(ch_mult) - 1)), "
                             f"got {self.image_size}")
        resolutions = self.resolutions
        if not isinstance(self.attn_resolutions, tuple) or not all(r in resolutions for r in self.attn_resolutions):
            raise ValueError(f"attn_resolutions must be feature sizes of this network {list(resolutions)}, "
                             f"got {self.attn_resolutions!r}")
        if not isinstance(self.fir_kernel, tuple) or not self.fir_kernel or not all(
            isinstance(k, (int, float)) and not isinstance(k, bool) and k > 0 for k in self.fir_kernel
        ):
            raise ValueError(f"fir_kernel must be a non-empty list of positive numbers, got {self.fir_kernel!r}")
        if isinstance(self.fourier_scale, bool) or not isinstance(self.fourier_scale, (int, float)) or not (
            self.fourier_scale > 0
        ):
            raise ValueError(f"fourier_scale must be a positive number, got {self.fourier_scale!r}")
        if not isinstance(self.scale_by_sigma, bool):
            raise ValueError(f"scale_by_sigma must be true or false, got {self.scale_by_sigma!r}")

    @property
    def size_multiple(self) -> int:
        """H and W of every input must be multiples of this: one halving per level below the top."""
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def resolutions(self) -> tuple[int, ...]:
        """Feature-map side at each level for an ``image_size`` input."""
        return tuple(self.image_size // 2**level for level in range(len(self.ch_mult)))

    def to_dict(self) -> dict[str, object]:
        """JSON-ready settings (tuples as lists); ``NCSNppSettings(**d)`` rebuilds them."""
        settings = asdict(self)
        for field in ("ch_mult", "attn_resolutions", "fir_kernel"):
            settings[field] = list(settings[field])
        return settings


def _init(layer: nn.Conv2d | nn.Linear, scale: float = 1.0) -> nn.Conv2d | nn.Linear:
    """The official ``default_init``: variance scaling, fan_avg, uniform == Xavier uniform with gain sqrt(scale)."""
    nn.init.xavier_uniform_(layer.weight, gain=math.sqrt(scale))
    nn.init.zeros_(layer.bias)
    return layer


def _conv(in_ch: int, out_ch: int, kernel: int, scale: float = 1.0) -> nn.Conv2d:
    return _init(nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2), scale)


def fir_kernel_2d(taps: tuple[float, ...]) -> torch.Tensor:
    """The separable FIR filter as a 2-D kernel summing to one (official ``_setup_kernel``).

    >>> fir_kernel_2d((1, 1))
    tensor([[0.2500, 0.2500],
            [0.2500, 0.2500]])
    """
    k = torch.tensor(taps, dtype=torch.float32)
    k = torch.outer(k, k)
    return k / k.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with ``kernel`` per channel, keep every ``down``-th pixel.

    Hand-written in plain torch (pad + depthwise conv2d) because the official op is a CUDA extension; it
    computes what the official CPU fallback ``upfirdn2d_native`` computes for non-negative padding.

    >>> upfirdn2d(torch.ones(1, 1, 4, 4), fir_kernel_2d((1, 1)), down=2).shape
    torch.Size([1, 1, 2, 2])
    """
    n, c, h, w = x.shape
    if up > 1:
        spread = x.new_zeros(n, c, h * up, w * up)
        spread[..., ::up, ::up] = x
        x = spread
    x = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    weight = torch.flip(kernel, (0, 1)).to(x)[None, None].expand(c, 1, *kernel.shape)
    return F.conv2d(x, weight, stride=down, groups=c)


def upsample_2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Double H and W with the FIR filter (official ``upsample_2d``, factor 2, gain 1).

    >>> upsample_2d(torch.ones(1, 1, 2, 2), fir_kernel_2d((1, 1))).flatten().tolist() == [1.0] * 16
    True
    """
    p = kernel.shape[0] - 2
    return upfirdn2d(x, kernel * 4, up=2, pad=((p + 1) // 2 + 1, p // 2))


def downsample_2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Halve H and W with the FIR filter (official ``downsample_2d``, factor 2, gain 1).

    >>> downsample_2d(torch.arange(4.0).reshape(1, 1, 2, 2), fir_kernel_2d((1, 1))).item()
    1.5
    """
    p = kernel.shape[0] - 2
    return upfirdn2d(x, kernel, down=2, pad=((p + 1) // 2, p // 2))


class GaussianFourierProjection(nn.Module):
    """sin/cos features of 2 pi x W with fixed random frequencies W ~ N(0, scale^2); x is log sigma."""

    def __init__(self, size: int, scale: float) -> None:
        super().__init__()
        self.register_buffer("W", torch.randn(size) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj = x[:, None] * self.W[None, :] * (2 * math.pi)
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)


class ResBlockBigGAN(nn.Module):
    """Official ``ResnetBlockBigGANpp``: GN-swish-(resample)-conv (+ dense time bias) -GN-swish-conv, plus a
    (resampled, 1x1-projected when needed) shortcut, the sum divided by sqrt 2."""

    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, kernel: torch.Tensor | None = None,
                 resample: str = "none") -> None:
        super().__init__()
        self.GroupNorm_0 = nn.GroupNorm(_groups(in_ch), in_ch, eps=GROUP_NORM_EPS)
        self.Conv_0 = _conv(in_ch, out_ch, 3)
        self.Dense_0 = _init(nn.Linear(temb_dim, out_ch))
        self.GroupNorm_1 = nn.GroupNorm(_groups(out_ch), out_ch, eps=GROUP_NORM_EPS)
        self.Conv_1 = _conv(out_ch, out_ch, 3, scale=ZERO_INIT_SCALE)
        self.Conv_2 = _conv(in_ch, out_ch, 1) if in_ch != out_ch or resample != "none" else None
        self.resample = {"none": None, "up": upsample_2d, "down": downsample_2d}[resample]
        if self.resample is not None:
            self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = F.silu(self.GroupNorm_0(x))
        if self.resample is not None:
            h = self.resample(h, self.kernel)
            x = self.resample(x, self.kernel)
        h = self.Conv_0(h) + self.Dense_0(F.silu(temb))[:, :, None, None]
        h = self.Conv_1(F.silu(self.GroupNorm_1(h)))
        if self.Conv_2 is not None:
            x = self.Conv_2(x)
        return (x + h) / math.sqrt(2.0)


class AttnBlock(nn.Module):
    """Official ``AttnBlockpp``: single-head self-attention over all pixels, residual divided by sqrt 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.GroupNorm_0 = nn.GroupNorm(_groups(channels), channels, eps=GROUP_NORM_EPS)
        self.NIN_0 = _conv(channels, channels, 1, scale=0.1)
        self.NIN_1 = _conv(channels, channels, 1, scale=0.1)
        self.NIN_2 = _conv(channels, channels, 1, scale=0.1)
        self.NIN_3 = _conv(channels, channels, 1, scale=ZERO_INIT_SCALE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.GroupNorm_0(x)
        q, k, v = (layer(h).flatten(2).transpose(1, 2) for layer in (self.NIN_0, self.NIN_1, self.NIN_2))
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(x.shape)
        return (x + self.NIN_3(h)) / math.sqrt(2.0)


class DownLevel(nn.Module):
    """One encoder level: residual blocks (each followed by attention at attention levels), then, below the
    bottom level, a downsampling residual block plus the 1x1-projected input pyramid (``input_skip``, sum)."""

    def __init__(self, in_ch: int, out_ch: int, num_blocks: int, temb_dim: int, attention: bool,
                 kernel: torch.Tensor | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResBlockBigGAN(in_ch if i == 0 else out_ch, out_ch, temb_dim)
                                    for i in range(num_blocks))
        self.attentions = nn.ModuleList(AttnBlock(out_ch) for _ in range(num_blocks) if attention)
        self.down = None if kernel is None else ResBlockBigGAN(out_ch, out_ch, temb_dim, kernel, "down")
        self.combine = None if kernel is None else _conv(1, out_ch, 1)


class UpLevel(nn.Module):
    """One decoder level: residual blocks over [h, skip], attention at attention levels, the output-skip head
    (GN-swish-3x3 conv to one channel) and, above the top level, an upsampling residual block."""

    def __init__(self, in_ch: int, skip_chs: list[int], out_ch: int, temb_dim: int, attention: bool,
                 kernel: torch.Tensor | None, top: bool) -> None:
        super().__init__()
        blocks = []
        for skip in skip_chs:
            blocks.append(ResBlockBigGAN(in_ch + skip, out_ch, temb_dim))
            in_ch = out_ch
        self.blocks = nn.ModuleList(blocks)
        self.attention = AttnBlock(out_ch) if attention else None
        self.norm = nn.GroupNorm(_groups(out_ch), out_ch, eps=GROUP_NORM_EPS)
        self.to_image = _conv(out_ch, 1, 3, scale=ZERO_INIT_SCALE)
        self.up = None if top else ResBlockBigGAN(out_ch, out_ch, temb_dim, kernel, "up")


class NCSNpp(nn.Module):
    """Score network s(x, sigma) for x: N x 1 x H x W in [0, 1], sigma: N noise levels; returns N x 1 x H x W.

    H and W must be multiples of ``settings.size_multiple`` (64 for the official seven levels).

    >>> net = NCSNpp(NCSNppSettings(image_size=32, nf=8, ch_mult=(1, 2, 2), attn_resolutions=(8,)))
    >>> net(torch.rand(2, 1, 32, 32), torch.tensor([0.5, 20.0])).shape
    torch.Size([2, 1, 32, 32])
    """

    def __init__(self, settings: NCSNppSettings | None = None) -> None:
        super().__init__()
        self.settings = settings = settings or NCSNppSettings()
        nf, levels = settings.nf, len(settings.ch_mult)
        temb_dim = 4 * nf
        kernel = fir_kernel_2d(settings.fir_kernel)
        self.register_buffer("kernel", kernel, persistent=False)
        attention = [r in settings.attn_resolutions for r in settings.resolutions]
        self.fourier = GaussianFourierProjection(nf, settings.fourier_scale)
        self.temb_0 = _init(nn.Linear(2 * nf, temb_dim))
        self.temb_1 = _init(nn.Linear(temb_dim, temb_dim))
        self.conv_in = _conv(1, nf, 3)

        skips, in_ch, down = [nf], nf, []
        for level, mult in enumerate(settings.ch_mult):
            out_ch = nf * mult
            bottom = level == levels - 1
            down.append(DownLevel(in_ch, out_ch, settings.num_res_blocks, temb_dim, attention[level],
                                  None if bottom else kernel))
            skips += [out_ch] * (settings.num_res_blocks + (0 if bottom else 1))
            in_ch = out_ch
        self.down = nn.ModuleList(down)
        self.mid_0 = ResBlockBigGAN(in_ch, in_ch, temb_dim)
        self.mid_attention = AttnBlock(in_ch)
        self.mid_1 = ResBlockBigGAN(in_ch, in_ch, temb_dim)

        up = []
        for level in reversed(range(levels)):
            out_ch = nf * settings.ch_mult[level]
            level_skips = [skips.pop() for _ in range(settings.num_res_blocks + 1)]
            up.append(UpLevel(in_ch, level_skips, out_ch, temb_dim, attention[level], kernel, top=level == 0))
            in_ch = out_ch
        self.up = nn.ModuleList(up)

    def check_input(self, x: torch.Tensor, sigma: torch.Tensor) -> None:
        """Raise ValueError unless x is N x 1 x H x W, H and W multiples of ``size_multiple``, sigma N values."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 1:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected x as a tensor N x 1 x H x W, got {shape}")
        multiple = self.settings.size_multiple
        if x.shape[-2] % multiple or x.shape[-1] % multiple:
            raise ValueError(f"expected H and W to be multiples of {multiple} (one halving per level), "
                             f"got {tuple(x.shape[-2:])}; pad the image first")
        if not isinstance(sigma, torch.Tensor) or sigma.shape != (x.shape[0],):
            shape = tuple(sigma.shape) if isinstance(sigma, torch.Tensor) else type(sigma).__name__
            raise ValueError(f"expected sigma as a tensor of {x.shape[0]} noise levels (one per image), got {shape}")

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.check_input(x, sigma)
        temb = self.temb_1(F.silu(self.temb_0(self.fourier(torch.log(sigma)))))
        x = 2 * x - 1
        pyramid = x
        hs = [self.conv_in(x)]
        for level in self.down:
            for i, block in enumerate(level.blocks):
                h = block(hs[-1], temb)
                if level.attentions:
                    h = level.attentions[i](h)
                hs.append(h)
            if level.down is not None:
                pyramid = downsample_2d(pyramid, self.kernel)
                hs.append(level.down(hs[-1], temb) + level.combine(pyramid))

        h = self.mid_1(self.mid_attention(self.mid_0(hs[-1], temb)), temb)

        out = None
        for level in self.up:
            for block in level.blocks:
                h = block(torch.cat([h, hs.pop()], dim=1), temb)
            if level.attention is not None:
                h = level.attention(h)
            image = level.to_image(F.silu(level.norm(h)))
            out = image if out is None else upsample_2d(out, self.kernel) + image
            if level.up is not None:
                h = level.up(h, temb)
        if self.settings.scale_by_sigma:
            out = out / sigma[:, None, None, None]
        return out
