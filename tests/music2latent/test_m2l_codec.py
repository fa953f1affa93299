import hashlib

import pytest
import torch

from benchmark.codecs.protocol import CodecError
from benchmark.codecs.registry import create_codec
from benchmark.music2latent.codec import Music2LatentCodec, OfficialMusic2LatentCodec
from benchmark.music2latent.config import PRESETS
from benchmark.music2latent.model import Music2Latent, randomize_parameters


@pytest.fixture(scope="module")
def codec():
    return create_codec("music2latent", preset="smoke", seed=0)


def test_random_init_codec_is_flagged_and_described(codec):
    info = codec.info
    c = PRESETS["smoke"]
    assert (info.sample_rate, info.latent_dim, info.latent_rate_hz) == (16000, 8, 125.0)
    assert info.stochastic and info.decode_steps == 1 and info.has_features and info.can_decode
    assert info.parameters == Music2Latent(c).num_parameters()
    assert "RANDOM" in info.description and info.weights_id == "random-init:smoke:seed0"
    assert info.compression_ratio == pytest.approx(c.samples_per_latent / c.latent_dim)


def test_encode_decode_features_shapes_and_determinism(codec, music_like):
    audio = torch.cat([music_like(0.5, 16000, seed=s) for s in (0, 1)])
    z = codec.encode(audio)
    k = (audio.shape[-1] - 192) // 128
    assert z.shape == (2, 8, k)
    y = codec.decode(z)
    assert y.shape == (2, 128 * k + 192)
    torch.testing.assert_close(codec.decode(z), y, rtol=0, atol=0)  # seeded per call
    other = create_codec("music2latent", preset="smoke", seed=0, steps=2)
    assert other.info.decode_steps == 2 and other.identity != codec.identity
    assert codec.features(audio).shape == (2, PRESETS["smoke"].feature_dim, k)


def test_bad_inputs_raise_codec_errors(codec):
    with pytest.raises(CodecError, match="too short"):
        codec.encode(torch.zeros(1, 100))
    with pytest.raises(CodecError, match="channels"):
        codec.decode(torch.zeros(1, 3, 4))
    with pytest.raises(CodecError, match="unknown Music2Latent preset"):
        Music2LatentCodec(preset="huge")


def _save_checkpoint(path, config, model_state, ema_state, step=1234):
    torch.save({"config": config.to_dict(), "model": model_state, "ema": ema_state,
                "step": step}, path)


def test_checkpoint_prefers_ema_weights(tmp_path, music_like):
    config = PRESETS["smoke"]
    online = randomize_parameters(Music2Latent(config), seed=1).eval()
    ema = randomize_parameters(Music2Latent(config), seed=2).eval()
    path = tmp_path / "ckpt.pt"
    _save_checkpoint(path, config, online.state_dict(),
                     {f"_orig_mod.{k}": v for k, v in ema.state_dict().items()})
    codec = Music2LatentCodec(checkpoint=str(path))
    assert codec.info.weights_id == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "ema weights" in codec.info.description and "1234" in codec.info.description
    audio = music_like(0.4, config.sample_rate)
    with torch.no_grad():
        spec = codec.frontend.wave_to_spec(audio[:, :codec.frontend.crop_length(audio.shape[-1])])
        torch.testing.assert_close(codec.encode(audio), ema.encode(spec), rtol=1e-4, atol=1e-5)
    no_ema = tmp_path / "no_ema.pt"
    _save_checkpoint(no_ema, config, online.state_dict(), None)
    codec = Music2LatentCodec(checkpoint=str(no_ema))
    assert "model weights" in codec.info.description
    with torch.no_grad():
        torch.testing.assert_close(codec.encode(audio), online.encode(spec), rtol=1e-4,
                                   atol=1e-5)


def test_bad_checkpoints_fail_with_the_path(tmp_path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(CodecError, match="nope.pt not found"):
        Music2LatentCodec(checkpoint=str(missing))
    wrong = tmp_path / "wrong.pt"
    torch.save({"gen_state_dict": {}}, wrong)
    with pytest.raises(CodecError, match="music2latent_official"):
        Music2LatentCodec(checkpoint=str(wrong))
    mismatch = tmp_path / "mismatch.pt"
    _save_checkpoint(mismatch, PRESETS["cpu"], Music2Latent(PRESETS["smoke"]).state_dict(),
                     None)
    with pytest.raises(CodecError, match="do not fit its config"):
        Music2LatentCodec(checkpoint=str(mismatch))


def test_official_codec_explains_where_to_get_the_weights(tmp_path):
    with pytest.raises(CodecError, match=r"music2latent\.pt.*CC BY-NC 4\.0.*huggingface"):
        OfficialMusic2LatentCodec(weights=str(tmp_path / "music2latent.pt"))
    with pytest.raises(CodecError, match="no path given"):
        create_codec("music2latent_official")


def test_named_rows_make_the_noise_follow_the_item_not_the_last_bits_of_its_latents(music_like):
    """The engine names each row by its input audio (Codec.rows_named): latents that differ only
    in the last bits (another thread count, another rank) then decode within float error of each
    other, and an item decodes the same alone or in a batch. Without names the noise follows the
    latents' bytes, so the same perturbation draws other noise (that is what names are for)."""
    codec = create_codec("music2latent", preset="smoke", seed=0)  # untrained: the noise dominates
    audio = torch.cat([music_like(0.5, 16000, seed=s) for s in (0, 1)])
    z = codec.encode(audio)
    nudged = z * (1 + 1e-6)
    assert not torch.equal(z, nudged)
    with codec.rows_named(["item-a", "item-b"]):
        y, y_nudged = codec.decode(z), codec.decode(nudged)
    torch.testing.assert_close(y_nudged, y, rtol=0, atol=1e-4)
    with codec.rows_named(["item-b"]):
        alone = codec.decode(z[1:])
    torch.testing.assert_close(alone[0], y[1], rtol=0, atol=1e-5)
    assert codec.row_names(2) is None  # names last only for the calls inside
    unnamed, unnamed_nudged = codec.decode(z), codec.decode(nudged)
    assert (unnamed_nudged - unnamed).abs().max() > 100 * (y_nudged - y).abs().max()
    with codec.rows_named(["only-one"]):  # names that do not fit the batch are not used
        torch.testing.assert_close(codec.decode(z), unnamed, rtol=0, atol=0)
