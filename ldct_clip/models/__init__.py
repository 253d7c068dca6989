"""The CLIPDenoising network: adapter, frozen CLIP trunk, feature augmentation, decoder, checkpoints."""

from ldct_clip.models.adapter import GrayToRGB
from ldct_clip.models.augment import FeatureAugmentation
from ldct_clip.models.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint
from ldct_clip.models.decoder import Decoder
from ldct_clip.models.denoiser import CLIPDenoiser, DenoiserConfig
from ldct_clip.models.encoder import CLIPEncoder, read_visual_state_dict

__all__ = [
    "CLIPDenoiser",
    "CLIPEncoder",
    "Decoder",
    "DenoiserConfig",
    "FeatureAugmentation",
    "GrayToRGB",
    "load_checkpoint",
    "read_checkpoint_metadata",
    "read_visual_state_dict",
    "save_checkpoint",
]
