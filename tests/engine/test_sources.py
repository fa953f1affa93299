"""Sources: the streamed, chunked codec round trip and decoded folders, against closed forms
(identity in = identity out, exact positions of uncovered samples, whole-file resampling)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from benchmark.cache import ArtifactCache
from benchmark.data.audio import resample
from benchmark.data.dataset import Item
from benchmark.engine.sources import CodecSource, FolderSource
from benchmark.metrics.align import AlignmentError
from benchmark.metrics.sisdr import si_sdr
from tests import plugins

SR = 16000
CHUNK, OVERLAP = 0.25, 0.05            # 4000 and 800 samples at 16 kHz
CHUNK_N, OVERLAP_N = 4000, 800
STRIDE = CHUNK_N - OVERLAP_N


@pytest.fixture(autouse=True)
def reset_counters():
    plugins.CountingCodec.encode_calls = plugins.CountingCodec.decode_calls = 0


def noise(channels: int, seconds: float, rate: int = SR, seed: int = 0) -> np.ndarray:
    x = 0.25 * np.random.default_rng(seed).standard_normal((channels, int(round(seconds * rate))))
    return np.clip(x, -0.9, 0.9).astype(np.float32)


def write(path, audio: np.ndarray, rate: int = SR):
    sf.write(path, audio.T, rate, subtype="FLOAT")  # float WAV: what is read is what was written
    return path


def item_for(path) -> Item:
    return Item(id=path.name, path=path, split="test")


def collect(source, item: Item, segment_seconds=None):
    """(reference [channels, n], estimate [channels, n], pieces, stream) of one item."""
    stream = source.stream(item, segment_seconds)
    pieces = list(stream)
    reference = np.concatenate([p.segment.audio for p in pieces], axis=1)
    estimate = np.concatenate([p.estimate for p in pieces], axis=1)
    return reference, estimate, pieces, stream


def n_chunks(samples: int) -> int:
    """Codec calls of the chunked coder: one chunk, then one per stride until the rest fits."""
    return 1 + max(0, math.ceil((samples - CHUNK_N) / STRIDE))


def codec_source(codec, **kw) -> CodecSource:
    return CodecSource(codec, chunk_seconds=CHUNK, overlap_seconds=OVERLAP, **kw)


# -- CodecSource: chunking and cross-fading --------------------------------------------------------
def test_identity_codec_over_many_chunks_gives_back_the_input(tmp_path):
    x = noise(2, 1.3)  # 20800 samples: 7 overlapping chunks
    item = item_for(write(tmp_path / "x.wav", x))
    reference, estimate, pieces, stream = collect(codec_source(plugins.CountingCodec()), item)
    np.testing.assert_array_equal(reference, x)
    assert estimate.shape == x.shape
    np.testing.assert_allclose(estimate, x, rtol=0, atol=1e-6)  # cross-fade of equal signals
    assert stream.coding.chunks == n_chunks(x.shape[1]) == 7
    assert plugins.CountingCodec.encode_calls == 2 * 7  # channels are coded as a batch
    # every sample once, the 6 overlaps twice
    assert stream.coding.codec_seconds == pytest.approx((x.shape[1] + 6 * OVERLAP_N) / SR)
    f = stream.facts
    assert (f.reference_samples, f.estimate_samples, f.padded, f.cut, f.gap) == (20800, 20800, 0, 0, 0)


def test_overlapping_chunks_are_cross_faded_linearly(tmp_path):
    """Chunk k comes back as x + k d. Where chunks k and k + 1 overlap, sample j of the overlap
    gets weights 1 - r and r, r = (j + 0.5) / overlap: x + (k + r) d; elsewhere x + k d."""
    x = noise(1, 1.3, seed=14)
    n, step = x.shape[1], 0.01
    item = item_for(write(tmp_path / "x.wav", x))
    _, estimate, _, stream = collect(codec_source(plugins.ChunkOffsetCodec(step=step)), item)
    i = np.arange(n)
    k = np.minimum(i // STRIDE, n_chunks(n) - 1)  # the last chunk that starts at or before i
    j = i - k * STRIDE                            # position in chunk k; j < overlap: chunk k - 1 too
    blend = (k > 0) & (j < OVERLAP_N)
    offset = np.where(blend, (k - 1) + (j + 0.5) / OVERLAP_N, k) * step
    assert stream.coding.chunks == 7 and blend.sum() == 6 * OVERLAP_N
    np.testing.assert_allclose(estimate[0], x[0] + offset, rtol=0, atol=2e-6)


def test_item_shorter_than_a_chunk_is_one_call_exactly_like_decode_of_encode(tmp_path):
    x = noise(1, 0.2)
    item = item_for(write(tmp_path / "short.wav", x))
    _, estimate, _, stream = collect(codec_source(plugins.CroppingCodec(crop=100)), item)
    assert stream.coding.chunks == 1
    np.testing.assert_array_equal(estimate[:, :-100], x[:, :-100])
    assert not estimate[:, -100:].any() and stream.facts.padded == 100


def test_cropping_codec_with_overlap_larger_than_the_crop_leaves_no_gap(tmp_path):
    x = noise(1, 1.3, seed=1)
    item = item_for(write(tmp_path / "x.wav", x))
    _, estimate, _, stream = collect(codec_source(plugins.CroppingCodec(crop=100)), item)
    # every chunk lost its last 100 samples, but the next chunk's start covers them
    np.testing.assert_allclose(estimate[:, :-100], x[:, :-100], rtol=0, atol=1e-6)
    assert not estimate[:, -100:].any()  # only the item's own end is missing: silence
    assert (stream.facts.padded, stream.facts.gap) == (100, 0)


def test_cropping_codec_with_overlap_smaller_than_the_crop_leaves_counted_silent_gaps(tmp_path):
    x = noise(1, 1.3, seed=2)
    n, crop = x.shape[1], 1000
    item = item_for(write(tmp_path / "x.wav", x))
    _, estimate, _, stream = collect(codec_source(plugins.CroppingCodec(crop=crop)), item)
    # chunk k covers [k S, k S + C) and returns [k S, k S + C - crop); chunk k + 1 starts at (k + 1) S
    uncovered = np.zeros(n, bool)
    chunks = n_chunks(n)
    for k in range(chunks - 1):
        uncovered[k * STRIDE + CHUNK_N - crop:(k + 1) * STRIDE] = True
    gap = int(uncovered.sum())
    uncovered[n - crop:] = True  # the final chunk's crop: the item's end
    assert gap == (chunks - 1) * (crop - OVERLAP_N) == 1200
    assert not estimate[:, uncovered].any()
    np.testing.assert_allclose(estimate[:, ~uncovered], x[:, ~uncovered], rtol=0, atol=1e-6)
    assert stream.facts.gap == gap
    assert stream.facts.padded == gap + crop  # gaps are missing audio, like the missing end
    assert any("no codec chunk" in note for note in stream.facts.notes(SR))


def test_gaps_are_counted_at_the_reference_rate(tmp_path):
    rate = 44100
    x = noise(1, 1.3, rate=rate, seed=15)  # 20800 samples at the codec's 16 kHz, as above
    item = item_for(write(tmp_path / "hi.wav", x, rate))
    _, _, _, stream = collect(codec_source(plugins.CroppingCodec(crop=1000)), item)
    gap = round(6 * (1000 - OVERLAP_N) * rate / SR)  # 1200 codec samples
    assert stream.facts.gap == gap
    assert stream.facts.padded == gap + x.shape[1] - round((20800 - 1000) * rate / SR)


def test_chunked_codec_returning_under_half_of_every_chunk_is_an_error(tmp_path):
    """Zero-filled gaps are not delivered audio: returning 30 % of each chunk is under half of the
    item, whether the item is coded whole or in chunks."""
    x = noise(1, 1.3, seed=3)
    item = item_for(write(tmp_path / "x.wav", x))
    for chunk in (CHUNK, 60.0):
        source = CodecSource(plugins.TruncatingCodec(keep=0.3), chunk_seconds=chunk, overlap_seconds=OVERLAP)
        with pytest.raises(AlignmentError, match=r"x\.wav: the estimate has \d+ samples.*< 50%"):
            collect(source, item)


def test_declared_delay_is_removed_per_chunk(tmp_path):
    x = noise(1, 1.3, seed=4)
    item = item_for(write(tmp_path / "x.wav", x))
    _, estimate, _, stream = collect(codec_source(plugins.DelayCodec(delay=160, declare=True)), item)
    np.testing.assert_allclose(estimate[:, :-160], x[:, :-160], rtol=0, atol=1e-6)
    assert not estimate[:, -160:].any()
    f = stream.facts
    assert (f.padded, f.gap, f.delay_removed) == (160, 0, 160)
    assert "declared delay removed (160 codec samples per chunk)" in f.notes(SR)
    # only the missing tail costs: 10 log10((1 - q) / q) for white noise, q = 160 / 20800
    assert si_sdr(x[0], estimate[0]) == pytest.approx(10 * np.log10((20800 - 160) / 160), abs=0.5)


def test_undeclared_delay_is_scored_as_it_aligns(tmp_path):
    x = noise(1, 1.3, seed=4)
    item = item_for(write(tmp_path / "x.wav", x))
    _, estimate, _, stream = collect(codec_source(plugins.DelayCodec(delay=160, declare=False)), item)
    assert stream.facts.delay_removed == 0 and stream.facts.padded == 0
    # white noise 10 ms late is uncorrelated with itself: nothing of the target is left
    assert si_sdr(x[0], estimate[0]) < -10.0


def test_resampling_round_trip_equals_whole_file_soxr(tmp_path):
    rate = 44100
    x = noise(2, 1.1, rate=rate, seed=5)  # 48510 samples -> 17600 at 16 kHz: 6 chunks
    item = item_for(write(tmp_path / "hi.wav", x, rate))
    reference, estimate, pieces, stream = collect(codec_source(plugins.CountingCodec(sample_rate=SR)), item)
    expected = resample(resample(x, rate, SR), SR, rate)
    assert expected.shape == x.shape == estimate.shape
    assert pieces[0].segment.sample_rate == rate  # scored at the reference's native rate
    np.testing.assert_allclose(estimate, expected, rtol=0, atol=1e-5)
    assert stream.coding.chunks == n_chunks(17600) == 6
    assert (stream.facts.padded, stream.facts.cut, stream.facts.gap) == (0, 0, 0)


def test_second_stream_of_an_item_is_served_from_the_chunk_cache(tmp_path):
    x = noise(1, 1.3, seed=6)
    item = item_for(write(tmp_path / "x.wav", x))
    cache = ArtifactCache(tmp_path / "cache")
    _, first, _, s1 = collect(codec_source(plugins.CountingCodec(), cache=cache), item)
    calls = plugins.CountingCodec.encode_calls
    assert calls == s1.coding.chunks == 7 and s1.coding.cached_chunks == 0
    _, second, _, s2 = collect(codec_source(plugins.CountingCodec(), cache=cache), item)
    assert plugins.CountingCodec.encode_calls == calls and plugins.CountingCodec.decode_calls == calls
    assert s2.coding.cached_chunks == s2.coding.chunks == 7
    np.testing.assert_array_equal(second, first)
    # another codec configuration is another identity: computed again
    collect(codec_source(plugins.CountingCodec(gain=0.5), cache=cache), item)
    assert plugins.CountingCodec.encode_calls == 2 * calls


def test_segments_concatenate_to_the_file_and_to_the_whole_file_estimate(tmp_path):
    rate = 22050  # through a 16 kHz codec: the estimate is not the reference
    x = noise(2, 2.4, rate=rate, seed=7)
    item = item_for(write(tmp_path / "x.wav", x, rate))
    source = codec_source(plugins.CroppingCodec(crop=100))
    _, whole, whole_pieces, _ = collect(source, item, segment_seconds=None)
    reference, estimate, pieces, stream = collect(source, item, segment_seconds=1.0)
    assert len(whole_pieces) == 1
    # 1 s, then 1.4 s: the 0.4 s remainder is under min(1 s, 0.5 s) and joins the last segment
    assert [p.segment.samples for p in pieces] == [rate, x.shape[1] - rate]
    assert [p.segment.start for p in pieces] == [0, rate]
    assert [p.segment.last for p in pieces] == [False, True]
    np.testing.assert_array_equal(reference, x)
    np.testing.assert_array_equal(estimate, whole)
    assert np.abs(estimate - x).max() > 1e-3  # a real round trip, not a copy
    assert stream.facts.padded > 0 and stream.facts.gap == 0


# -- FolderSource ----------------------------------------------------------------------------------
@pytest.mark.parametrize("segment_seconds", [None, 0.3])
def test_decoded_file_at_another_rate_is_resampled_to_the_reference(tmp_path, segment_seconds):
    x = noise(1, 1.0, seed=8)
    item = item_for(write(tmp_path / "x.wav", x))
    decoded = resample(x, SR, 22050)
    path = write(tmp_path / "dec.wav", decoded, 22050)
    _, estimate, _, stream = collect(FolderSource({"x.wav": path}), item, segment_seconds)
    expected = resample(sf.read(path, dtype="float32", always_2d=True)[0].T, 22050, SR)
    assert expected.shape == x.shape
    np.testing.assert_allclose(estimate, expected, rtol=0, atol=1e-5)
    assert (stream.facts.padded, stream.facts.cut) == (0, 0)


def test_mono_decoded_file_is_compared_with_every_reference_channel(tmp_path):
    x = noise(2, 0.5, seed=9)
    item = item_for(write(tmp_path / "st.wav", x))
    mono = x.mean(axis=0, keepdims=True)
    _, estimate, _, stream = collect(FolderSource({"st.wav": write(tmp_path / "dec.wav", mono)}), item)
    assert estimate.shape == (2, x.shape[1])
    np.testing.assert_array_equal(estimate[0], mono[0])
    np.testing.assert_array_equal(estimate[1], mono[0])
    assert "mono estimate compared with every reference channel" in stream.notes


def test_decoded_file_with_more_channels_than_the_reference_is_an_error(tmp_path):
    item = item_for(write(tmp_path / "m.wav", noise(1, 0.5)))
    source = FolderSource({"m.wav": write(tmp_path / "dec.wav", noise(2, 0.5))})
    with pytest.raises(AlignmentError, match=r"m\.wav: reference has 1 channels.*has 2"):
        collect(source, item)


@pytest.mark.parametrize("segment_seconds", [None, 0.3])
def test_longer_decoded_file_is_cut_and_the_cut_counted(tmp_path, segment_seconds):
    x = noise(1, 1.0, seed=10)
    item = item_for(write(tmp_path / "x.wav", x))
    longer = np.concatenate([x, noise(1, 500 / SR, seed=11)], axis=1)
    _, estimate, _, stream = collect(FolderSource({"x.wav": write(tmp_path / "dec.wav", longer)}), item,
                                     segment_seconds)
    np.testing.assert_array_equal(estimate, x)
    f = stream.facts
    assert (f.estimate_samples, f.cut, f.padded) == (x.shape[1] + 500, 500, 0)


@pytest.mark.parametrize("segment_seconds", [None, 0.3])
def test_shorter_decoded_file_is_padded_with_silence(tmp_path, segment_seconds):
    x = noise(1, 1.0, seed=12)
    item = item_for(write(tmp_path / "x.wav", x))
    _, estimate, _, stream = collect(FolderSource({"x.wav": write(tmp_path / "dec.wav", x[:, :-3000])}), item,
                                     segment_seconds)
    np.testing.assert_array_equal(estimate[:, :-3000], x[:, :-3000])
    assert not estimate[:, -3000:].any() and stream.facts.padded == 3000


def test_decoded_file_under_half_the_reference_is_an_error(tmp_path):
    x = noise(1, 1.0, seed=13)
    item = item_for(write(tmp_path / "x.wav", x))
    source = FolderSource({"x.wav": write(tmp_path / "dec.wav", x[:, :7000])})  # 44 %
    with pytest.raises(AlignmentError, match=r"x\.wav: the estimate has 7000 samples for a reference of 16000"):
        collect(source, item)


def test_missing_decoded_file_is_an_error_naming_the_item(tmp_path):
    item = item_for(write(tmp_path / "x.wav", noise(1, 0.5)))
    with pytest.raises(AlignmentError, match=r"x\.wav: no decoded file"):
        collect(FolderSource({"x.wav": None}), item)
    assert FolderSource({"x.wav": None}).item_identity(item) == "decoded:missing"


# -- batches of short items ------------------------------------------------------------------------
class _CallCounter(plugins.NoisyCodec):
    calls = 0

    def encode(self, audio):
        type(self).calls += 1
        return super().encode(audio)


def test_prepared_batches_give_the_per_item_results_with_fewer_codec_calls(tmp_path):
    """Short items are coded 8 per call; each item's estimate equals its own single call (a
    stochastic-style codec whose noise depends on the batch row would fail here), long, odd and
    unreadable items fall back to the stream, which still names them."""
    paths = [write(tmp_path / f"n{k}.wav", noise(1, 0.2, seed=k)) for k in range(10)]
    paths.append(write(tmp_path / "stereo.wav", noise(2, 0.2, seed=20)))
    paths.append(write(tmp_path / "long.wav", noise(1, 0.6, seed=21)))  # several chunks
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    items = [item_for(p) for p in paths] + [item_for(tmp_path / "bad.wav")]
    single, batched = codec_source(_CallCounter(snr_db=30.0)), codec_source(_CallCounter(snr_db=30.0), batch_items=8)
    expected = {it.id: collect(single, it)[1] for it in items[:-1]}
    _CallCounter.calls = 0
    assert batched.prepare(items, None) == 10  # 8 + 2 mono items of 3200 samples; the stereo one is a batch of 1
    assert _CallCounter.calls == 2
    for it in items[:-1]:
        np.testing.assert_allclose(collect(batched, it)[1], expected[it.id], rtol=0, atol=1e-6)
    assert _CallCounter.calls == 2 + 1 + n_chunks(int(0.6 * SR))  # stereo alone, long chunked
    with pytest.raises(Exception, match="bad.wav"):
        collect(batched, items[-1])


def test_a_codec_whose_output_follows_the_batch_row_is_never_batched(tmp_path):
    items = [item_for(write(tmp_path / f"r{k}.wav", noise(1, 0.2, seed=k))) for k in range(3)]
    row_noise = codec_source(plugins.NoisyCodec(per_item=False), batch_items=8)
    assert row_noise.prepare(items, None) == 0
    alone = codec_source(plugins.NoisyCodec(per_item=False))
    for it in items:
        np.testing.assert_array_equal(collect(row_noise, it)[1], collect(alone, it)[1])


def test_a_batch_that_fails_falls_back_to_single_calls_and_names_the_item(tmp_path):
    paths = [write(tmp_path / f"q{k}.wav", noise(1, 0.2, seed=k) * (0.2 if k == 3 else 1.0)) for k in range(4)]
    source = codec_source(plugins.QuietNaNCodec(level=0.5), batch_items=8)
    items = [item_for(p) for p in paths]
    assert source.prepare(items, None) == 0  # the batch diverged: nothing prepared
    with pytest.raises(Exception, match="NaN"):
        collect(source, items[3])
    collect(source, items[0])


class _NameRecorder(plugins.CountingCodec):
    """Records the row names the engine gives at each decode."""

    names: list = []

    def decode(self, latents):
        type(self).names.append(self.row_names(latents.shape[0]))
        return super().decode(latents)


def test_every_codec_call_names_its_rows_by_their_input_audio(tmp_path):
    """Stochastic decoders seed each row's noise by these names (Codec.rows_named), so the names
    must follow the audio only: the same content gets the same name in a batch, alone, in
    another item, and different content different names."""
    from benchmark.data.audio import array_hash

    a, b = noise(1, 0.2, seed=1), noise(1, 0.2, seed=2)
    items = [item_for(write(tmp_path / name, x)) for name, x in (("a.wav", a), ("b.wav", b), ("a2.wav", a))]
    _NameRecorder.names = []
    source = codec_source(_NameRecorder(), batch_items=8)
    source.prepare(items[:2], None)  # a and b in one call
    for it in items:
        collect(source, it)  # a2 is a cache-less fresh call of a's content
    assert _NameRecorder.names[0] == [array_hash(a[0])[:16], array_hash(b[0])[:16]]
    assert _NameRecorder.names[-1] == [array_hash(a[0])[:16]]
    assert len(_NameRecorder.names) == 2  # a and b from the batch, a2 alone
    assert source.codec.row_names(1) is None  # the names last only for the call


def test_bf16_source_is_its_own_identity_and_runs_the_learned_codec_in_bfloat16(tmp_path):
    """precision=bf16 autocasts the learned codec's forward passes: its latents move by far more
    than float32 rounding yet stay close, the source is cached apart from fp32, and a codec
    without torch weights is unchanged."""
    from benchmark.codecs.precision import PrecisionError
    from benchmark.codecs.registry import create_codec

    item = item_for(write(tmp_path / "x.wav", noise(1, 0.5, seed=3)))
    m2l = create_codec("music2latent", preset="smoke", seed=0)
    memos: dict[str, dict] = {"fp32": {}, "bf16": {}}
    sources = {p: codec_source(m2l, precision=p, latent_memo=memos[p]) for p in memos}
    assert sources["fp32"].item_identity(item) != sources["bf16"].item_identity(item)
    assert sources["bf16"].settings()["precision"] == "bf16"
    for source in sources.values():
        collect(source, item)
    assert memos["fp32"].keys() == memos["bf16"].keys() and len(memos["fp32"]) == n_chunks(8000)
    for key, z32 in memos["fp32"].items():
        z16 = memos["bf16"][key]
        assert z16.dtype == z32.dtype  # float32 latents either way
        gap = (z16 - z32).abs().max().item()
        assert 1e-4 < gap < 0.1 * z32.abs().max().item()
    plain = plugins.CountingCodec()
    np.testing.assert_array_equal(collect(codec_source(plain, precision="bf16"), item)[1],
                                  collect(codec_source(plain), item)[1])
    with pytest.raises(PrecisionError, match="fp16"):
        codec_source(plain, precision="fp16")
