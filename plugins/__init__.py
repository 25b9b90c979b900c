"""Bundled plugins: data loaders, trainers, checks, fairness, drift monitoring."""
