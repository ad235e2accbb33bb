"""Audit an experiment: where each table number came from, and that nothing changed since.

    bmip audit results/<experiment>          # exit 0 passed, 1 problems, 2 not an experiment folder

Modules: `layout` (runs and rules from the results tree), `records` (provenance records),
`manifest` (every output's sha256), `runs` (provenance checks), `recompute` (tables rebuilt from
metrics), `check` (the audit), `provenance` and `cost` (report sections), `cli` (commands).
"""
