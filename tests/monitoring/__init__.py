"""Tests of drift and performance monitoring (``assay monitor``) on real data with a real shift."""
