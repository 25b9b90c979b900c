"""Audit ledger: canonical records, hash chain, signatures, Merkle checkpoints, export."""
