"""Downstream probing of frozen embeddings: pooling, heads, training protocol, statistics.

Entry points for the pipeline:

- :class:`ProbeConfig` - protocol settings (heads, seeds, pooling, early stopping, bootstrap);
- :func:`run_probe` / :func:`run_probes` - one task, one head (or every configured head),
  several seeds -> :class:`ProbeOutcome` with tidy result rows and test predictions;
- :func:`paired_test` - compare two codecs' probes on the same test items.

Under ``torchrun`` the ranks encode the items into the cache and rank 0 probes
(:mod:`benchmark.engine.distributed`).
"""

from benchmark.probes.heads import HEADS, build_head
from benchmark.probes.pooling import POOLINGS, pool, pooled_matrix
from benchmark.probes.probe import (PROBE_VERSION, ProbeConfig, ProbeError, ProbeOutcome, ProbePredictions,
                                    paired_test, run_probe, run_probes)
from benchmark.probes.train import Standardizer, train_probe

__all__ = [
    "HEADS", "POOLINGS", "PROBE_VERSION", "ProbeConfig", "ProbeError", "ProbeOutcome", "Standardizer",
    "ProbePredictions", "build_head", "paired_test", "pool", "pooled_matrix", "run_probe", "run_probes",
    "train_probe",
]
