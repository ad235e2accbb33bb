"""Audit an experiment: where each table number came from, and that nothing changed since.

    bmip audit results/<experiment>          # exit 0 passed, 1 problems, 2 not an experiment folder
    bmip crate results/<experiment>          # share it: results/<experiment>/crate.zip
    bmip audit crate.zip                     # verify a crate received from someone else

Modules: `layout` (runs and rules from the results tree), `records` (provenance records),
`manifest` (every output's sha256), `runs` (provenance checks), `recompute` (tables rebuilt from
metrics), `check` (the audit), `provenance` and `cost` (report sections), `crate` (the experiment
as an RO-Crate), `crate_check` (the audit of a crate), `crate_profiles` (offline validation of a
crate against the RO-Crate profiles), `cli` (commands).
"""
