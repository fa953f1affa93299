import pytest

from benchmark.config import (ConfigError, RunConfig, apply_overrides, available_presets, default_weights_dir,
                              expand_variables, load_preset)


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
    with pytest.raises(ConfigError, match="precision 'fp16': choose one of fp32, bf16"):
        apply_overrides(cfg, ["precision=fp16"])


def test_precision_bf16_is_a_different_run_and_fp32_keeps_earlier_hashes():
    cfg = load_preset("smoke")
    payload = cfg.to_dict()
    payload.pop("precision")
    assert RunConfig.from_dict(payload).hash() == cfg.hash()  # a config written before the option
    assert apply_overrides(cfg, ["precision=bf16"]).hash() != cfg.hash()


# -- ${VARIABLES} naming user files -------------------------------------------------------------
def test_variables_expand_from_the_environment_with_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("BENCHMARK_WEIGHTS", raising=False)
    monkeypatch.delenv("M2L_TEST_UNSET", raising=False)
    assert default_weights_dir() == tmp_path / "cache" / "weights"
    data = {"codecs": [{"name": "dac", "options": {"weights": "${BENCHMARK_WEIGHTS}/w.pth"}}],
            "dataset": {"name": "folder", "root": "${M2L_TEST_UNSET:-/data/x}/audio"},
            "metric_options": {"fad": {"backbone_options": {"checkpoint": "${BENCHMARK_CACHE}/v.pth"}}}}
    cfg = RunConfig.from_dict(data)
    assert cfg.codecs[0].options["weights"] == f"{tmp_path}/cache/weights/w.pth"
    assert cfg.dataset.root == "/data/x/audio"
    assert cfg.metric_options["fad"]["backbone_options"]["checkpoint"] == f"{tmp_path}/cache/v.pth"
    monkeypatch.setenv("BENCHMARK_WEIGHTS", str(tmp_path / "w"))
    monkeypatch.setenv("M2L_TEST_UNSET", "/mnt")  # the environment wins over the default
    again = RunConfig.from_dict(data)
    assert again.codecs[0].options["weights"] == f"{tmp_path}/w/w.pth" and again.dataset.root == "/mnt/audio"
    assert again.hash() != cfg.hash()  # other files, another run
    assert RunConfig.from_dict(again.to_dict()).to_dict() == again.to_dict()  # saved configs hold the paths
    assert expand_variables({"a": ["$HOME", "plain", 3, None]}) == {"a": ["$HOME", "plain", 3, None]}


def test_unset_variable_is_named_with_its_key(monkeypatch):
    monkeypatch.delenv("M2L_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError, match=r"codecs\[0\]\.options\.weights = .*\$\{M2L_TEST_UNSET\}, which is not set"):
        RunConfig.from_dict({"codecs": [{"name": "dac", "options": {"weights": "${M2L_TEST_UNSET}/w.pth"}}]})


def test_overrides_expand_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCHMARK_WEIGHTS", str(tmp_path))
    cfg = apply_overrides(load_preset("smoke"), ["codecs.lowpass.options.note=${BENCHMARK_WEIGHTS}/x"])
    assert next(c for c in cfg.codecs if c.name == "lowpass").options == {"note": f"{tmp_path}/x"}
