"""The one root of the suite's errors.

Every error the benchmark raises on purpose (a missing dataset, a bad config value, a codec that
cannot be built, an item a metric cannot score...) derives from :class:`BenchmarkError`, so a
front end can tell an expected failure, which it reports in one line, from a bug, which keeps its
traceback. Each subclass also keeps the built-in base it had before (``ValueError`` for bad
values, ``RuntimeError`` for failed work), so existing ``except ValueError`` clauses still work.
"""

from __future__ import annotations


class BenchmarkError(Exception):
    """Root of every error the suite raises on purpose.

    The message names the file, item or setting at fault and says how to fix it, e.g.
    ``"nsynth: the dataset at /data/nsynth is missing ...; download it from <url>"``. The CLI
    prints it as ``error: <message>`` and exits with status 2.
    """
