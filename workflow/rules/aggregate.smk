# Aggregation into the paper's tables (pandas: CSV, Markdown, LaTeX) and figures (matplotlib),
# flagged for the report.


rule tables:
    input:
        metrics_files(),
    output:
        csv=[
            report(
                f"{EXP}/tables/{t}.csv",
                caption=f"../report/{t}.rst",
                category="Tables",
                labels={"table": t},
            )
            for t in TABLES
        ],
        md=expand(f"{EXP}/tables/{{table}}.md", table=TABLES),
        tex=expand(f"{EXP}/tables/{{table}}.tex", table=TABLES),
    log:
        f"{EXP}/logs/tables.log",
    benchmark:
        job_benchmark("tables", f"{EXP}/logs/tables.log"),
    conda:
        ENV
    resources:
        **RES["light"],
    params:
        bmip=bmip_command,
        ledger=ledger_command("tables"),
        out=lambda wildcards, output: os.path.dirname(output.csv[0]),
        code=code_of("tables"),
    shell:
        "{params.bmip} aggregate {input:q} --out {params.out:q} > {log:q} 2>&1 && {params.ledger} {output:q}"


rule figures:
    input:
        tables=expand(f"{EXP}/tables/{{table}}.csv", table=TABLES),
        train_logs=train_log_files(),
        gated=gated_files(),
        analysed=mechanism_files(),
        causal=causal_files(),
    output:
        png=[
            report(
                f"{EXP}/figures/{f}.png",
                caption=f"../report/figures/{f}.rst",
                category=SECTIONS.get(f, "Figures"),
                labels={"figure": f},
            )
            for f in FIGURES
        ],
        pdf=expand(f"{EXP}/figures/{{figure}}.pdf", figure=FIGURES),
        gate_table=multiext(f"{EXP}/figures/bmip_gates", ".csv", ".md"),  # the gate figure's numbers
    log:
        f"{EXP}/logs/figures.log",
    benchmark:
        job_benchmark("figures", f"{EXP}/logs/figures.log"),
    conda:
        ENV
    resources:
        **RES["light"],
    params:
        bmip=bmip_command,
        tables=lambda wildcards, input: os.path.dirname(input.tables[0]),
        gates=lambda wildcards, input: list(input.gated),
        mechanism=lambda wildcards, input: list(input.analysed),
        out=lambda wildcards, output: os.path.dirname(output.png[0]),
        ledger=ledger_command("figures"),
        code=code_of("figures"),
    shell:
        "{params.bmip} figures --tables {params.tables:q} --train-logs {input.train_logs:q} --gates {params.gates:q} "
        "--mechanism {params.mechanism:q} --causal {input.causal:q} --out {params.out:q} > {log:q} 2>&1 "
        "&& {params.ledger} {output:q}"
