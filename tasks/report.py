"""The run report: one self-contained HTML page next to the manifest, with the plots a person checks first
(document lengths, languages, rejections per rule, duplicate-cluster sizes). The charts are inline SVG
drawn from the manifest, so the page needs no plotting library and no network to open.
"""

from __future__ import annotations

from html import escape

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


def rejections(stages: dict) -> list[tuple[str, int]]:
    """(stage: rule, documents) over every stage, most frequent first, quarantined input included."""
    bars = [(f"{stage}: {rule}", n) for stage, c in stages.items() for rule, n in c["rejected"].items()]
    bars += [(f"{stage}: quarantined (malformed)", c["quarantined"]) for stage, c in stages.items() if c["quarantined"]]
    return sorted(bars, key=lambda bar: -bar[1])


def render(manifest: dict) -> str:
    stages, dedup = manifest["stages"], manifest.get("dedup", {})
    clusters = sorted((int(size), n) for size, n in dedup.get("cluster_sizes", {}).items())
    stage_rows = "".join(f"<tr><td>{escape(stage)}</td><td>{c['in']:,}</td><td>{c['kept']:,}</td>"
                         f"<td>{sum(c['rejected'].values()):,}</td><td>{c['quarantined']:,}</td></tr>"
                         for stage, c in stages.items())
    split_rows = "".join(f"<tr><td>{escape(name)}</td><td>{s['rows']:,}</td><td>{s['added']:,}</td>"
                         f"<td>{len(s['shards'])}</td></tr>" for name, s in manifest["splits"].items())
    gates = " ".join(f'<span class="{"pass" if g["success"] else "fail"}">{escape(g["gate"])}: '
                     f'{"passed" if g["success"] else "FAILED"}</span>' for g in manifest["gates"])
    base = f" on top of <b>{escape(manifest['base_version'])}</b>" if manifest.get("base_version") else ""
    charts = [
        bar_chart("Document length in characters (this version)", list(manifest.get("lengths", {}).items()), "#4c78a8"),
        bar_chart("Documents per language (this version)", list(manifest.get("languages", {}).items())[:20], "#59a14f"),
        bar_chart("Documents removed per rule (this run)", rejections(stages), "#e15759", "no document was removed"),
        bar_chart("Duplicate clusters by size (this run)", [(f"{size} documents", n) for size, n in clusters],
                  "#f28e2b", "no duplicate clusters"),
    ]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{escape(manifest['name'])} {escape(manifest['version'])}: curate run report</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 3px 10px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ margin: 1.5em 0; }} figcaption {{ font-weight: 600; margin-bottom: .4em; }}
svg text {{ font-size: 12px; fill: #222; }} .empty {{ color: #777; }}
.pass {{ color: #1a7f37; margin-right: 1em; }} .fail {{ color: #c62828; font-weight: 700; margin-right: 1em; }}
</style></head><body>
<h1>{escape(manifest['name'])} <small>{escape(manifest['version'])}</small></h1>
<p>{manifest['documents']:,} documents{base}. Run <code>{escape(manifest['run_id'])}</code>, {escape(manifest['created'])},
{len(manifest['sources'])} source files. Gates: {gates}</p>
<h2>Stages</h2>
<table><tr><th>stage</th><th>in</th><th>kept</th><th>rejected</th><th>quarantined</th></tr>{stage_rows}</table>
<h2>Splits</h2>
<table><tr><th>split</th><th>documents</th><th>added by this version</th><th>shards</th></tr>{split_rows}</table>
{"".join(charts)}
</body></html>
"""
