"""assay: train machine-learning models behind governance gates.

The core package holds the hook specifications, the plugin manager, the run spec, the
runner, the run store and the command line. Bundled plugins live in ``assay.plugins``,
the policy language in ``assay.policies`` and the audit ledger in ``assay.audit``.
"""

__version__ = "0.1.0"
