"""The run report: one self-contained HTML page next to the manifest, with the plots a person checks first
(the modality's distributions, rejections per rule, duplicate-cluster sizes) and examples of what was
kept and of what each rule removed. Charts are inline SVG drawn from the manifest and pictures are inline
data, so the page needs no plotting library and no network to open.
"""

from __future__ import annotations

import re
from html import escape

import pyarrow as pa
import pyarrow.compute as pc

from tasks.export.stage_table import html_table
from tasks.gates import status as gate_status
from tasks.io.layout import RunPaths
from tasks.io.storage import Store

EXAMPLES_PER_RULE, SAMPLES = 4, 24

BAR_HEIGHT, LABEL_WIDTH, PLOT_WIDTH = 22, 340, 420


def bar_chart(title: str, bars: list[tuple[str, int]], color: str, empty: str = "nothing to show") -> str:
    """A horizontal bar chart as an SVG figure; each bar is labelled with its value."""
    if not bars:
        return f"<figure><figcaption>{escape(title)}</figcaption><p class=empty>{escape(empty)}</p></figure>"
    top = max(value for _, value in bars) or 1
    rows = []
    for i, (label, value) in enumerate(bars):
        y, width = i * BAR_HEIGHT, max(1, round(PLOT_WIDTH * value / top)) if value else 0
        rows.append(f'<text x="{LABEL_WIDTH - 8}" y="{y + 15}" text-anchor="end">{escape(str(label))}</text>'
                    f'<rect x="{LABEL_WIDTH}" y="{y + 3}" width="{width}" height="{BAR_HEIGHT - 6}" fill="{color}">'
                    f'<title>{escape(str(label))}: {value}</title></rect>'
                    f'<text x="{LABEL_WIDTH + width + 6}" y="{y + 15}">{value:,}</text>')
    height = len(bars) * BAR_HEIGHT
    return (f"<figure><figcaption>{escape(title)}</figcaption>"
            f'<svg role="img" aria-label="{escape(title)}" width="{LABEL_WIDTH + PLOT_WIDTH + 80}" height="{height}">'
            f'{"".join(rows)}</svg></figure>')


QUARANTINED_FOR = {"collect": "malformed", "dedup": "repeated id"}  # why each stage quarantines


def rejections(stages: dict) -> list[tuple[str, int]]:
    """(stage: rule, documents) over every stage, most frequent first, quarantined input included."""
    bars = [(f"{stage}: {rule}", n) for stage, c in stages.items() for rule, n in c["rejected"].items()]
    bars += [(f"{stage}: quarantined ({QUARANTINED_FOR.get(stage, 'malformed')})", c["quarantined"])
             for stage, c in stages.items() if c["quarantined"]]
    return sorted(bars, key=lambda bar: -bar[1])


def gather_examples(store: Store, paths: RunPaths, shards: list[str], exported: list[tuple[str, ...]],
                    stages: tuple[str, ...] = ("preprocess", "dedup"), per_rule: int = EXAMPLES_PER_RULE,
                    samples: int = SAMPLES) -> dict[str, list[dict]]:
    """A few rows the report shows: `kept` (the first exported ones) and, per rejection rule, the first
    rows it removed (in shard order, so the report is the same for the same run)."""
    examples: dict[str, list[dict]] = {"kept": []}
    for parts in exported:
        if len(examples["kept"]) >= samples:
            break
        examples["kept"] += store.read_table(*parts).slice(0, samples - len(examples["kept"])).to_pylist()
    for stage in stages:
        for shard in shards:
            rejected = store.read_table(*paths.rejected(stage, shard))
            for rule in (pc.unique(rejected["rule"]).to_pylist() if rejected.num_rows else []):
                have = examples.setdefault(rule, [])
                if len(have) < per_rule:
                    have += rejected.filter(pc.equal(rejected["rule"], rule)).slice(0, per_rule - len(have)).to_pylist()
    with_representatives(store, paths, shards, [row for rule in DUPLICATE_RULES for row in examples.get(rule, [])])
    return examples


DUPLICATE_RULES = ("dedup.exact", "dedup.near", "dedup.semantic")


def with_representatives(store: Store, paths: RunPaths, shards: list[str], rows: list[dict]) -> None:
    """Give each removed duplicate in `rows` the kept document of its cluster (`representative`), found among
    the run's dedup shards; one from a published version is not looked up."""
    wanted = {row["duplicate_of"] for row in rows if row.get("duplicate_of")}
    found: dict[str, dict] = {}
    for shard in shards if wanted else []:
        parts = paths.stage("dedup", shard)
        if store.exists(*parts):
            table = store.read_table(*parts)
            found |= {r["id"]: r for r in table.filter(pc.is_in(table["id"], pa.array(sorted(wanted)))).to_pylist()}
            if wanted <= found.keys():
                break
    for row in rows:
        row["representative"] = found.get(row.get("duplicate_of"))


def examples_html(examples: dict[str, list[dict]], example, noun: str) -> str:
    """Examples of the kept records, then of each rule's removals with the measured reason."""
    kept = "".join(f"<div class=ex>{example(row)}</div>" for row in examples.get("kept", []))
    parts = [f"<h2>Examples of kept {escape(noun)}</h2><div class=sheet>{kept}</div>"] if kept else []
    rules = sorted(rule for rule in examples if rule != "kept")
    if rules:
        parts.append(f"<h2>Examples of removed {escape(noun)}, per rule</h2>")
    for rule in rules:
        if rule in DUPLICATE_RULES:
            cells = "".join(duplicate_pair(row, example) for row in examples[rule])
        else:
            cells = "".join(f"<div class=ex>{example(row)}<p class=why>{why(row.get('reason') or rule, rule)}</p></div>"
                            for row in examples[rule])
        parts.append(f"<h3>{escape(rule)}</h3><div class=sheet>{cells}</div>")
    return "".join(parts)


LIMIT = re.compile(r" (?=(?:<|>|not in|has|outside) )")  # where a reason's limit starts (records.Check)


def why(reason: str, rule: str) -> str:
    """The reason with the measured value that broke the rule in bold: `rule: <b>12</b> < 50 (n_words)`,
    `c4.curly_bracket: <b>line 85</b> has '{'`; a reason without a limit is bold after the rule."""
    if not reason.startswith(f"{rule}: "):
        return escape(reason)
    value, *limit = LIMIT.split(reason.removeprefix(f"{rule}: "), maxsplit=1)
    return f"{escape(rule)}: <b class=value>{escape(value)}</b>" + "".join(f" {escape(part)}" for part in limit)


def duplicate_pair(row: dict, example) -> str:
    """A removed duplicate beside the document its cluster kept."""
    kept = row.get("representative")
    left = (example(kept) if kept else f"<p class=empty>{escape(str(row.get('duplicate_of')))}: in a published "
                                              "version</p>")
    return (f"<div class=pair><div class=ex><p class=keep>kept</p>{left}</div>"
            f"<div class=ex><p class=why>removed: {escape(row.get('reason') or '')}</p>{example(row)}</div></div>")


def render(manifest: dict, charts: list[str], noun: str = "documents", examples: str = "", balance: str = "") -> str:
    """The page: `charts` are the modality's figures, `examples` its rendered examples, `balance` the groups'
    section (tasks.export.balance_report)."""
    stages, dedup = manifest["stages"], manifest.get("dedup", {})
    clusters = sorted((int(size), n) for size, n in dedup.get("cluster_sizes", {}).items())
    split_rows = "".join(f"<tr><td>{escape(name)}</td><td>{s['rows']:,}</td><td>{s['added']:,}</td>"
                         f"<td>{len(s['shards'])}</td></tr>" for name, s in manifest["splits"].items())
    gates = " ".join(f'<span class="{ {"passed": "pass", "FAILED": "fail", "off": "off"}[gate_status(g)] }">'
                     f'{escape(g["gate"])}: {gate_status(g)}</span>' for g in manifest["gates"])
    base = f" on top of <b>{escape(manifest['base_version'])}</b>" if manifest.get("base_version") else ""
    charts = [*charts,
              bar_chart(f"{noun.capitalize()} removed per rule (this run)", rejections(stages), "#e15759",
                        f"no {noun[:-1]} was removed"),
              bar_chart("Duplicate clusters by size (this run)", [(f"{size} {noun}", n) for size, n in clusters],
                        "#f28e2b", "no duplicate clusters")]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(manifest['name'])} {escape(manifest['version'])}: curate run report</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 10px; text-align: right; }}
td:first-child, th:first-child, td.left {{ text-align: left; }}
figure {{ margin: 1.5em 0; }} figcaption {{ font-weight: 600; margin-bottom: .4em; }}
svg text {{ font-size: 12px; fill: #222; }} .empty {{ color: #777; }}
.sheet {{ display: flex; flex-wrap: wrap; gap: 8px; }} .ex {{ max-width: 220px; font-size: 12px; }}
.ex img {{ display: block; max-width: 200px; max-height: 160px; border: 1px solid #ddd; }} .why {{ color: #c62828; margin: 2px 0; }}
tr.wiped td {{ background: #fdecea; }} .value {{ background: #ffe08a; }} .keep {{ color: #1a7f37; margin: 2px 0; }}
.pair {{ display: flex; gap: 8px; border: 1px solid #eee; padding: 4px; }} .legend {{ font-size: 12px; margin-top: 4px; }}
blockquote {{ margin: 0; padding: 4px 8px; background: #f6f6f6; white-space: pre-wrap; }}
.pass {{ color: #1a7f37; margin-right: 1em; }} .off {{ color: #666; margin-right: 1em; }} .fail {{ color: #c62828; font-weight: 700; margin-right: 1em; }}
</style></head><body>
<h1>{escape(manifest['name'])} <small>{escape(manifest['version'])}</small></h1>
<p>{manifest['documents']:,} {noun}{base}. Run <code>{escape(manifest['run_id'])}</code>, {escape(manifest['created'])},
{len(manifest['sources'])} source files. Gates: {gates}</p>
<h2>Stages</h2>
{html_table(stages)}
<h2>Splits</h2>
<table><tr><th>split</th><th>{noun}</th><th>added by this version</th><th>shards</th></tr>{split_rows}</table>
{"".join(charts)}
{balance}
{examples}
</body></html>
"""
