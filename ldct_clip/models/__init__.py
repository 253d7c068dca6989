"""Networks: CLIPDenoising (adapter, frozen CLIP trunk, feature augmentation, decoder), the comparison methods'
networks (UNet2, RED-CNN, NCSN++ with its VE SDE) and self-contained checkpoints of any of them."""

from ldct_clip.models.adapter import GrayToRGB
from ldct_clip.models.augment import FeatureAugmentation
from ldct_clip.models.checkpoint import load_checkpoint, read_checkpoint_metadata, save_checkpoint
from ldct_clip.models.decoder import Decoder
from ldct_clip.models.denoiser import CLIPDenoiser, DenoiserConfig
from ldct_clip.models.encoder import CLIPEncoder, read_visual_state_dict
from ldct_clip.models.ncsnpp import NCSNpp, NCSNppSettings
from ldct_clip.models.redcnn import RedCNN, RedCNNSettings
from ldct_clip.models.score_sde import VESDE, dsm_loss, pc_denoise
from ldct_clip.models.unet2 import UNet2, UNet2Settings

__all__ = [
    "CLIPDenoiser",
    "CLIPEncoder",
    "Decoder",
    "DenoiserConfig",
    "FeatureAugmentation",
    "GrayToRGB",
    "NCSNpp",
    "NCSNppSettings",
    "RedCNN",
    "RedCNNSettings",
    "UNet2",
    "UNet2Settings",
    "VESDE",
    "dsm_loss",
    "load_checkpoint",
    "pc_denoise",
    "read_checkpoint_metadata",
    "read_visual_state_dict",
    "save_checkpoint",
]
