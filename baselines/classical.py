"""Classical perceptual codecs, no weights: Opus (``opus``) and MP3 (``mp3``) at a chosen bitrate.

Routes (one per codec; docs/codecs.md says why)
-----------------------------------------------
- **Opus**: ``opusenc`` from opus-tools (Debian/Ubuntu ``apt-get install -y opus-tools``;
  libopus) with ``--bitrate kbps --hard-cbr``: every 20 ms packet has exactly
  ``kbps * 2.5`` bytes. libsndfile (through ``soundfile``) also writes Opus, but only with a
  VBR quality (``compression_level``), not a bitrate. The Ogg Opus file is decoded in memory by
  libsndfile (libopus), which removes the encoder's pre-skip and the end padding (granule
  position): the decode has the input's length and no lag. The codec runs at 48 kHz, Opus's
  native rate (the pipeline resamples to it and back).
- **MP3**: libsndfile's LAME encoder through ``soundfile`` (no external program), constant
  bitrate: ``compression_level`` is mapped onto the exact MPEG Layer III bitrate (libsndfile
  interpolates the bitrate linearly in the level and LAME takes the nearest table entry; the
  level is chosen inside the target's interval). libsndfile writes the LAME/Info tag and
  decodes with mpg123 in gapless mode, which removes the encoder delay and padding: no lag,
  the input's length. LAME leaves the tag out when a frame is too small to hold it (the
  lowest bitrates of each rate: up to 32-56 kbps, by rate and channels); the decode then lags
  by LAME's and mpg123's delays, 1105 samples at every rate, which
  :meth:`MP3Codec.decode_stream` removes, cutting to the input's length (kept in the latents'
  header, as a container would). The codec runs at the audio's rate (the dataset's, adopted as
  for every parameter-free codec; MPEG-1 at 32/44.1/48 kHz, MPEG-2 and 2.5 below).

Conventions
-----------
- **Latents are the bitstream**: ``encode`` returns the encoded file's bytes, one byte (0-255)
  per value, ``[batch, 1, 5 + bytes]`` (values 0-4: the stream's channel count, its byte count
  and the input's samples per channel, each count as ``n // 65536, n % 65536``; zero-padded to
  the longest stream of the batch); ``decode`` decodes them.
  :meth:`BitstreamCodec.bitstream_bits` gives each row's bits, so the engine reports the
  bitrate actually obtained (file bytes, container and headers included, ``* 8 / seconds``)
  per item and per codec. Probing these latents is meaningless.
- **Stereo is coded as the codec does it** (``stereo="joint"``, the default;
  ``info.channels = 2``): the rows of one ``encode`` call are the channels of one signal (the
  engine hands such codecs one item per call), and 2 rows become one stereo stream at ``kbps``
  in total (Opus coupled stereo, LAME joint stereo with mid/side switching). The second row's
  header says 0 channels: its audio is in the first row's stream. ``stereo="separate"`` codes
  every row as its own mono stream at ``kbps`` (so a stereo item costs ``2 * kbps``), for any
  batch.
- ``delay_samples = 0``: the decoders remove the codec delay (checked to the sample by
  ``tests/baselines/test_classical_codecs.py``).
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess

import numpy as np
import soundfile as sf
import torch

from benchmark.codecs.protocol import Codec, CodecError, CodecInfo, check_audio_batch, check_latents

#: per row: channels in the stream (0: part of an earlier row's stream), bytes and samples per
#: channel each as (n // 65536, n % 65536) so that float32 holds them exactly
HEADER = 5
#: LAME's encoder delay (576 samples) plus mpg123's decoder delay (529): what an MP3 decode lags
#: its input by when the file has no LAME/Info tag to say so (measured at every MPEG rate)
MP3_DELAY = 576 + 529
STEREO_MODES = ("joint", "separate")
OPUS_INSTALL = "sudo apt-get install -y opus-tools"
OPUS_MODES = {"cbr": "--hard-cbr", "cvbr": "--cvbr", "vbr": "--vbr"}
OPUS_KBPS = (6.0, 256.0)  # opusenc's range per stream (6-256 kbit/s per channel)

#: MPEG Layer III bitrates (kbps) by MPEG version and the sample rates (Hz) of each version; the
#: MPEG-2.5 range is what libsndfile's level mapping reaches (8-64 kbps).
MP3_VERSIONS = {
    "MPEG-1": ((32000, 44100, 48000), (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)),
    "MPEG-2": ((16000, 22050, 24000), (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)),
    "MPEG-2.5": ((8000, 11025, 12000), (8, 16, 24, 32, 40, 48, 56, 64)),
}


def _positive_kbps(codec: str, kbps) -> float:
    try:
        value = float(kbps)
    except (TypeError, ValueError):
        value = float("nan")
    if not math.isfinite(value) or value <= 0:
        raise CodecError(f"{codec}: kbps must be a positive number of kbit/s, got {kbps!r} "
                         f"(e.g. --codec-option kbps=24)")
    return value


def _stereo_mode(codec: str, stereo: str) -> str:
    if stereo not in STEREO_MODES:
        raise CodecError(f"{codec}: stereo must be one of {STEREO_MODES}, got {stereo!r}")
    return stereo


def ogg_packet_sizes(data: bytes) -> list[int]:
    """Byte sizes of the packets of an Ogg stream (one logical stream), in order; for Ogg Opus
    the first two are the OpusHead and OpusTags headers, the rest audio packets."""
    sizes: list[int] = []
    pos, current = 0, 0
    while pos < len(data):
        if data[pos:pos + 4] != b"OggS" or pos + 27 > len(data):
            raise ValueError(f"not an Ogg page at byte {pos}")
        segments = data[pos + 26]
        lacing = data[pos + 27:pos + 27 + segments]
        for value in lacing:
            current += value
            if value < 255:  # a lacing value below 255 ends the packet
                sizes.append(current)
                current = 0
        pos += 27 + segments + sum(lacing)
    return sizes


class BitstreamCodec(Codec):
    """A codec whose latents are its real bitstream (module docstring). Subclasses implement
    :meth:`encode_stream` (``[channels, samples]`` float32 -> bytes) and :meth:`decode_stream`
    (bytes -> ``[channels, samples]``)."""

    info: CodecInfo
    stereo: str = "joint"

    def encode_stream(self, audio: np.ndarray) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def decode_stream(self, data: bytes, channels: int, samples: int) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    # -- protocol -----------------------------------------------------------------------------
    def _groups(self, rows: int) -> list[tuple[int, int]]:
        """(first row, channels) of each stream a call with ``rows`` rows is coded as."""
        if self.stereo == "separate":
            return [(row, 1) for row in range(rows)]
        if rows > 2:
            raise CodecError(f"{self.info.name}: joint coding takes the 1 or 2 channels of one signal per call, got "
                             f"{rows} rows; code more channels with stereo=separate (each channel on its own)")
        return [(0, rows)]

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``[batch, samples]`` -> the encoded bytes ``[batch, 1, 5 + bytes]`` (module docstring)."""
        audio = torch.as_tensor(audio)
        check_audio_batch(audio, self.info.name, allow_empty=False)
        x = audio.detach().float().cpu().numpy()
        streams = [(start, count, self.encode_stream(x[start:start + count]))
                   for start, count in self._groups(x.shape[0])]
        width = HEADER + max(len(data) for _, _, data in streams)
        latents = np.zeros((x.shape[0], 1, width), np.float32)
        n = x.shape[1]
        for start, count, data in streams:
            latents[start, 0, :HEADER] = (count, len(data) // 65536, len(data) % 65536, n // 65536, n % 65536)
            latents[start, 0, HEADER:HEADER + len(data)] = np.frombuffer(data, np.uint8)
        return torch.from_numpy(latents)

    def streams(self, latents: torch.Tensor) -> list[tuple[int, int, bytes, int]]:
        """(first row, channels, bytes, samples per channel encoded) of every stream held by
        ``latents``."""
        check_latents(latents, self.info.name, dim=1)
        values = latents.detach().cpu().numpy()[:, 0, :]
        rows, width = values.shape
        out, row = [], 0
        while row < rows:
            channels = int(values[row, 0]) if width >= HEADER else 0
            size = int(values[row, 1]) * 65536 + int(values[row, 2]) if width >= HEADER else 0
            data = values[row, HEADER:HEADER + size]
            head = values[row, :HEADER]
            if (not 1 <= channels <= min(2, rows - row) or size > width - HEADER or (np.round(head) != head).any()
                    or (values[row + 1:row + channels, 0] != 0).any() or (np.round(data) != data).any()
                    or data.min(initial=0) < 0 or data.max(initial=0) > 255):
                raise CodecError(f"{self.info.name}: latents row {row} is not a {self.info.name} bitstream "
                                 "(bad header or byte values); encode the audio with this codec")
            samples = int(head[3]) * 65536 + int(head[4])
            out.append((row, channels, data.astype(np.uint8).tobytes(), samples))
            row += channels
        return out

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """The bitstreams ``[batch, 1, 5 + bytes]`` decoded: ``[batch, samples]``."""
        parts = [(row, self.decode_stream(data, channels, samples))
                 for row, channels, data, samples in self.streams(latents)]
        length = max(audio.shape[1] for _, audio in parts)
        out = np.zeros((latents.shape[0], length), np.float32)
        for row, audio in parts:
            out[row:row + audio.shape[0], :audio.shape[1]] = audio
        return torch.from_numpy(out)

    def bitstream_bits(self, latents: torch.Tensor) -> np.ndarray:
        """Bits of the encoded file per row ``[batch]`` (a joint stream's bits on its first row)."""
        bits = np.zeros(latents.shape[0], np.float64)
        for row, _, data, _ in self.streams(latents):
            bits[row] = 8.0 * len(data)
        return bits

    # -- helpers --------------------------------------------------------------------------------
    def _read(self, data: bytes, channels: int, what: str) -> np.ndarray:
        try:
            audio, _ = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
        except Exception as exc:  # libsndfile: corrupt or truncated stream
            raise CodecError(f"{self.info.name}: cannot decode the {what} stream ({exc})") from exc
        if audio.shape[1] != channels:
            raise CodecError(f"{self.info.name}: the {what} stream decoded to {audio.shape[1]} channels, "
                             f"expected {channels}")
        return np.ascontiguousarray(audio.T)


class OpusCodec(BitstreamCodec):
    """Opus at ``kbps`` kbit/s per stream, 48 kHz, encoded by ``opusenc``, decoded by libsndfile.

    Parameters
    ----------
    kbps: target bitrate of a stream (kbit/s, 6-256; a jointly coded stereo pair shares it).
    mode: ``"cbr"`` (``--hard-cbr``: exact, the default), ``"cvbr"`` (constrained VBR) or
        ``"vbr"`` (opusenc's default, unconstrained VBR; the obtained bitrate then depends on the
        content).
    stereo: ``"joint"`` (Opus coupled stereo; the default) or ``"separate"`` (module docstring).
    """

    name = "opus"
    version = "1"

    def __init__(self, kbps: float = 24.0, mode: str = "cbr", stereo: str = "joint") -> None:
        kbps = _positive_kbps(self.name, kbps)
        if not OPUS_KBPS[0] <= kbps <= OPUS_KBPS[1]:
            raise CodecError(f"opus: kbps={kbps:g} is outside opusenc's range {OPUS_KBPS[0]:g}-{OPUS_KBPS[1]:g} "
                             "kbit/s per stream")
        if mode not in OPUS_MODES:
            raise CodecError(f"opus: mode must be one of {tuple(OPUS_MODES)}, got {mode!r}")
        self.stereo = _stereo_mode(self.name, stereo)
        super().__init__(kbps=kbps, mode=mode, stereo=stereo)
        self.kbps, self.mode = kbps, mode
        self.opusenc = shutil.which("opusenc")
        if self.opusenc is None:
            raise CodecError("opus: the `opusenc` program (package opus-tools) is needed for constant-bitrate Opus "
                             f"and was not found on PATH; install it with `{OPUS_INSTALL}`")
        tool = subprocess.run([self.opusenc, "--version"], capture_output=True, text=True).stdout.strip()
        self.tool = tool.splitlines()[0] if tool else "opusenc (version unknown)"
        # the encoder's version is part of the identity: another libopus gives other bytes
        self.version = f"1+{self.tool}+libsndfile {sf.__libsndfile_version__}"
        self.info = CodecInfo(
            name=self.name, sample_rate=48000, latent_dim=1, latent_rate_hz=kbps * 1000 / 8,
            channels=2 if stereo == "joint" else 1, bitrate_kbps=kbps,
            code_license="BSD-3-Clause (libopus, opus-tools); LGPL-2.1 (libsndfile)",
            description=f"Opus {kbps:g} kbps {mode.upper()} at 48 kHz, stereo {stereo} ({self.tool}; decoded by "
                        "libsndfile); latents = the Ogg Opus file's bytes")

    def encode_stream(self, audio: np.ndarray) -> bytes:
        wav = io.BytesIO()
        sf.write(wav, audio.T, self.info.sample_rate, format="WAV", subtype="FLOAT")
        # --padding 0: no 512 bytes reserved for later tag edits (they would count as bitrate)
        cmd = [self.opusenc, "--quiet", "--bitrate", f"{self.kbps:g}", OPUS_MODES[self.mode], "--padding", "0",
               "-", "-"]
        done = subprocess.run(cmd, input=wav.getvalue(), capture_output=True)
        if done.returncode != 0 or not done.stdout.startswith(b"OggS"):
            message = done.stderr.decode(errors="replace").strip().splitlines()
            raise CodecError(f"opus: `{' '.join(cmd)}` failed (exit {done.returncode}): "
                             f"{message[-1] if message else 'no output'}")
        return done.stdout

    def decode_stream(self, data: bytes, channels: int, samples: int) -> np.ndarray:
        # libsndfile drops the pre-skip and ends at the last granule position: no trimming here
        return self._read(data, channels, "Ogg Opus")


class MP3Codec(BitstreamCodec):
    """MP3 (MPEG Layer III, LAME) at a constant ``kbps``, through libsndfile (``soundfile``).

    Parameters
    ----------
    kbps: constant bitrate of a stream (kbit/s), one of the MPEG Layer III bitrates of the
        rate's MPEG version (:data:`MP3_VERSIONS`; 32-320 at 32/44.1/48 kHz). A jointly coded
        stereo pair shares it.
    sample_rate: rate (Hz) the MP3 is coded at: 8000-48000 in the MPEG rate set.
    stereo: ``"joint"`` (LAME joint stereo; the default) or ``"separate"`` (module docstring).
    """

    name = "mp3"
    version = "1"

    def __init__(self, kbps: float = 128.0, sample_rate: int = 44100, stereo: str = "joint") -> None:
        kbps = _positive_kbps(self.name, kbps)
        version, (_, table) = next(((v, spec) for v, spec in MP3_VERSIONS.items() if int(sample_rate) in spec[0]),
                                   (None, ((), ())))
        if version is None:
            rates = sorted(r for rates, _ in MP3_VERSIONS.values() for r in rates)
            raise CodecError(f"mp3: no MPEG Layer III mode at {sample_rate} Hz; pass sample_rate= one of {rates}")
        if kbps not in table:
            raise CodecError(f"mp3: kbps={kbps:g} is not a {version} Layer III bitrate (at {sample_rate} Hz): "
                             f"choose one of {list(table)}"
                             + ("; pass sample_rate=44100 for 32-320 kbps" if version != "MPEG-1" else ""))
        self.stereo = _stereo_mode(self.name, stereo)
        super().__init__(kbps=kbps, sample_rate=int(sample_rate), stereo=stereo)
        self.kbps, self.mpeg = int(kbps), version
        # libsndfile: bitrate = int(top - level * (top - bottom)), then LAME's nearest table entry;
        # a quarter kbit/s above the target keeps truncation on it
        top, bottom = table[-1], table[0]
        self.level = min(1.0, max(0.0, (top - self.kbps - 0.25) / (top - bottom)))
        self.version = f"1+libsndfile {sf.__libsndfile_version__}"
        self.info = CodecInfo(
            name=self.name, sample_rate=int(sample_rate), latent_dim=1, latent_rate_hz=kbps * 1000 / 8,
            channels=2 if stereo == "joint" else 1, bitrate_kbps=kbps,
            code_license="LGPL-2.1 (libsndfile, LAME, mpg123)",
            description=f"MP3 {version} Layer III {self.kbps} kbps CBR at {sample_rate} Hz, stereo {stereo} (LAME "
                        f"and mpg123 in libsndfile {sf.__libsndfile_version__}); latents = the MP3 file's bytes")

    def encode_stream(self, audio: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        try:
            with sf.SoundFile(buffer, "w", samplerate=self.info.sample_rate, channels=audio.shape[0], format="MP3",
                              subtype="MPEG_LAYER_III", compression_level=self.level,
                              bitrate_mode="CONSTANT") as handle:
                handle.write(np.ascontiguousarray(audio.T))
        except Exception as exc:  # libsndfile built without MP3, bad rate...
            raise CodecError(f"mp3: libsndfile {sf.__libsndfile_version__} cannot write MP3 ({exc}); "
                             "soundfile >= 0.13 wheels bundle a libsndfile with LAME") from exc
        return buffer.getvalue()

    def decode_stream(self, data: bytes, channels: int, samples: int) -> np.ndarray:
        audio = self._read(data, channels, "MP3")
        if not has_info_tag(data):  # mpg123 cannot know the delay and padding (module docstring)
            audio = audio[:, MP3_DELAY:MP3_DELAY + samples]
        return audio


def has_info_tag(data: bytes) -> bool:
    """Whether an MP3 file starts with a LAME/Xing "Info"/"Xing" frame (an ID3v2 tag skipped),
    which carries the encoder delay and padding a gapless decoder removes."""
    pos = _id3v2_size(data)
    first = data[pos:pos + 200]  # the tag sits after the 4-byte header and at most 32 bytes of side info
    return first[:1] == b"\xff" and (b"Info" in first or b"Xing" in first)


def _id3v2_size(data: bytes) -> int:
    if data[:3] != b"ID3" or len(data) < 10:
        return 0
    return 10 + ((data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | (data[9] & 0x7F))


def mp3_frame_bitrates(data: bytes) -> list[int]:
    """Bitrate (kbps) of every MPEG audio frame of an MP3 file, read from the frame headers
    (an ID3v2 tag at the start is skipped; the LAME/Info frame, a frame like the others, is
    included)."""
    pos = _id3v2_size(data)
    rates = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}
    out = []
    while pos + 4 <= len(data):
        b1, b2 = data[pos + 1], data[pos + 2]
        if data[pos] != 0xFF or (b1 & 0xE0) != 0xE0:
            break  # end of the frames (e.g. an ID3v1 trailer)
        version, index = (b1 >> 3) & 3, b2 >> 4
        table = MP3_VERSIONS["MPEG-1"][1] if version == 3 else MP3_VERSIONS["MPEG-2"][1]
        kbps = table[index - 1]
        rate = rates[version][(b2 >> 2) & 3]
        padding = (b2 >> 1) & 1
        size = (144 if version == 3 else 72) * kbps * 1000 // rate + padding
        out.append(kbps)
        pos += size
    return out

