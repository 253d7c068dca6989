"""Configs: every shipped YAML parses; typos and wrong types are one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from ldct_clip.config import ExperimentConfig, config_from_dict, load_config, save_config
from ldct_clip.errors import InputError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_all_configs_are_shipped() -> None:
    names = {p.stem for p in CONFIGS}
    for base in ("ldct_mayo_sigma5", "natural_gaussian_sigma15", "srgb_poisson_gaussian", "noise2sim_mayo",
                 "redcnn_mayo"):
        assert base in names and f"{base}_smoke" in names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_parses_and_round_trips(path: Path, tmp_path: Path) -> None:
    config = load_config(path)
    save_config(config, tmp_path / "resolved.yaml")
    assert load_config(tmp_path / "resolved.yaml") == config
    if config.method != "clipdenoising":
        return
    if path.stem.endswith("_smoke"):
        assert config.model.encoder_weights == "random"  # named explicitly, so it runs offline
    else:
        assert config.model.encoder_weights == "openai"


def test_ldct_config_follows_spec() -> None:
    c = load_config(Path(__file__).resolve().parents[1] / "configs" / "ldct_mayo_sigma5.yaml")
    assert (c.model.in_channels, c.model.bn, c.model.pfa_gamma) == (1, "adapt", 0.025)
    assert (c.data.kind, c.data.split, c.data.noise_sigma, c.data.patch_size) == ("mayo", "clipdenoising", 5.0, 128)
    assert (c.optim.lr, c.optim.weight_decay, c.optim.betas, c.optim.grad_clip) == (3e-4, 1e-4, (0.9, 0.999), 0.01)
    assert (c.schedule.iterations, c.schedule.flat_iterations, c.schedule.eta_min) == (40_000, 0, 1e-6)
    assert (c.train.batch_size, c.train.mixup_prob, c.train.mixup_beta, c.train.seed) == (16, 0.5, 1.2, 100)
    assert c.train.metric_preset == "clipdenoising"


def test_natural_and_srgb_schedules() -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    natural = load_config(root / "natural_gaussian_sigma15.yaml")
    srgb = load_config(root / "srgb_poisson_gaussian.yaml")
    assert (natural.schedule.iterations, natural.schedule.flat_iterations) == (300_000, 92_000)
    assert natural.data.noise_sigma == 15.0 and natural.model.in_channels == 3
    assert srgb.model.pfa_gamma == 0.05 and srgb.data.kind == "paired_folder"


def test_overrides_are_type_checked() -> None:
    config = config_from_dict({}, ["model.pfa_gamma=0.05", "train.batch_size=8", "optim.betas=[0.8, 0.99]",
                                   "schedule.eta_min=1e-7", "data.val_max_slices=null"])
    assert config.model.pfa_gamma == 0.05 and config.train.batch_size == 8
    assert config.optim.betas == (0.8, 0.99) and config.schedule.eta_min == 1e-7
    with pytest.raises(InputError, match="'train.batch_size' must be int, got 'eight'"):
        config_from_dict({}, ["train.batch_size=eight"])
    with pytest.raises(InputError, match="'model.bn' must be one of"):
        config_from_dict({}, ["model.bn=train"])
    with pytest.raises(InputError, match="must look like section.key=value"):
        config_from_dict({}, ["model.pfa_gamma"])


def test_unknown_key_names_the_nearest_valid_one() -> None:
    with pytest.raises(InputError, match="unknown config key 'model.pfa_gama'; did you mean 'model.pfa_gamma'"):
        config_from_dict({"model": {"pfa_gama": 0.05}})
    with pytest.raises(InputError, match="unknown config key 'trian'; did you mean 'train'"):
        config_from_dict({"trian": {}})
    with pytest.raises(InputError, match="did you mean 'optim.lr'"):
        config_from_dict({}, ["optim.lrr=0.1"])


def test_values_are_validated() -> None:
    with pytest.raises(InputError, match="patch_size must be a multiple of 32"):
        config_from_dict({"data": {"patch_size": 100}})
    with pytest.raises(InputError, match="flat_iterations"):
        config_from_dict({"schedule": {"iterations": 10, "flat_iterations": 10}})
    with pytest.raises(InputError, match="must be bool"):
        config_from_dict({"data": {"cache": "yes please"}})


def test_broken_yaml_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(InputError, match="bad.yaml: not valid YAML at line"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(InputError, match="must be a YAML mapping"):
        load_config(bad)
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


def test_defaults_are_the_ldct_recipe() -> None:
    assert ExperimentConfig().to_dict()["optim"]["betas"] == [0.9, 0.999]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"data": {"val_max_slices": 0}}, "data.val_max_slices must be >= 1"),
        ({"train": {"metric_preset": "psnr"}}, "train.metric_preset must be one of clipdenoising"),
        ({"train": {"metric_preset": "natural"}}, "must be 'natural' for RGB models"),
        ({"data": {"kind": "image_folder", "validation_patients": ["L067"]}}, "applies to data.kind mayo only"),
        ({"data": {"validation_patients": "L067"}}, "'data.validation_patients' must be a list"),
    ],
)
def test_settings_that_would_fail_late_are_refused_at_load(changes: dict, message: str) -> None:
    """A bad preset would otherwise surface only at the first validation, thousands of steps in."""
    with pytest.raises(InputError, match=message):
        config_from_dict(changes)


def test_validation_patients_is_a_list_of_ids() -> None:
    config = config_from_dict({"data": {"validation_patients": ["L067", "L096"]}})
    assert config.data.validation_patients == ("L067", "L096")


def test_errors_say_whether_an_override_may_be_the_cause(tmp_path: Path) -> None:
    smoke = CONFIGS[0]
    with pytest.raises(InputError, match=r"with --set overrides: unknown config key 'model\.pfa_gama'"):
        load_config(smoke, ["model.pfa_gama=1"])
    typo = tmp_path / "typo.yaml"
    typo.write_text("trian: {}\n")
    with pytest.raises(InputError, match=r"typo\.yaml: unknown config key 'trian'") as info:
        load_config(typo)
    assert "--set" not in str(info.value)


def test_comparison_configs_follow_the_official_code() -> None:
    root = Path(__file__).resolve().parents[1] / "configs"
    n2s = load_config(root / "noise2sim_mayo.yaml")
    assert (n2s.method, n2s.model.features, n2s.model.window_hu) == ("noise2sim", (96, 192, 384), (-160.0, 240.0))
    assert (n2s.optim.name, n2s.optim.lr, n2s.optim.betas, n2s.optim.weight_decay) == ("adam", 5e-4, (0.1, 0.99), 0.0)
    assert (n2s.schedule.kind, n2s.schedule.rampup_fraction, n2s.schedule.rampdown_fraction) == ("ramped", 0.1, 0.3)
    assert (n2s.data.split, n2s.data.neighbor_slices, n2s.data.mask_threshold_hu) == ("noise2sim", 2, 30.0)
    assert n2s.data.train_on_test_low_dose is False and n2s.train.batch_size == 32 and n2s.train.mixup_prob == 0
    red = load_config(root / "redcnn_mayo.yaml")
    assert (red.method, red.model.channels, red.optim.lr, red.data.patch_size, red.data.patches_per_slice) == (
        "redcnn", 96, 1e-5, 64, 10)
    assert (red.schedule.kind, red.schedule.milestones, red.schedule.gamma) == ("step", (3000,), 0.5)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.weight_decay=-1", "optim.weight_decay must be >= 0"),
        ("optim.betas=[2, 3]", "optim.betas must both be in [0, 1)"),
        ("optim.lr=.inf", "must be finite"),
        ("schedule.eta_min=-1", "schedule.eta_min must be in [0, optim.lr)"),
        ("optim.grad_clip=0", "optim.grad_clip must be > 0"),
        ("name=[unclosed", "not valid YAML"),
        ("name=!!python/object/apply:os.system ['touch /tmp/ldct_clip_pwned']", "not valid YAML"),
        ("method=nosuch", "method 'nosuch': unknown"),
        ("model.bn=2", "'model.bn' must be one of"),
    ],
)
def test_bad_values_are_one_line(override: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        config_from_dict({}, [override])
    assert not Path("/tmp/ldct_clip_pwned").exists()  # a YAML tag is never executed


def test_binary_config_file_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(InputError, match="not a text file"):
        load_config(path)


def test_model_section_takes_the_methods_settings() -> None:
    config = config_from_dict({"method": "redcnn", "model": {"channels": 48}, "train": {"metric_preset": "redcnn"}})
    assert config.model.channels == 48 and config.in_channels == 1
    with pytest.raises(InputError, match="unknown config key 'model.pfa_gamma'"):
        config_from_dict({"method": "redcnn", "model": {"pfa_gamma": 0.1}})
