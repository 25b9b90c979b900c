"""Storage: the home's settings, the run store and its artifacts, saved models, and the signed ledger the deciding commands read."""
