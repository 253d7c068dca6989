"""What training touches: gradients, feature augmentation, BatchNorm modes."""

from __future__ import annotations

import pytest
import torch

from ldct_clip.models.augment import FeatureAugmentation
from ldct_clip.models.denoiser import CLIPDenoiser


def test_gradients_reach_adapter_and_decoder_but_not_encoder(ct_model: CLIPDenoiser) -> None:
    model = ct_model.train()
    model.zero_grad(set_to_none=True)
    x = torch.rand(2, 1, 64, 64)
    torch.nn.functional.l1_loss(model(x), x).backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert not any(p.requires_grad for p in model.encoder.parameters())
    assert model.adapter.weight.grad is not None and model.adapter.weight.grad.abs().sum() > 0
    decoder_grads = [p.grad for p in model.decoder.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in decoder_grads)
    assert {id(p) for p in model.trainable_parameters()} == {
        id(p) for p in [*model.adapter.parameters(), *model.decoder.parameters()]
    }
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("gamma", [0.025, 0.05])
def test_feature_augmentation_spread_grows_with_scale(gamma: float) -> None:
    torch.manual_seed(1)
    aug = FeatureAugmentation(gamma).train()
    features = [torch.ones(4, 8, 64, 64) for _ in range(4)]
    out = aug(features)
    for i, f in enumerate(out, start=1):
        alpha = f  # features were ones, so the output is alpha itself
        assert abs(alpha.mean().item() - 1) < 0.01 * gamma * i + 1e-3
        assert alpha.std().item() == pytest.approx(gamma * i, rel=0.03)


def test_feature_augmentation_only_in_training() -> None:
    aug = FeatureAugmentation(0.025)
    features = [torch.rand(1, 4, 8, 8)]
    assert aug.eval()(features)[0] is features[0]
    assert not torch.equal(aug.train()(features)[0], features[0])


def test_model_is_deterministic_in_eval_and_perturbed_in_training() -> None:
    torch.manual_seed(0)
    model = CLIPDenoiser(encoder_weights="random", bn="frozen", pfa_gamma=0.025)
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), model(x))
        model.train()
        assert not torch.equal(model(x), model(x))
        model.augment.gamma = 0.0  # no augmentation and frozen BN: training forward is the eval forward
        train_out = model(x)
        assert torch.allclose(train_out, model.eval()(x), atol=1e-6)


def _running_means(model: CLIPDenoiser) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]


@pytest.mark.parametrize(("bn", "changes"), [("adapt", True), ("frozen", False)])
def test_bn_mode_decides_whether_running_statistics_adapt(bn: str, changes: bool) -> None:
    torch.manual_seed(0)
    model = CLIPDenoiser(encoder_weights="random", bn=bn).train()
    assert model.encoder.training is (bn == "adapt")
    before = _running_means(model)
    model(torch.rand(2, 1, 64, 64))
    after = _running_means(model)
    changed = [not torch.equal(a, b) for a, b in zip(before, after)]
    assert all(changed) if changes else not any(changed)
    model.eval()
    assert not model.encoder.training
    frozen_now = _running_means(model)
    with torch.no_grad():
        model(torch.rand(2, 1, 64, 64))
    assert all(torch.equal(a, b) for a, b in zip(frozen_now, _running_means(model)))
