import os
import subprocess
import sys
import textwrap

import pytest
import torch

from benchmark.music2latent.inference import (NOISE_BLOCK_FRAMES, BlockNoise, decode_latents, latent_keys,
                                              encode_audio, karras_sigmas, min_decode_overlap,
                                              plan_chunks, sample_representation)


def test_karras_grid():
    assert karras_sigmas(1, 0.002, 80.0, 7.0) == [80.0, pytest.approx(0.002)]
    grid = karras_sigmas(2, 0.002, 80.0, 7.0)
    assert grid == [80.0, pytest.approx(2.5152, abs=1e-4), pytest.approx(0.002)]
    grid = karras_sigmas(8, 0.002, 80.0, 7.0)
    assert all(a > b for a, b in zip(grid, grid[1:]))
    with pytest.raises(ValueError):
        karras_sigmas(0, 0.002, 80.0, 7.0)


@pytest.mark.parametrize("total, chunk, overlap", [(10, None, 0), (10, 10, 2), (100, 16, 4),
                                                   (101, 16, 4), (17, 16, 15)])
def test_plan_chunks_covers_with_overlap(total, chunk, overlap):
    spans = plan_chunks(total, chunk, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == total
    for (a0, b0), (a1, _) in zip(spans, spans[1:]):
        assert b0 - a1 >= overlap and a1 > a0  # overlapping, advancing
    assert all(b - a == min(total, chunk or total) for a, b in spans)


def test_block_noise_is_chunking_and_batch_invariant():
    noise = BlockNoise(seed=7, batch=3, bins=16)
    whole = noise(0, 0, 3 * NOISE_BLOCK_FRAMES)
    assert whole.shape == (3, 2, 16, 3 * NOISE_BLOCK_FRAMES)
    torch.testing.assert_close(noise(0, 50, 150), whole[..., 50:150])
    torch.testing.assert_close(BlockNoise(7, 1, 16)(0, 0, 70), whole[:1, ..., :70])
    assert not torch.allclose(noise(1, 0, 64), whole[..., :64])  # steps differ
    assert not torch.allclose(BlockNoise(8, 3, 16)(0, 0, 64), whole[..., :64])  # seeds differ
    assert abs(whole.mean()) < 0.05 and abs(whole.std() - 1) < 0.05


def test_encode_audio_equals_one_forward_pass(smoke_config, smoke_model, smoke_frontend,
                                              music_like):
    wave = music_like(0.7, smoke_config.sample_rate)
    k = smoke_frontend.latents_for_samples(wave.shape[-1])
    z = encode_audio(smoke_model, smoke_frontend, wave[0].numpy(), chunk_seconds=None)
    assert z.shape == (1, smoke_config.latent_dim, k)
    with torch.no_grad():
        spec = smoke_frontend.wave_to_spec(wave[:, :smoke_frontend.crop_length(wave.shape[-1])])
        torch.testing.assert_close(z, smoke_model.encode(spec))
        # a chunk longer than the input is one pass too
        torch.testing.assert_close(encode_audio(smoke_model, smoke_frontend, wave,
                                                chunk_seconds=10.0), z)
        f = encode_audio(smoke_model, smoke_frontend, wave, chunk_seconds=0.2, features=True)
    assert f.shape == (1, smoke_config.feature_dim, k)
    with pytest.raises(ValueError, match="too short"):
        encode_audio(smoke_model, smoke_frontend, wave[:, :300])


def test_decode_is_deterministic_and_matches_the_sampler(smoke_config, smoke_model,
                                                         smoke_frontend):
    z = torch.rand(2, smoke_config.latent_dim, 12) * 1.6 - 0.8
    out = decode_latents(smoke_model, smoke_frontend, z, seed=3, chunk_latents=None)
    assert out.shape == (2, smoke_frontend.samples_for_latents(12))
    assert out.abs().max() <= 1 and out.abs().max() > 0.01
    torch.testing.assert_close(decode_latents(smoke_model, smoke_frontend, z, seed=3,
                                              chunk_latents=None), out, rtol=0, atol=0)
    assert not torch.allclose(decode_latents(smoke_model, smoke_frontend, z, seed=4,
                                             chunk_latents=None), out)
    noise = BlockNoise(3, 2, smoke_config.freq_bins, keys=latent_keys(z))
    for steps in (1, 3):
        with torch.no_grad():
            rep = sample_representation(smoke_model, smoke_model.decode_pyramid(z),
                                        12 * smoke_config.downsample_time, steps, noise)
        expected = smoke_frontend.spec_to_wave(rep)
        got = decode_latents(smoke_model, smoke_frontend, z, steps=steps, seed=3,
                             chunk_latents=None)
        torch.testing.assert_close(got, expected)
    # an item decodes to the same audio alone, first or second in a batch (noise follows content)
    alone = decode_latents(smoke_model, smoke_frontend, z[1:], seed=3, chunk_latents=None)
    swapped = decode_latents(smoke_model, smoke_frontend, z.flip(0), seed=3, chunk_latents=None)
    torch.testing.assert_close(alone[0], out[1], rtol=0, atol=1e-5)
    torch.testing.assert_close(swapped[0], out[1], rtol=0, atol=1e-5)


def _relative_error_near(y, ref, centres, half_width, edge):
    """RMS(y - ref) / RMS(ref) within +-half_width of the centres, and elsewhere."""
    near = torch.zeros(ref.shape[-1], dtype=torch.bool)
    for c in centres:
        near[max(0, c - half_width):c + half_width] = True
    inner = torch.zeros_like(near)
    inner[edge:-edge] = True

    def rel(sel):
        return float((y[0, sel] - ref[0, sel]).square().mean().sqrt()
                     / ref[0, sel].square().mean().sqrt())
    return rel(near & inner), rel(~near & inner)


def test_chunked_decoding_has_no_seams(smoke_config, smoke_model, smoke_frontend, music_like):
    """Chunks see different GroupNorm statistics, so chunked and whole decoding differ a
    little everywhere; a seam would show as a larger difference around chunk boundaries.
    Negative control: non-overlapping chunks concatenated (the official package's scheme,
    in the waveform domain) have a 10x larger error there."""
    c = smoke_config
    z = encode_audio(smoke_model, smoke_frontend, music_like(2.5, c.sample_rate),
                     chunk_seconds=None)
    total, chunk, overlap = z.shape[-1], 64, 8
    spl, edge = c.samples_per_latent, c.edge_samples
    whole = decode_latents(smoke_model, smoke_frontend, z, chunk_latents=None)
    chunked = decode_latents(smoke_model, smoke_frontend, z, chunk_latents=chunk,
                             overlap=overlap)
    spans = plan_chunks(total, chunk, overlap)
    assert len(spans) >= 4
    fades = [(a1 * spl + edge + b0 * spl) // 2 for (_, b0), (a1, _) in zip(spans, spans[1:])]
    near, body = _relative_error_near(chunked, whole, fades, overlap * spl // 2, edge)
    assert body < 0.15  # chunking changes little (GroupNorm statistics only)
    assert near < 1.5 * body + 0.01  # and no more near the boundaries

    noise = BlockNoise(0, 1, c.freq_bins, keys=latent_keys(z))
    naive = torch.zeros_like(whole)
    with torch.no_grad():
        for start in range(0, total, chunk):
            end = min(total, start + chunk)
            rep = sample_representation(smoke_model, smoke_model.decode_pyramid(z[..., start:end]),
                                        (end - start) * c.downsample_time, 1, noise,
                                        start * c.downsample_time)
            naive[:, start * spl:end * spl + edge] += smoke_frontend.spec_to_wave(rep)
    seams = [s * spl + edge // 2 for s in range(chunk, total, chunk)]
    near_naive, body_naive = _relative_error_near(naive, whole, seams, overlap * spl // 2, edge)
    assert near_naive > 5 * body_naive


def test_decode_argument_checks(smoke_config, smoke_model, smoke_frontend):
    z = torch.zeros(1, smoke_config.latent_dim, 20)
    assert min_decode_overlap(smoke_config) == 2  # 192 attenuated samples, 128 per latent
    with pytest.raises(ValueError, match="overlap"):
        decode_latents(smoke_model, smoke_frontend, z, chunk_latents=8, overlap=1)
    with pytest.raises(ValueError, match="latents must be"):
        decode_latents(smoke_model, smoke_frontend, torch.zeros(1, 3, 4))


MEMORY_SCRIPT = textwrap.dedent("""
    import sys, torch
    from benchmark.music2latent.config import PRESETS
    from benchmark.music2latent.frontend import SpectralFrontend
    from benchmark.music2latent.inference import decode_latents, encode_audio
    from benchmark.music2latent.model import Music2Latent, randomize_parameters
    torch.set_num_threads(1)
    what, latents = sys.argv[1], int(sys.argv[2])
    c = PRESETS["smoke"]
    model = randomize_parameters(Music2Latent(c).eval()); fe = SpectralFrontend(c)
    chunk = 32
    if what == "encode":
        wave = 0.1 * torch.randn(1, fe.samples_for_latents(latents))
        encode_audio(model, fe, wave, chunk_seconds=chunk / c.latent_rate_hz)
    else:
        z = torch.rand(1, c.latent_dim, latents) * 1.6 - 0.8
        decode_latents(model, fe, z, chunk_latents=None if what == "whole" else chunk,
                       overlap=4)
    # VmHWM: peak RSS of this process image (ru_maxrss would also count the parent's RSS
    # at fork time, since the child starts as a copy of the pytest process)
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0]
    print(int(hwm.split()[1]) / 1024)
""")


def _peak_mb(what: str, latents: int) -> float:
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, what, str(latents)],
                            capture_output=True, text=True, check=True, timeout=300)
    return float(result.stdout)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_peak_memory_is_flat_in_length():
    """Peak RSS (one fresh process per case) of chunked decoding/encoding does not grow with
    the input length beyond the output buffer (under 1 MB here), while decoding the long input
    in one pass takes tens of MB more."""
    short, long_ = _peak_mb("decode", 96), _peak_mb("decode", 1024)
    assert long_ - short < 10.0, (short, long_)
    enc_short, enc_long = _peak_mb("encode", 96), _peak_mb("encode", 1024)
    assert enc_long - enc_short < 10.0, (enc_short, enc_long)
    assert _peak_mb("whole", 1024) - long_ > 50.0
