"""Tests of the audit ledger (assay.audit)."""
