import pytest

from benchmark.config import ConfigError, RunConfig, apply_overrides, available_presets, load_preset


def test_presets_load():
    assert {"smoke", "default", "paper"} <= set(available_presets())
    for name in available_presets():
        cfg = load_preset(name)
        assert cfg.codecs and cfg.preset == name


def test_overrides_change_values_and_hash():
    cfg = load_preset("smoke")
    new = apply_overrides(cfg, ["probe.seeds=[0,1,2]", "max_items=4", "codecs.lowpass.options.factor=2"])
    assert new.probe["seeds"] == [0, 1, 2] and new.max_items == 4
    assert next(c for c in new.codecs if c.name == "lowpass").options == {"factor": 2}
    assert new.hash() != cfg.hash() and new.run_name.startswith("smoke-")


def test_hash_ignores_device_and_workers_and_round_trips():
    cfg = load_preset("smoke")
    assert apply_overrides(cfg, ["workers=1", "device=cuda"]).hash() == cfg.hash()
    assert RunConfig.from_dict(cfg.to_dict()).hash() == cfg.hash()


def test_bad_overrides_and_keys_are_rejected():
    cfg = load_preset("smoke")
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(cfg, ["probe.seeds"])
    with pytest.raises(ConfigError, match="unknown config keys"):
        apply_overrides(cfg, ["no_such_key=1"])
    with pytest.raises(ConfigError, match="no list entry"):
        apply_overrides(cfg, ["codecs.nope.options.x=1"])
    with pytest.raises(ConfigError, match="unknown preset"):
        load_preset("nope")
