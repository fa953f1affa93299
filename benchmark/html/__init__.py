"""The HTML report: a static page people can listen to.

- :mod:`benchmark.html.examples`: the *examples* stage of a run. It picks a few reconstruction
  items (those where the metrics disagree most about the codecs, plus a seeded random sample),
  re-creates the reference and every decoding codec's output through the run's own sources (served
  from the chunk cache), and writes them once as FLAC with spectrograms, loudness and the item's
  metric values (``report/examples/examples.json``).
- :mod:`benchmark.html.page`: ``report/index.html``, a self-contained page that works offline from
  the file system (no server, no CDN; the small hand-written script and style sheet of
  ``assets/`` are inlined): the report's tables (sortable), figures, warnings, provenance, the
  examples as ``<audio>`` players and, once ratings are imported, the listening test
  (:mod:`benchmark.listening`).
"""

from benchmark.html.examples import ExampleOptions, write_examples
from benchmark.html.page import build_html

__all__ = ["ExampleOptions", "build_html", "write_examples"]
