"""The metric definitions moved to the public kit: import them from :mod:`assay.kit`.

This module only re-exports them for plugins that still import ``assay.plugins.metrics``;
it defines nothing of its own.
"""

from assay.kit import *  # noqa: F403
from assay.kit import __all__ as __all__
from assay.kit import _query_order as _query_order
