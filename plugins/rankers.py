"""Where ranking models saved before the rankers joined the public kit find their classes.

A saved model names each class by module; ranking models saved by earlier versions name
``assay.plugins.rankers.PointwiseRanker`` and ``assay.plugins.rankers.PairwiseLogisticRanker``.
Those names stay loadable (and trusted, by the ranking trainers): they are the kit's classes
(:class:`assay.kit.PointwiseRanker`, :class:`assay.kit.PairwiseLogisticRanker`). Nothing
imports this module but the model loader; new models name ``assay.rankers``.
"""

from assay.kit import PairwiseLogisticRanker, PointwiseRanker

__all__ = ["PairwiseLogisticRanker", "PointwiseRanker"]
