"""`curate`: run or check a pipeline config, or operate it with a Prefect server.

    curate run CONFIG [--output URL] [--dask-address tcp://host:8786] [--resume [RUN_ID]] [--no-daemon]
    curate check CONFIG
    curate gc CONFIG [--dry-run]
    curate server [--host 127.0.0.1] [--port 4200] [--auth]
    curate serve CONFIG [--cron "0 3 * * *"] [--name NAME]
    curate daemon {status,stop}
"""

from __future__ import annotations

from flows import quick_exit  # noqa: I001  first: its atexit handler must run after all others

import argparse
import logging
import os
import sys
import time
from secrets import token_urlsafe
from typing import NoReturn

# Offline and quiet by default; a user's own settings win.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("DO_NOT_TRACK", "1")

from flows.server import SharedServer, TemporaryServer  # noqa: E402  (light: the rest is imported where it is used)


def summary_table(summary: dict, seconds: float) -> str:
    from tasks import modalities
    from tasks.export.stage_table import text_tables

    if summary.get("nothing_new"):
        latest = f"; the latest version is still {summary['latest_version']}" if summary["latest_version"] else ""
        return (f"run {summary['run_id']} finished in {seconds:.1f} s: nothing new, all {summary['source_files']} "
                f"source files were ingested already{latest}")
    noun = modalities.get(summary.get("modality", "text")).noun
    lines = [f"run {summary['run_id']} finished in {seconds:.1f} s", "", text_tables(summary["stages"], noun)]
    if summary.get("resumed"):
        lines += ["", f"resumed run {summary['run_id']}: {summary['resumed']['collect']} collect units and "
                      f"{summary['resumed']['preprocess']} preprocess shards were taken as they were"]
    if summary.get("seconds"):
        lines += ["", "seconds: " + ", ".join(f"{stage} {s:.1f}" for stage, s in summary["seconds"].items())]
    lines += ["", "gates: " + ", ".join(f"{g} {'off' if ok is None else 'passed' if ok else 'FAILED (warn)'}"
                                        for g, ok in summary["gates"].items()),
              "splits: " + ", ".join(f"{k} {v}" for k, v in summary["splits"].items()),
              f"published: {summary['published']} ({summary['documents']} {noun}"
              + (f", {sum(summary['splits'].values())} added on top of {summary['base_version']})"
                 if summary["base_version"] else ")")]
    return "\n".join(lines)


def cmd_check(args) -> int:
    """The config's keys and values, then what a run needs: sources that match files, an output that takes
    writes, the gates' suites. Every problem is listed, not only the first."""
    from flows.config import load_config
    from flows.preflight import problems
    from tasks.io import secrets

    config = load_config(args.config)

    found = problems(config)
    plain = secrets.plain_secrets(config.model_dump(mode="json"))
    if plain:
        print(f"note: {', '.join(plain)} hold credentials in plain text: `curate run` keeps them out of the "
              "Prefect database, `curate serve` refuses them; name them with {env: VAR} or {secret: block}",
              file=sys.stderr)
    if found:
        print(f"curate: {args.config} is valid, but a run could not start:\n" + "\n".join(f"  {p}" for p in found),
              file=sys.stderr)
        return 1
    print(f"{args.config}: valid ({len(config.sources)} sources, output {config.output} writable, suites found)")
    return 0


def scheduler_named(args) -> bool:
    """Whether the run is to use an existing Dask scheduler, read before its config is loaded: on the command
    line, in DASK_SCHEDULER_ADDRESS or as the file's `dask.address`. The loaded config has the last word."""
    import yaml

    try:
        with open(args.config) as f:
            address = ((yaml.safe_load(f) or {}).get("dask") or {}).get("address")
    except (OSError, yaml.YAMLError, AttributeError):
        return True  # load_config says what is wrong with the file
    return bool(args.dask_address or os.environ.get("DASK_SCHEDULER_ADDRESS") or address)


def cmd_run(args) -> int:
    """Run the pipeline once. The temporary Prefect server (started by `main` before anything is imported), the
    local workers' imports (flows.warm) and curate's own run side by side: seconds off every run."""
    from prefect.settings import PREFECT_API_URL

    server = args.server
    if server and PREFECT_API_URL.value():  # the user's profile names an API: runs go there
        server.stop()
        server = None
    if server:
        os.environ["PREFECT_API_URL"] = server.api_url  # for the workers, which start before the server is up
    from flows.warm import start_forkserver

    if not scheduler_named(args) and not args.services:  # the workers' imports start now, beside the config's
        start_forkserver()
    from flows.config import load_config
    from tasks.io import secrets

    config = load_config(args.config, {"output": args.output, "dask.address": args.dask_address})
    # a daemon's workers could not see plain credentials, which the run holds in its own environment
    warm = None if secrets.plain_secrets(config.model_dump(mode="json")) else args.services
    from prefect.exceptions import FailedRun

    from flows.curate import run_pipeline
    from flows.runtime import started_cluster

    # Dask's cluster start/stop chatter (and a harmless comm-closed trace at shutdown) is not progress.
    logging.getLogger("distributed").setLevel(logging.ERROR)
    started = time.perf_counter()
    try:
        with started_cluster(config, warm):
            summary = run_pipeline(config, args.resume, server)
    except FailedRun as stop:  # a gate stopped the run: its state message is the whole story
        print(f"\ncurate: run failed: {stop}", file=sys.stderr)
        return 1
    print("\n" + summary_table(summary, time.perf_counter() - started))
    return 0


def cmd_gc(args) -> int:
    """Remove from the output what no published version needs: folders of failed or killed runs, uncommitted
    version or index folders and stale claims; a live run's are left alone."""
    from flows.config import load_config
    from tasks import runs
    from tasks.io import secrets
    from tasks.io.storage import Store

    config = load_config(args.config, {"output": args.output})
    store = Store(config.output, secrets.resolve(config.storage_options, "storage_options"))
    if not args.dry_run:
        for dead in runs.release_dead(store):
            print(f"released killed run {dead['run_id']}: its claim and uncommitted version {dead['version']}")
    found = runs.garbage(store)
    for parts in found:
        print(("would remove " if args.dry_run else "removed ") + store.url(*parts))
        if not args.dry_run:
            store.remove(*parts)
    print(f"{len(found)} {'to remove' if args.dry_run else 'removed'}")
    return 0


def cmd_server(args) -> NoReturn:
    """The Prefect server and UI in the foreground (SQLite under PREFECT_HOME). Its API runs any deployment it
    is asked to, so it takes state-changing requests only with a CSRF token, from its own UI's origin, and with
    --auth only with the password (PREFECT_SERVER_API_AUTH_STRING, or one made now and printed)."""
    url = f"http://{args.host}:{args.port}"
    # The UI's pages call the API from the browser; left alone, Prefect points them at port 4200 whatever
    # --port says. Behind a proxy or on another host, set PREFECT_UI_API_URL yourself.
    browser_host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    ui = f"http://{browser_host}:{args.port}"
    env = {"PREFECT_UI_API_URL": f"{ui}/api", "PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": ui,
           "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true", **os.environ}
    login = ""
    if args.auth:
        env.setdefault("PREFECT_SERVER_API_AUTH_STRING", f"curate:{token_urlsafe(18)}")
        login = (f"  export PREFECT_API_AUTH_STRING='{env['PREFECT_SERVER_API_AUTH_STRING']}'   (the UI asks for it "
                 "too)\n")
    elif args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"curate: warning: {args.host} is reachable from other machines and --auth is off: anyone who reaches "
              "it can run deployments", file=sys.stderr)
    print(f"Prefect UI at {url}, API at {url}/api. In another shell:\n{login}"
          f"  export PREFECT_API_URL={url}/api\n  curate serve CONFIG --cron '0 3 * * *'\nCtrl-C stops the server.",
          flush=True)
    # exec, not a child process: a signal to `curate server` reaches the server itself, and nothing is orphaned
    os.execve(sys.executable, [sys.executable, "-m", "prefect", "server", "start", "--host", args.host,
                               "--port", str(args.port)], env)


def cmd_serve(args) -> int:
    """Serve the flow as a deployment from this process: scheduled by --cron, runnable from the UI."""
    from prefect.settings import PREFECT_API_URL

    from flows.config import load_config
    from tasks.io import secrets

    config = load_config(args.config)

    if not PREFECT_API_URL.value():
        print("curate: serve needs a Prefect server that outlives it: start one with `curate server` and set "
              "PREFECT_API_URL=http://127.0.0.1:4200/api", file=sys.stderr)
        return 2
    plain = secrets.plain_secrets(config.model_dump(mode="json"))
    if plain:
        print(f"curate: {args.config} holds credentials in plain text ({', '.join(plain)}); a deployment stores its "
              "parameters in the Prefect database and shows them in the UI. Name them instead: "
              "`key: {env: AWS_ACCESS_KEY_ID}` (a variable where the flow runs) or "
              "`secret: {secret: my-block}` (a Prefect Secret block), or leave them out for s3fs's own lookup",
              file=sys.stderr)
        return 2
    from flows.preflight import deployed_run_problems

    refused = deployed_run_problems(config, os.environ)
    if refused:
        print(f"curate: {args.config} asks for what a deployed run may not: " + "; ".join(refused), file=sys.stderr)
        return 2
    from flows.serving import serve

    print(f"serving deployment curate/{args.name} ({'cron ' + args.cron if args.cron else 'on demand'}) "
          f"from {PREFECT_API_URL.value()} on a warm Dask cluster; Ctrl-C stops it", flush=True)
    try:
        serve(config, args.name, args.cron, f"curate {args.config}: output {config.output}")
    except KeyboardInterrupt:
        print("stopped serving; the deployment's schedule is paused", flush=True)
    return 0


def cmd_daemon(args) -> int:
    """What `curate run` reuses: the run daemons of this PREFECT_HOME (flows.daemon)."""
    from flows import daemon

    if args.action == "stop":
        print(f"stopped {daemon.stop_all()} run daemon(s)")
        return 0
    found = daemon.daemons()
    for folder, state in found:
        print(f"pid {state['pid']}: up {time.time() - state['started']:.0f} s, Prefect API {state['api_url']}, "
              f"Dask scheduler {state['scheduler']}, log {folder / 'daemon.log'}")
    if not found:
        print("no run daemon is running")
    return 0


def main(argv: list[str] | None = None, services=None) -> int:
    """`services`: a run daemon's server and cluster, when this process is one of its runs (flows.daemon)."""
    parser = argparse.ArgumentParser(prog="curate", description="Curate raw text, images or audio into a validated, training-ready dataset.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline once (local Dask cluster unless --dask-address)")
    run.add_argument("config")
    run.add_argument("--output", help="output root; overrides the config's `output`")
    run.add_argument("--dask-address", help="existing Dask scheduler, e.g. tcp://127.0.0.1:8786")
    run.add_argument("--resume", nargs="?", const="last", metavar="RUN_ID",
                     help="continue a failed or killed run (default: the last one with this config): its finished "
                          "shards are not redone")
    run.add_argument("--no-daemon", action="store_true",
                     help="start a Prefect server and a Dask cluster for this run alone, not the run daemon's")
    run.set_defaults(func=cmd_run)
    gc = sub.add_parser("gc", help="remove failed runs' folders and uncommitted versions from the output")
    gc.add_argument("config")
    gc.add_argument("--output", help="output root; overrides the config's `output`")
    gc.add_argument("--dry-run", action="store_true", help="list what would be removed")
    gc.set_defaults(func=cmd_gc)
    check = sub.add_parser("check", help="validate a config file and exit")
    check.add_argument("config")
    check.set_defaults(func=cmd_check)
    server = sub.add_parser("server", help="start the Prefect server and UI (SQLite, loopback by default)")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=4200)
    server.add_argument("--auth", action="store_true", help="require a password (PREFECT_SERVER_API_AUTH_STRING, "
                                                           "or one made and printed now) for the API and the UI")
    server.set_defaults(func=cmd_server)
    serve = sub.add_parser("serve", help="serve the pipeline as a deployment: scheduled and triggerable from the UI")
    serve.add_argument("config")
    serve.add_argument("--cron", help='schedule, e.g. "0 3 * * *"; without it the deployment runs on demand only')
    serve.add_argument("--name", default="scheduled-ingest", help="deployment name (default: scheduled-ingest)")
    serve.set_defaults(func=cmd_serve)
    daemon = sub.add_parser("daemon", help="the run daemon `curate run` reuses: list or stop it")
    daemon.add_argument("action", choices=["status", "stop"])
    daemon.set_defaults(func=cmd_daemon)
    args = parser.parse_args(argv)
    args.services = services
    cold = args.command == "run" and not services and "PREFECT_API_URL" not in os.environ
    if cold and not args.no_daemon and not scheduler_named(args):
        from flows import daemon

        code = daemon.run(sys.argv[1:] if argv is None else argv)
        if code is not None:
            return code
    # a run's temporary Prefect server boots (seconds) while the rest is imported and set up
    args.server = SharedServer(services.api_url) if services else TemporaryServer() if cold else None
    try:
        code = args.func(args)
    except Exception as e:  # one paragraph, the logs above hold the details
        from flows.config import ConfigError  # here, not above: a run starts its workers before it loads the config

        if isinstance(e, ConfigError):
            print(f"curate: {e}", file=sys.stderr)
            code = 2
        else:
            print(f"\ncurate: run failed: {type(e).__name__}: {e}", file=sys.stderr)
            code = 1
    finally:
        if args.server:
            args.server.stop()
    return code


def console() -> NoReturn:
    """The `curate` command: `main`, then an exit that skips the interpreter's teardown (flows.quick_exit)."""
    quick_exit.code = main()
    sys.exit(quick_exit.code)


if __name__ == "__main__":
    console()
