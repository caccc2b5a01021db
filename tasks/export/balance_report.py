"""The balance section of the run report and the dataset card: per column, each group's rows and share at
every stage and in each split, the rules that removed it, a flag where one rule removed all of a group
that reached it, and a stacked share bar per stage."""

from __future__ import annotations

from html import escape

from tasks.export.splits import SPLITS

TOP = 8  # groups drawn in the share bars; the rest are one "other" segment
LISTED = 25  # groups in the tables, largest before curation first; the manifest has them all
COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2", "#ff9da6", "#bab0ac")
BAR_WIDTH, BAR_HEIGHT, LABEL_WIDTH = 520, 22, 110


def summarize(merged: dict, stages: list[str], columns: list[str]) -> dict:
    """{column: [group rows, largest first]} from the shards' merged `balance.count_shard` results; a group
    row: {group, rows: {stage: n}, shares: {stage: share}, splits: {split: n}, removed: {rule: n},
    wiped_by: the rule that removed every row of the group it saw, or None}."""
    out = {}
    for column in columns:
        at = {s: merged["stages"].get(s, {}).get(column, {}) for s in stages}
        totals = {s: sum(at[s].values()) for s in stages}
        names = sorted(set().union(*at.values()), key=lambda g: (-at[stages[0]].get(g, 0), g))
        rows = []
        for name in names:
            removed, wiped = {}, None
            for before, stage in zip(stages, stages[1:]):
                for rule, by_group in merged["removed"].get(stage, {}).get(column, {}).items():
                    n = by_group.get(name, 0)
                    if n:
                        removed[rule] = removed.get(rule, 0) + n
                        if n == at[before].get(name, 0):
                            wiped = rule
            rows.append({"group": name, "rows": {s: at[s].get(name, 0) for s in stages},
                         "shares": {s: round(at[s].get(name, 0) / totals[s], 4) if totals[s] else 0 for s in stages},
                         "splits": {split: merged["splits"].get(split, {}).get(column, {}).get(name, 0)
                                    for split in SPLITS},
                         "removed": dict(sorted(removed.items(), key=lambda kv: -kv[1])), "wiped_by": wiped})
        out[column] = rows
    return out


def share_bars(column: str, rows: list[dict], stages: list[str]) -> str:
    """One stacked bar per stage: each group's share, the TOP largest (before curation) in colour."""
    shown, rest = rows[:TOP], rows[TOP:]
    legend = [(r["group"], COLORS[i]) for i, r in enumerate(shown)] + ([("other", COLORS[-1])] if rest else [])
    svg = []
    for i, stage in enumerate(stages):
        y, x = i * BAR_HEIGHT, LABEL_WIDTH
        svg.append(f'<text x="{LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">{escape(stage)}</text>')
        parts = [(r["group"], r["shares"][stage], COLORS[j]) for j, r in enumerate(shown)]
        parts.append(("other", sum(r["shares"][stage] for r in rest), COLORS[-1]))
        for group, share, color in parts:
            width = BAR_WIDTH * share
            if width > 0:
                svg.append(f'<rect x="{x:.1f}" y="{y + 3}" width="{width:.1f}" height="{BAR_HEIGHT - 6}" fill="{color}">'
                           f'<title>{escape(group)} at {escape(stage)}: {share:.1%}</title></rect>')
            x += width
    keys = " ".join(f'<span style="color:{c}">&#9632;</span> {escape(g)}' for g, c in legend)
    return (f"<figure><figcaption>Share of each {escape(column)} group at every stage</figcaption>"
            f'<svg role="img" aria-label="shares of {escape(column)} per stage" width="{LABEL_WIDTH + BAR_WIDTH + 10}" '
            f'height="{len(stages) * BAR_HEIGHT}">{"".join(svg)}</svg><div class="legend">{keys}</div></figure>')


def html(balance: dict | None, noun: str) -> str:
    if not balance:
        return ""
    stages, parts = balance["stages"], ["<h2>Balance</h2>", escape(caps_line(balance))]
    for column, rows in balance["columns"].items():
        head = "".join(f"<th>{escape(s)}</th>" for s in stages)
        body = "".join(
            f"<tr{' class=wiped' if r['wiped_by'] else ''}><td>{escape(r['group'])}</td>"
            + "".join(f"<td>{r['rows'][s]:,} <small>({r['shares'][s]:.1%})</small></td>" for s in stages)
            + f"<td>{' / '.join(f'{n:,}' for n in r['splits'].values())}</td>"
            + f"<td class=left>{escape(removed_line(r))}</td></tr>" for r in rows[:LISTED])
        parts.append(f"<h3>{escape(column)}</h3><table><tr><th>group</th>{head}<th>train / validation / test</th>"
                     f"<th>removed by</th></tr>{body}</table>{escape(more(rows))}{share_bars(column, rows, stages)}")
    return "".join(parts)


def markdown(balance: dict | None, noun: str) -> str:
    if not balance:
        return ""
    stages, parts = balance["stages"], ["## Balance", cell(caps_line(balance))]
    for column, rows in balance["columns"].items():
        parts.append(f"### {cell(column)}\n| group | {' | '.join(stages)} | train / validation / test | removed by |\n"
                     f"|---|{'---|' * len(stages)}---|---|")
        parts += [f"| {cell(r['group'])} | " + " | ".join(f"{r['rows'][s]:,} ({r['shares'][s]:.1%})" for s in stages)
                  + f" | {' / '.join(f'{n:,}' for n in r['splits'].values())} | {removed_line(r)} |" for r in rows[:LISTED]]
        parts.append(more(rows))
    return "\n".join(parts) + "\n"


def cell(value: str) -> str:
    """A user's value in the card's Markdown, which renderers (the Hub's among them) read HTML in: escaped,
    and `|` so a group name cannot end its table cell."""
    return escape(value).replace("|", "\\|")


def more(rows: list[dict]) -> str:
    return f"\n{len(rows) - LISTED} smaller groups are in manifest.json (balance).\n" if len(rows) > LISTED else ""


def removed_line(row: dict) -> str:
    line = ", ".join(f"{rule} {n:,}" for rule, n in list(row["removed"].items())[:4])
    return (f"WIPED OUT by {row['wiped_by']}; " if row["wiped_by"] else "") + line


def caps_line(balance: dict) -> str:
    caps = balance.get("caps")
    if not caps:
        return "Shares of every stage's kept rows. No caps were set."
    over = ", ".join(f"{g} {o['rows']:,} -> {o['keeps']:,}" for g, o in caps["over"].items()) or "none"
    return (f"Caps on {caps['column']}: at most {caps['limit']:,} rows per group (rule balance.cap). "
            f"Groups capped: {over}.")
