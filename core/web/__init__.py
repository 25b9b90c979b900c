"""``assay serve``: a read-only web view of the ledger for a team.

Every page shows what the signed ledger records say, once the ledger has verified in full:

* ``source`` — read-only database access (SQLite ``mode=ro``, PostgreSQL read-only sessions);
* ``tree`` — the verified Merkle tree kept in memory, for per-record checks and inclusion proofs;
* ``index`` — what the pages list (runs, registry, verdicts, waivers, monitoring), built from
  verified records only;
* ``view`` — the background verifier and the banner it feeds, cached by tree size;
* ``pages`` — the data of each page, the same dicts the JSON API returns;
* ``app`` — the ASGI application (litestar, Jinja2 templates, bearer token, CSP); ``cli`` — the command.
"""
