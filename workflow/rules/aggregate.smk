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
    conda:
        ENV
    resources:
        **RES["light"],
    params:
        bmip=bmip_command,
        out=lambda wildcards, output: os.path.dirname(output.csv[0]),
    shell:
        "{params.bmip} aggregate {input} --out {params.out} > {log} 2>&1"


rule figures:
    input:
        tables=expand(f"{EXP}/tables/{{table}}.csv", table=TABLES),
        train_logs=train_log_files(),
        gated=gated_metrics_files(),
        analysed=mechanism_metrics_files(),
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
    log:
        f"{EXP}/logs/figures.log",
    conda:
        ENV
    resources:
        **RES["light"],
    params:
        bmip=bmip_command,
        tables=lambda wildcards, input: os.path.dirname(input.tables[0]),
        gates=lambda wildcards, input: [
            os.path.join(os.path.dirname(m), P.GATES) for m in input.gated
        ],
        mechanism=lambda wildcards, input: [
            os.path.join(os.path.dirname(m), P.MECHANISM) for m in input.analysed
        ],
        out=lambda wildcards, output: os.path.dirname(output.png[0]),
    shell:
        "{params.bmip} figures --tables {params.tables} --train-logs {input.train_logs} --gates {params.gates} "
        "--mechanism {params.mechanism} --causal {input.causal} --out {params.out} > {log} 2>&1"
