# Provenance of the results, flagged for the report: the runs behind each table, what the whole
# experiment cost, a manifest of every output file (sha256, size, rule), an audit that
# recomputes every table number from its runs and checks it against the manifest and provenance,
# and the whole experiment as one RO-Crate to share (checked with `bmip audit crate.zip`).
# Like the tables rule they read the whole results tree, so they need the shared file system
# cluster runs already use; each takes seconds.


# The provenance record beside every evaluation and trained model the tables rest on.
RUN_PROVENANCE = [
    os.path.join(os.path.dirname(path), P.PROVENANCE)
    for path in metrics_files() + train_log_files()
]
# The last outputs of the workflow (rule all): provenance tables, cost, manifest, audit report.
AUDIT_FILES = [
    *expand(f"{EXP}/provenance/{{table}}.csv", table=TABLES),
    f"{EXP}/cost.csv",
    f"{EXP}/cost.md",
    f"{EXP}/manifest.json",
    f"{EXP}/audit.txt",
    f"{EXP}/crate.zip",
]


rule provenance:
    input:
        tables=expand(f"{EXP}/tables/{{table}}.csv", table=TABLES),
        runs=RUN_PROVENANCE,
    output:
        [
            report(
                f"{EXP}/provenance/{t}.csv",
                caption="../report/provenance.rst",
                category="Provenance",
                subcategory="Runs behind each table",
                labels={"table": t},
            )
            for t in TABLES
        ],
    log:
        f"{EXP}/logs/provenance.log",
    benchmark:
        job_benchmark("provenance", f"{EXP}/logs/provenance.log"),
    conda:
        ENV
    resources:
        **RES["light"],
    params:
        bmip=bmip_command,
        ledger=ledger_command("provenance"),
        code=code_of("provenance"),
        experiment=lambda wildcards, output: os.path.dirname(os.path.dirname(output[0])),
        out=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "{params.bmip} provenance {params.experiment:q} --out {params.out:q} > {log:q} 2>&1 && {params.ledger} {output:q}"


rule cost:
    # After the tables and figures, so that Snakemake's records of those jobs are counted too.
    input:
        runs=RUN_PROVENANCE,
        tables=table_files(),
        figures=figure_files(),
    output:
        csv=report(
            f"{EXP}/cost.csv",
            caption="../report/cost.rst",
            category="Provenance",
            subcategory="Experiment",
            labels={"record": "cost"},
        ),
        md=f"{EXP}/cost.md",
    log:
        f"{EXP}/logs/cost.log",
    benchmark:
        job_benchmark("cost", f"{EXP}/logs/cost.log"),
    conda:
        ENV
    resources:
        **RES["light"],
    params:
        bmip=bmip_command,
        ledger=ledger_command("cost"),
        code=code_of("cost"),
        experiment=lambda wildcards, output: os.path.dirname(output.csv),
    shell:
        "{params.bmip} cost {params.experiment:q} --csv {output.csv:q} --md {output.md:q} > {log:q} 2>&1 "
        "&& {params.ledger} {output:q}"


rule manifest:
    # Everything else the workflow writes into the experiment folder comes first; only the
    # audit report (and the logs of these two rules) come after, and the manifest leaves them out.
    input:
        config=f"{EXP}/config.yaml",
        tables=table_files(),
        figures=figure_files(),
        runs=RUN_PROVENANCE,
        captions=caption_files(),
        provenance=rules.provenance.output,
        cost=rules.cost.output,
    output:
        report(
            f"{EXP}/manifest.json",
            caption="../report/manifest.rst",
            category="Provenance",
            subcategory="Experiment",
            labels={"record": "manifest"},
        ),
    log:
        f"{EXP}/logs/manifest.log",
    conda:
        ENV
    resources:
        **RES["light"],
    params:
        bmip=bmip_command,
        ledger=ledger_command("manifest"),
        code=code_of("manifest"),
        experiment=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "{params.bmip} manifest {params.experiment:q} > {log:q} 2>&1 && {params.ledger} {output:q}"


rule audit:
    # Fails the workflow (the report is then in the log) if any table number does not follow
    # from its runs or any output differs from the manifest.
    input:
        rules.manifest.output,
    output:
        report(
            f"{EXP}/audit.txt",
            caption="../report/audit.rst",
            category="Provenance",
            subcategory="Experiment",
            labels={"record": "audit"},
        ),
    log:
        f"{EXP}/logs/audit.log",
    conda:
        ENV
    resources:
        **RES["light"],
    params:
        bmip=bmip_command,
        ledger=ledger_command("audit"),
        code=code_of("audit"),
        experiment=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "{params.bmip} audit {params.experiment:q} --out {output:q} > {log:q} 2>&1 && {params.ledger} {output:q}"


rule crate:
    # After the audit passed: the crate holds the audit report too (checkpoints by sha256 only).
    input:
        rules.audit.output,
    output:
        report(
            f"{EXP}/crate.zip",
            caption="../report/crate.rst",
            category="Provenance",
            subcategory="Experiment",
            labels={"record": "crate"},
        ),
    log:
        f"{EXP}/logs/crate.log",
    conda:
        ENV
    resources:
        **RES["light"],
    params:
        bmip=bmip_command,
        ledger=ledger_command("crate"),
        code=code_of("crate"),
        settings=settings_of("crate"),
        experiment=lambda wildcards, output: os.path.dirname(output[0]),
    shell:
        "{params.bmip} crate {params.experiment:q} --out {output:q} > {log:q} 2>&1 && {params.ledger} {output:q}"
