"""The stage table: what each stage kept, and why records were removed, rendered in one place for the CLI
(text), the dataset card and the run-summary artifact (Markdown) and the run report (HTML)."""

from __future__ import annotations

from html import escape

COLUMNS = ("stage", "in", "kept", "rejected", "quarantined")


def stage_rows(stages: dict) -> list[tuple]:
    """(stage, in, kept, rejected, quarantined) per stage; `stages` maps names to StageCounts.as_dict()."""
    return [(stage, c["in"], c["kept"], sum(c["rejected"].values()), c["quarantined"]) for stage, c in stages.items()]


def rule_rows(stages: dict) -> list[tuple[str, str, int]]:
    """(stage, rule, records) for every rejection rule, most first, then by rule name."""
    rows = [(stage, rule, n) for stage, c in stages.items() for rule, n in c["rejected"].items()]
    return sorted(rows, key=lambda r: (-r[2], r[1]))


def markdown_tables(stages: dict, heading: str = "", noun: str = "records") -> str:
    """Both tables as Markdown; `heading` (e.g. "## ") titles each; `noun` names the records (documents...)."""
    kept = "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in stage_rows(stages))
    rules = "\n".join(f"| {stage} | {rule} | {n} |" for stage, rule, n in rule_rows(stages))
    titles = (f"{heading}What each stage kept\n", f"{heading}Why {noun} were removed\n") if heading else ("", "")
    return (f"{titles[0]}| {' | '.join(COLUMNS)} |\n|---|---|---|---|---|\n{kept}\n\n"
            f"{titles[1]}| stage | rule | {noun} |\n|---|---|---|\n{rules}")


def text_tables(stages: dict, noun: str = "records") -> str:
    """Both tables as aligned plain text, for the terminal."""
    lines = [f"{'stage':<12}{'in':>10}{'kept':>10}{'rejected':>10}{'quarantined':>13}"]
    lines += [f"{s:<12}{n:>10}{k:>10}{r:>10}{q:>13}" for s, n, k, r, q in stage_rows(stages)]
    rules = rule_rows(stages)
    if rules:
        lines += ["", f"{'rejected by rule':<50}{noun:>10}"]
        lines += [f"{rule:<50}{n:>10}" for _, rule, n in rules]
    return "\n".join(lines)


def html_table(stages: dict) -> str:
    """The stage table as HTML (the rules are charted in the report)."""
    head = "".join(f"<th>{c}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{escape(v) if isinstance(v, str) else f'{v:,}'}</td>" for v in row) + "</tr>"
                   for row in stage_rows(stages))
    return f"<table><tr>{head}</tr>{body}</table>"
