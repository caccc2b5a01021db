"""What a run shows in the Prefect UI: a table, a Markdown summary and a Data Docs link per gate, the run
summary and the link to the run report. Rendering only; the artifacts of a gate (or of the summary) are
created side by side, over one client: the gates sit between stages, on the run's critical path."""

import asyncio

from prefect.artifacts import Artifact, LinkArtifact, MarkdownArtifact, TableArtifact, create_markdown_artifact
from prefect.client.orchestration import get_client

from tasks import gates, modalities
from tasks.export.stage_table import markdown_tables


def gate_rows(result: dict) -> list[dict]:
    return [{"expectation": e["expectation"], "column": e["column"] or "", "rows": e["element_count"],
             "unexpected": "" if e["unexpected_count"] is None else e["unexpected_count"],
             "result": "pass" if e["success"] else "FAIL"} for e in result["expectations"]]


def gate_markdown(result: dict, docs_url: str) -> str:
    rows = "\n".join(f"| {r['expectation']} | {r['column']} | {r['rows']} | {r['unexpected']} | "
                     f"{'pass' if r['result'] == 'pass' else '**FAIL**'} |" for r in gate_rows(result))
    status = gates.status(result)
    return (f"### Gate `{result['gate']}` {status} (policy {result['policy']})\n\n"
            f"| expectation | column | rows | unexpected | result |\n|---|---|---|---|---|\n{rows}\n\n"
            f"Data Docs: {docs_url}\n")


def create_together(*artifacts: Artifact) -> None:
    """Create the artifacts of the running flow concurrently: one round trip to the API instead of one each."""
    async def create():
        async with get_client() as client:
            await asyncio.gather(*(artifact.acreate(client) for artifact in artifacts))
    asyncio.run(create())


def publish_gate(result: dict, docs_url: str) -> None:
    gate = result["gate"]
    create_together(
        MarkdownArtifact(key=f"gate-{gate}", markdown=gate_markdown(result, docs_url), description=f"gate {gate}"),
        TableArtifact(key=f"gate-{gate}-table", table=gate_rows(result),
                      description=f"gate {gate}: one row per expectation"),
        LinkArtifact(key=f"gate-{gate}-docs", link=docs_url, link_text=f"Data Docs of gate {gate}",
                     description=f"gate {gate}: Great Expectations Data Docs"))


def summary_markdown(summary: dict) -> str:
    added, noun = sum(summary["splits"].values()), modalities.get(summary["modality"]).noun
    on_top = f", {added} added on top of {summary['base_version']}" if summary["base_version"] else ""
    gates = ", ".join(f"{g} {'passed' if ok else '**FAILED** (policy warn)'}" for g, ok in summary["gates"].items())
    return (f"### curate run `{summary['run_id']}`\n\nPublished **{summary['version']}** at `{summary['published']}`: "
            f"{summary['documents']} {noun}{on_top}.\n\nGates: {gates}.\n\n{markdown_tables(summary['stages'], noun=noun)}\n")


def publish_summary(summary: dict, report_url: str) -> None:
    create_together(
        LinkArtifact(key="run-report", link=report_url,
                     link_text=f"Run report of {summary['version']}: distributions, rejections, duplicate clusters, "
                               "examples", description="HTML run report with plots, next to the manifest"),
        MarkdownArtifact(key="run-summary", markdown=summary_markdown(summary), description="curate run summary"))


def publish_nothing_new(run_id: str, message: str) -> None:
    create_markdown_artifact(key="run-summary", markdown=f"### curate run `{run_id}`\n\n{message.capitalize()}.",
                             description="curate run summary")
