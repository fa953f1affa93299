"""Benchmark suite for audio autoencoders built around Music2Latent.

Packages: ``benchmark.engine`` (the one path from audio to every number: sources, segments,
scorer, summaries; ``run``/``eval``/steps-study orchestration), ``benchmark.codecs`` (codec
protocol and registry), ``benchmark.data`` (audio I/O, datasets, the built-in synthetic
dataset), ``benchmark.metrics`` (reconstruction metrics and the alignment policy),
``benchmark.probes`` (probe heads and statistics), ``benchmark.training`` (generic trainer),
``benchmark.music2latent`` (our model and its recipe); modules ``results`` (one schema),
``report`` (tables and figures), ``cache``, ``provenance``, ``errors`` (one root),
``checkpoints`` (trained models).
"""

__version__ = "0.1.0"
