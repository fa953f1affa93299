"""Benchmark suite for audio autoencoders built around Music2Latent.

Packages: ``benchmark.codecs`` (codec protocol and registry), ``benchmark.data`` (audio I/O,
datasets, the built-in synthetic dataset), ``benchmark.metrics`` (reconstruction metrics),
``benchmark.probes`` (probe heads and statistics), ``benchmark.pipeline`` (stages and cache),
``benchmark.results`` (tidy results store), ``benchmark.report`` (tables and figures).
"""

__version__ = "0.1.0"
