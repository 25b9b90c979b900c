"""The check harness is the public kit's now (:mod:`assay.testing`); this name stays for tests that import it."""

from assay.testing import Prepared, by_name, fit, prepare, run_hook, scores

__all__ = ["Prepared", "by_name", "fit", "prepare", "run_hook", "scores"]
