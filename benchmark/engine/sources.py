"""Sources: where (reference, estimate) pieces come from. Every front end reads them from here.

A source turns an item into an :class:`ItemStream`: consecutive :class:`Piece` s, one per
segment of the reference (:mod:`benchmark.engine.segments`), each holding the reference
segment at its native rate and the estimate for exactly that span, aligned by the one policy
of :mod:`benchmark.metrics.align` (missing samples are silence, extra ones are cut, a declared
delay is removed). Two sources:

- :class:`CodecSource`: a codec round trip. The item is streamed: resampled (soxr, streaming,
  bit-identical to resampling the whole file) to the codec's rate, coded in chunks of
  ``chunk_seconds`` that overlap by ``overlap_seconds`` and are cross-faded (linear,
  weight-normalised: where one chunk has no sample the other takes full weight), never
  zero-filled, and resampled back. An item shorter than one chunk is coded in one call,
  exactly as ``decode(encode(item))``. Every chunk's output is cached under the codec identity
  and the chunk's content, with the time its encode and decode took.
- :class:`FolderSource`: decoded files matched to the references, resampled to their rate.

Channels are coded as a batch (each channel on its own) and scored per channel; a codec that
codes channels jointly (``info.channels > 1``: Opus, MP3) gets them in one call, one item per
call. Codecs with a real bitstream report its bits (``Codec.bitstream_bits``): they are summed
per item (:attr:`CodingStats.bits`, cached with the chunks) and give the bitrate obtained.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmark.cache import ArtifactCache, cache_key
from benchmark.codecs.precision import check_precision, inference_precision
from benchmark.data.audio import ResampleFifo, array_hash, file_hash
from benchmark.data.dataset import Item
from benchmark.engine.prefetch import prefetched
from benchmark.engine.segments import Segment, read_segments, span_text
from benchmark.metrics.align import AlignFacts, AlignmentError, StreamAligner

SOURCE_VERSION = "1"
DEFAULT_CHUNK_SECONDS = 60.0
DEFAULT_OVERLAP_SECONDS = 1.0


@dataclass
class Piece:
    """One segment of an item: ``segment.audio`` (reference ``[channels, n]`` at
    ``segment.sample_rate``) and ``estimate`` (``[channels, n]``, aligned)."""

    segment: Segment
    estimate: np.ndarray


@dataclass
class CodingStats:
    """Work a codec did on one item (seconds as measured when the chunk was computed)."""

    encode_seconds: float = 0.0
    decode_seconds: float = 0.0
    codec_seconds: float = 0.0   # audio seconds coded (at the codec's rate, overlap included)
    chunks: int = 0
    cached_chunks: int = 0
    bits: float = 0.0  # bitstream bits, for codecs that report them (Codec.bitstream_bits); else 0

    @property
    def kbps(self) -> float | None:
        """Bitrate obtained (kbit/s of coded audio), None when the codec reports no bitstream."""
        return self.bits / self.codec_seconds / 1000 if self.bits > 0 and self.codec_seconds > 0 else None


@dataclass
class ItemStream:
    """The pieces of one item; ``facts``, ``coding`` and ``notes`` are complete once iterated."""

    item: Item
    produce: Callable[["ItemStream"], Iterator[Piece]]
    facts: AlignFacts | None = None
    coding: CodingStats = field(default_factory=CodingStats)
    notes: list[str] = field(default_factory=list)

    def __iter__(self) -> Iterator[Piece]:
        return self.produce(self)


class Source:
    """Protocol of a source: a label, an identity per item (keys cached scores), a stream."""

    label: str

    def item_identity(self, item: Item) -> str:  # pragma: no cover - protocol
        raise NotImplementedError

    def stream(self, item: Item, segment_seconds: float | None, max_seconds: float | None = None) -> ItemStream:
        raise NotImplementedError  # pragma: no cover - protocol

    def settings(self) -> dict[str, Any]:
        return {}


def _ramp(n: int) -> np.ndarray:
    return ((np.arange(n, dtype=np.float64) + 0.5) / n).astype(np.float32)


class ChunkedCoder:
    """Codes a stream at the codec's rate in overlapping, cross-faded chunks.

    :meth:`push` takes input ``[channels, n]`` and returns the decoded samples that are final
    (no later chunk contributes to them); ``last=True`` flushes everything.
    """

    def __init__(self, code: Callable[[np.ndarray], np.ndarray], channels: int, chunk: int, overlap: int,
                 delay: int, facts: AlignFacts) -> None:
        if overlap * 4 > chunk:
            raise ValueError(f"chunk overlap ({overlap} samples) must be at most a quarter of the chunk ({chunk})")
        self.code, self.chunk, self.overlap, self.delay = code, chunk, overlap, delay
        self.facts = facts
        self.buf = np.zeros((channels, 0), np.float32)
        self.tail_sum = np.zeros((channels, 0), np.float32)
        self.tail_w = np.zeros(0, np.float32)
        self.closed = False
        self.offset = 0  # codec-rate sample index of buf[0]
        self.gap = 0  # codec-rate samples no chunk covered (zero-filled)

    def push(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        self.buf = np.concatenate([self.buf, x], axis=1) if self.buf.shape[1] else np.asarray(x, np.float32)
        self.closed = self.closed or last
        out: list[np.ndarray] = []
        while self.buf.shape[1] > self.chunk or (self.closed and self.buf.shape[1]):
            final = self.closed and self.buf.shape[1] <= self.chunk
            out.append(self._step(final))
        return np.concatenate(out, axis=1) if out else np.zeros((self.buf.shape[0], 0), np.float32)

    def _step(self, final: bool) -> np.ndarray:
        n = min(self.chunk, self.buf.shape[1])
        y = self.code(self.buf[:, :n], self.offset)
        if self.delay:
            y = y[:, self.delay:]
            self.facts.delay_removed = self.delay  # per chunk, as AlignFacts states it
        span = max(n, y.shape[1]) if final else n
        length = min(y.shape[1], span)
        present = np.zeros(span, np.float32)
        present[:length] = 1.0
        values = np.zeros((y.shape[0], span), np.float32)
        values[:, :length] = y[:, :length]
        weight = np.ones(span, np.float32)
        prev = self.tail_w.size
        if prev:
            weight[:prev] = _ramp(prev)
        ov = 0 if final else self.overlap
        if ov:
            weight[n - ov:n] *= 1.0 - _ramp(ov)
        weight *= present
        num = values * weight
        den = weight.copy()
        if prev:
            num[:, :prev] += self.tail_sum
            den[:prev] += self.tail_w
        if final:
            covered = np.flatnonzero(den > 0)
            end = int(covered[-1]) + 1 if covered.size else 0
            keep = end
        else:
            keep = n - ov
            self.tail_sum, self.tail_w = num[:, keep:n].copy(), den[keep:n].copy()
        gap = int(np.count_nonzero(den[:keep] <= 0))
        if gap:  # a chunk came back far shorter than the overlap can cover: silence, counted
            self.gap += gap
        out = np.where(den[:keep] > 0, num[:, :keep] / np.maximum(den[:keep], 1e-12), 0.0).astype(np.float32)
        advance = n if final else n - ov
        self.buf = self.buf[:, advance:]
        self.offset += advance
        return out


class CodecSource(Source):
    """A codec round trip (module docstring).

    Parameters
    ----------
    codec: a built :class:`benchmark.codecs.Codec` (already on ``device``).
    label: display name.
    chunk_seconds, overlap_seconds: codec calls of at most ``chunk_seconds`` at the codec's rate,
        overlapping by ``overlap_seconds`` (cross-faded).
    cache: artefact cache for decoded chunks (None: no caching).
    latent_memo: optional dict shared between codecs with the same weights (the steps study):
        latents of a chunk are computed once per ``(weights_id, chunk content)``.
    batch_items: items of equal length coded per codec call by :meth:`prepare`.
    precision: ``fp32`` or ``bf16`` (:mod:`benchmark.codecs.precision`), part of the identity.
    """

    def __init__(self, codec, label: str | None = None, chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
                 overlap_seconds: float = DEFAULT_OVERLAP_SECONDS, device: str = "cpu",
                 cache: ArtifactCache | None = None, latent_memo: dict | None = None, batch_items: int = 8,
                 precision: str = "fp32") -> None:
        self.codec = codec
        self.label = label or codec.info.name
        self.rate = int(codec.info.sample_rate)
        self.chunk = max(1, int(round(chunk_seconds * self.rate)))
        self.overlap = min(int(round(overlap_seconds * self.rate)), self.chunk // 4)
        self.chunk_seconds, self.overlap_seconds = chunk_seconds, overlap_seconds
        self.device = device
        self.cache = cache
        self.latent_memo = latent_memo
        self.batch_items = max(1, int(batch_items))
        self._prepared: dict[str, tuple[np.ndarray, float, float, float]] = {}  # hash -> (audio, enc s, dec s, bits)
        self.precision = check_precision(precision)
        self._identity = cache_key("codec-source", SOURCE_VERSION, codec.identity, self.chunk, self.overlap,
                                   int(codec.info.delay_samples),
                                   *([] if precision == "fp32" else [precision]))[:16]

    def item_identity(self, item: Item) -> str:
        return self._identity

    def settings(self) -> dict[str, Any]:
        return {"chunk_seconds": self.chunk_seconds, "overlap_seconds": self.overlap_seconds,
                "delay_samples": int(self.codec.info.delay_samples), "precision": self.precision}

    # -- batches of short items --------------------------------------------------------------------
    def prepare(self, items: list[Item], segment_seconds: float | None, max_seconds: float | None = None) -> int:
        """Code, ``batch_items`` at a time, the items that are one codec call each (one segment, one
        chunk) and not cached yet; their streams then find the decoded audio instead of calling the
        codec item by item (a batch of 8 short items costs about what 2 single calls do on a CPU).
        Returns the number of items prepared.

        Only speed changes: a prepared block is looked up by its content in :meth:`_code`, so an item
        this skips (unreadable, long, or in a batch that raised) is coded alone by its stream, which
        names it in any error. Codecs whose output may depend on the batch (stochastic ones unless
        they declare ``CodecInfo.batch_invariant``; Music2Latent addresses its noise by each row's
        name, :meth:`~benchmark.codecs.protocol.Codec.rows_named`) are never batched. Batched float32 kernels may
        differ from single calls in the last bits; the chunk cache keeps whichever came first.
        """
        if not self.codec.info.codes_items_independently:
            return 0  # its output may depend on the batch: every item is coded alone
        def one_call_block(item: Item) -> np.ndarray | None:
            """The item at the codec's rate if it is one codec call, else None."""
            try:
                segments = read_segments(item.path, segment_seconds, max_seconds, [])
                first = next(segments)
                segments.close()
                if not first.last:
                    return None
                fifo = ResampleFifo(first.audio.shape[0], first.sample_rate, self.rate)
                fifo.push(first.audio, last=True)
                block = fifo.pop(fifo.size)
            except Exception:  # the stream reports it, naming the item
                return None
            return block if 0 < block.shape[1] <= self.chunk else None

        groups: dict[tuple[int, int], list[tuple[str, np.ndarray]]] = {}
        prepared = 0
        # items are read and resampled in a background thread while full batches are coded
        for block in prefetched((one_call_block(item) for item in items), depth=self.batch_items):
            if block is None:
                continue
            digest = array_hash(block)
            if digest in self._prepared or (self.cache is not None
                                            and self.cache.has_arrays("chunks", self._chunk_key(digest))):
                continue
            group = groups.setdefault(block.shape, [])
            group.append((digest, block))
            if len(group) == self.batch_items:
                prepared += self._code_batch(groups.pop(block.shape))
        for group in groups.values():
            prepared += self._code_batch(group)
        return prepared

    def _code_batch(self, part: list[tuple[str, np.ndarray]]) -> int:
        """Code ``part`` (equal shapes) in one call and keep each item's share for its stream;
        returns the items prepared (0 for a single item or a batch that raised)."""
        if len(part) < 2:
            return 0
        x = np.concatenate([b for _, b in part])
        try:
            y, enc_s, dec_s, bits = self._round_trip(x, f"a batch of {len(part)} items")
        except Exception:
            return 0
        row = 0
        for digest, b in part:
            share = b.shape[0] / x.shape[0]
            self._prepared[digest] = (y[row:row + b.shape[0]], enc_s * share, dec_s * share,
                                      float(bits[row:row + b.shape[0]].sum()))
            row += b.shape[0]
        return len(part)

    def _chunk_key(self, digest: str) -> str:
        return cache_key("chunk", SOURCE_VERSION, self.codec.identity, digest,
                         *([] if self.precision == "fp32" else [self.precision]))

    # -- one codec call ---------------------------------------------------------------------------
    def _code(self, block: np.ndarray, stats: CodingStats, name: str, offset: int) -> np.ndarray:
        digest = array_hash(block)
        key = self._chunk_key(digest) if self.cache else None
        stats.chunks += 1
        stats.codec_seconds += block.shape[1] / self.rate
        if key is not None:
            hit = self.cache.load_arrays("chunks", key)
            if hit is not None:
                stats.cached_chunks += 1
                stats.encode_seconds += float(hit["encode_seconds"])
                stats.decode_seconds += float(hit["decode_seconds"])
                stats.bits += float(hit["bits"]) if "bits" in hit else 0.0
                return hit["audio"]
        where = name if offset == 0 and block.shape[1] < self.chunk else \
            f"{name} [{span_text(offset / self.rate, (offset + block.shape[1]) / self.rate)} at {self.rate} Hz]"
        prepared = self._prepared.pop(digest, None)
        if prepared is not None:
            audio, enc_s, dec_s, bits = prepared
        else:
            audio, enc_s, dec_s, row_bits = self._round_trip(block, where)
            bits = float(row_bits.sum())
        stats.encode_seconds += enc_s
        stats.decode_seconds += dec_s
        stats.bits += bits
        if key is not None:
            self.cache.save_arrays("chunks", key, audio=audio, encode_seconds=np.float64(enc_s),
                                   decode_seconds=np.float64(dec_s), bits=np.float64(bits))
        return audio

    def _round_trip(self, block: np.ndarray, where: str) -> tuple[np.ndarray, float, float, np.ndarray]:
        """decode(encode(block)), the encode and decode seconds, and the bitstream bits per row
        (zeros for codecs without one)."""
        import torch

        from benchmark.codecs.protocol import CodecError, check_latents

        x = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(self.device)
        memo_key = (self.codec.info.weights_id, array_hash(block)) if self.latent_memo is not None else None
        # rows named by their input audio: a stochastic decoder's noise follows the item, not the
        # batch nor the last bits of its latents (thread counts, ranks of a torchrun launch)
        with torch.inference_mode(), self.codec.rows_named([array_hash(row)[:16] for row in block]), \
                inference_precision(self.precision, self.device):
            t0 = time.perf_counter()
            if memo_key is not None and memo_key in self.latent_memo:
                latents = self.latent_memo[memo_key]
            else:
                latents = self.codec.encode(x)
                check_latents(latents, f"{self.label} ({where})")
                if memo_key is not None:
                    self.latent_memo[memo_key] = latents
            t1 = time.perf_counter()
            decoded = self.codec.decode(latents)
            t2 = time.perf_counter()
            bits = self.codec.bitstream_bits(latents)
        if decoded.ndim != 2 or decoded.shape[0] != x.shape[0]:
            raise CodecError(f"{where}: decoder returned shape {tuple(decoded.shape)} for input "
                             f"{tuple(x.shape)}; expected [batch, samples]")
        y = decoded.detach().float().cpu().numpy()
        bad = int(np.count_nonzero(~np.isfinite(y)))
        if bad:
            raise CodecError(f"{where}: decoded audio has {bad} NaN/inf samples (the codec diverged); "
                             "the item is an error row, not a score")
        bits = np.zeros(x.shape[0]) if bits is None else np.asarray(bits, dtype=np.float64).reshape(x.shape[0])
        return np.ascontiguousarray(y, dtype=np.float32), t1 - t0, t2 - t1, bits

    # -- the stream -------------------------------------------------------------------------------
    def stream(self, item: Item, segment_seconds: float | None, max_seconds: float | None = None) -> ItemStream:
        return ItemStream(item, lambda s: self._pieces(s, segment_seconds, max_seconds))

    def _pieces(self, stream: ItemStream, segment_seconds: float | None,
                max_seconds: float | None) -> Iterator[Piece]:
        name = stream.item.id
        aligner = down = back = coder = None
        pending: collections.deque[Segment] = collections.deque()
        for segment in read_segments(stream.item.path, segment_seconds, max_seconds, stream.notes):
            if aligner is None:
                channels = segment.audio.shape[0]
                aligner = StreamAligner(channels)
                down = ResampleFifo(channels, segment.sample_rate, self.rate)
                back = ResampleFifo(channels, self.rate, segment.sample_rate)
                coder = ChunkedCoder(lambda b, off: self._code(b, stream.coding, name, off), channels,
                                     self.chunk, self.overlap, int(self.codec.info.delay_samples), aligner.facts)
            pending.append(segment)
            down.push(segment.audio, last=segment.last)
            decoded = coder.push(down.pop(down.size), last=down.closed)
            back.push(decoded, last=coder.closed and not coder.buf.shape[1])
            aligner.push(back.pop(back.size), last=back.closed)
            while pending and aligner.ready(pending[0].samples):
                ref = pending.popleft()
                yield Piece(ref, aligner.take(ref.samples, last=ref.last))
        if coder.gap:  # zero-filled samples inside the signal are missing audio too (rules 3 and 4)
            gap = int(round(coder.gap * down.rate_in / self.rate))
            aligner.facts.gap += gap
            aligner.facts.padded += gap
        stream.facts = aligner.finish(name)


class FolderSource(Source):
    """Decoded files (``decoded[item.id]``, None if missing) scored against the items."""

    def __init__(self, decoded: dict[str, Path | None], label: str = "decoded") -> None:
        self.decoded = decoded
        self.label = label

    def item_identity(self, item: Item) -> str:
        path = self.decoded.get(item.id)
        try:
            return "decoded:" + (file_hash(path)[:16] if path is not None else "missing")
        except OSError:
            return "decoded:unreadable"

    def stream(self, item: Item, segment_seconds: float | None, max_seconds: float | None = None) -> ItemStream:
        return ItemStream(item, lambda s: self._pieces(s, segment_seconds, max_seconds))

    def _pieces(self, stream: ItemStream, segment_seconds: float | None,
                max_seconds: float | None) -> Iterator[Piece]:
        name, path = stream.item.id, self.decoded.get(stream.item.id)
        if path is None:
            raise AlignmentError(f"{name}: no decoded file with this name (any extension) in the decoded folder")
        aligner = fifo = decoded = None
        repeat = 1
        for segment in read_segments(stream.item.path, segment_seconds, max_seconds, stream.notes):
            channels = segment.audio.shape[0]
            if aligner is None:
                aligner = StreamAligner(channels)
                decoded = read_segments(path, segment_seconds, max_seconds, stream.notes)
                first = next(decoded)
                if first.audio.shape[0] not in (1, channels):
                    raise AlignmentError(f"{name}: reference has {channels} channels, decoded file "
                                         f"{path} has {first.audio.shape[0]}")
                if first.audio.shape[0] != channels:
                    repeat = channels
                    stream.notes.append("mono estimate compared with every reference channel")
                fifo = ResampleFifo(first.audio.shape[0], first.sample_rate, segment.sample_rate)
                fifo.push(first.audio, last=first.last)
            while not fifo.closed and fifo.size < segment.samples:
                block = next(decoded)
                fifo.push(block.audio, last=block.last)
            estimate = fifo.pop(fifo.size if (segment.last or fifo.size < segment.samples) else segment.samples)
            aligner.push(np.repeat(estimate, repeat, axis=0) if repeat > 1 else estimate,
                         last=fifo.closed and not fifo.size)
            if segment.last:
                for block in decoded:  # count what the decoded file has beyond the reference
                    fifo.push(block.audio, last=block.last)
                rest = fifo.pop(fifo.size)
                aligner.push(np.repeat(rest, repeat, axis=0) if repeat > 1 else rest, last=True)
            yield Piece(segment, aligner.take(segment.samples, last=segment.last))
        stream.facts = aligner.finish(name)
