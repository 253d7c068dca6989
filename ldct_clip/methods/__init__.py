"""Denoising methods behind one interface: CLIPDenoising and the methods it is compared with.

One module per method, one registry (:mod:`ldct_clip.methods.base`):

- ``clipdenoising``: frozen CLIP RN50 encoder + learned decoder, trained on full-dose images with online
  Gaussian noise (this toolkit's model);
- ``noise2sim``: UNet2 trained on pairs of nearby low-dose slices with the 30 HU mask (self-supervised);
- ``redcnn``: RED-CNN trained on quarter/full-dose patch pairs (supervised reference);
- ``scoresde_ct``: an NCSN++ score model of full-dose slices and a predictor-corrector posterior sampler.

>>> from ldct_clip.methods import create_model, list_methods
>>> list_methods()[0]
'clipdenoising'

The house rules (verb = CLI module, noun = library module) are in the ``ldct_clip`` package docstring.
"""

from ldct_clip.methods import clipdenoising, noise2sim, redcnn, scoresde_ct  # noqa: F401  (each registers itself)
from ldct_clip.methods.base import Method, create_model, get_method, list_methods, register, settings_from_dict

__all__ = ["Method", "create_model", "get_method", "list_methods", "register", "settings_from_dict"]
