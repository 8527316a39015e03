"""`sidecar` command line: serve, and the operator's commands (check-rules, status, ...)."""

from __future__ import annotations

import argparse
import logging
import shutil
import sys

from sidecar import __version__
from sidecar.cli import endpoint_check
from sidecar.cli import quota as quota_commands
from sidecar.cli import replicate_command
from sidecar.cli import retention_command
from sidecar.cli import scan as scan_command
from sidecar.config import ConfigError
from sidecar.config import Settings
from sidecar.config import load_settings
from sidecar.config import parse_duration
from sidecar.config import validate
from sidecar.redact import database_url
from sidecar.redact import redact_address
from sidecar.rules.load import RulesError
from sidecar.rules.load import load_rules


def _settings_from(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    settings = settings.replace(
        rules=args.rules, upstream=args.upstream, bind=args.bind, database=args.database,
        workers=args.workers, hostname=getattr(args, "hostname", None),
        chart_upstream=getattr(args, "chart_upstream", None),
    )
    validate(settings)
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        settings = _settings_from(args)
    except ConfigError as exc:
        print(f"sidecar: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s")
    from sidecar.preload import prepare_apart
    from sidecar.serve import prepare_metrics_dir
    from sidecar.serve import run

    made = prepare_metrics_dir()  # before anything imports prometheus_client
    prepared = prepare_apart(_prepare_store, settings)  # the master stays lean
    if isinstance(prepared, str):
        if made:
            shutil.rmtree(made, ignore_errors=True)
        print(prepared, file=sys.stderr)
        return 2
    if settings.default_password:  # once the store is ready: a refused start says only why
        logging.getLogger("sidecar").warning(
            "harbor_admin_password is Harbor's published default: the API, web UI and status "
            "answer only clients on this host until you set a password of your own in "
            "harbor.yml (harbor_admin_password) and restart")
    run(settings, prepared, metrics_dir=made)
    return 0


def _prepare_store(settings: Settings):
    """Migrate the store and write the rules to it, once, before the workers start.

    Returns app.PreloadedRules (or None without a rules file), or the message to stop with.
    """
    from sidecar.preload import preload_rules
    from sidecar.store import db as store_db

    where = database_url(settings.database)
    try:
        store_db.bind(settings.database)
    except Exception as exc:
        return f"sidecar: cannot open database {where}: {exc}"
    try:
        return preload_rules(settings)
    except RulesError as exc:
        return f"sidecar: rules file refused:\n{exc}"
    except OSError as exc:
        return f"sidecar: cannot read rules file {settings.rules}: {exc.strerror}"
    except Exception as exc:  # the database refused the write
        return f"sidecar: cannot store the rules in {where}: {exc}"


def cmd_check_rules(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.file)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    policies = sum(len(p.policies) for p in rules.projects)
    scanners = f", {len(rules.scanners)} scanners" if rules.scanners else ""
    replication = (f", {len(rules.registries)} registries, {len(rules.replication)} "
                   "replication policies") if rules.registries or rules.replication else ""
    print(f"{args.file}: OK, {len(rules.projects)} projects, {policies} webhook policies"
          f"{scanners}{replication}")
    return 0


def _open_store(args: argparse.Namespace) -> None:
    """Bind the store named by --database, or by --config's harbor.yml, or the default."""
    from sidecar.store import db as store_db

    settings = load_settings(args.config).replace(database=args.database)
    store_db.bind(settings.database)


def _store_or_fail(args: argparse.Namespace) -> bool:
    try:
        _open_store(args)
    except ConfigError as exc:
        print(f"sidecar: configuration error: {exc}", file=sys.stderr)
        return False
    except Exception as exc:
        url = args.database or "(from configuration)"
        print(f"sidecar: cannot open database {database_url(url)}: {exc}", file=sys.stderr)
        return False
    return True


def _print_json(value) -> None:
    import json

    print(json.dumps(value, indent=2, default=str))


def cmd_status(args: argparse.Namespace) -> int:
    from sidecar.cli.report_text import status_text

    if args.url:
        import requests

        try:
            # the status is the admin's: the password of --config's harbor.yml (or its
            # default), unless the sidecar serves it publicly (sidecar.public_status)
            password = load_settings(args.config).admin_password
            response = requests.get(args.url.rstrip("/") + "/sidecar/status",
                                    params=_policy_params(args),
                                    headers={"Accept": "application/json"}, timeout=10,
                                    auth=("admin", password))
            response.raise_for_status()
            status = response.json()
        except ConfigError as exc:
            print(f"sidecar: configuration error: {exc}", file=sys.stderr)
            return 2
        except (requests.RequestException, ValueError) as exc:
            print(f"sidecar: cannot read status from {args.url}: {exc}", file=sys.stderr)
            return 1
    else:
        if not _store_or_fail(args):
            return 2
        from sidecar.api.ops.report import job_sections
        from sidecar.api.ops.report import status_json
        from sidecar.store.status_report import PolicyQuery
        from sidecar.store.status_report import status_report
        from sidecar.store.views import Page

        query = PolicyQuery(project=args.project or "", policy=args.policy or "",
                            page=Page(max(args.page, 1), min(max(args.page_size, 1), 100)))
        status = status_json(status_report(limit=args.limit, policies=query))
        status.update(job_sections())
        settings = load_settings(args.config)
        status["upstream"] = {"url": redact_address(settings.upstream),
                              "healthy": _upstream_healthy(settings.upstream)}
    if args.json:
        _print_json(status)
    else:
        print(status_text(status))
    return 0


def _policy_params(args: argparse.Namespace) -> dict[str, str]:
    """The policy page `sidecar status` asks /sidecar/status for (Harbor's page/page_size)."""
    params = {"page": str(args.page), "page_size": str(args.page_size)}
    if args.project:
        params["project"] = args.project
    if args.policy:
        params["policy"] = args.policy
    return params


def _upstream_healthy(url: str) -> bool | None:
    from sidecar.proxy.upstream import Upstream

    try:
        return Upstream(url, connect_timeout=2.0, read_timeout=5.0).healthy()
    except ValueError:
        return None


def cmd_deliveries(args: argparse.Namespace) -> int:
    if not _store_or_fail(args):
        return 2
    from sidecar.api.ops.report import delivery_json
    from sidecar.cli.report_text import deliveries_table
    from sidecar.store.delivery_history import list_deliveries

    views = list_deliveries(failed=args.failed, policy=args.policy, project=args.project,
                            limit=args.limit, with_history=args.json)
    rows = [delivery_json(view, with_history=args.json) for view in views]
    if args.json:
        _print_json(rows)
    else:
        print(deliveries_table(rows))
    return 0


def cmd_reenable(args: argparse.Namespace) -> int:
    if not _store_or_fail(args):
        return 2
    from sidecar.store.target_health import reenable_and_replay

    reenabled, replayed = reenable_and_replay(args.policy_id, args.replay)
    if args.json:
        _print_json({"reenabled": reenabled, "replayed": replayed})
    elif not reenabled:
        print(f"policy {args.policy_id} has no disabled target")
    else:
        print(f"policy {args.policy_id}: {reenabled} target(s) re-enabled"
              + (f", {replayed} skipped deliveries queued again" if args.replay else
                 " (sidecar replay --skipped --policy-id ... sends what was skipped)"))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    if not args.ids and not args.failed and not args.skipped:
        print("sidecar replay: give delivery IDs, --failed or --skipped", file=sys.stderr)
        return 2
    if args.policy_id is not None and not args.skipped:
        print("sidecar replay: --policy-id goes with --skipped", file=sys.stderr)
        return 2
    if args.since and not args.failed:
        print("sidecar replay: --since goes with --failed", file=sys.stderr)
        return 2
    try:
        since = parse_duration(args.since) if args.since else None
    except ValueError as exc:
        print(f"sidecar replay: {exc}", file=sys.stderr)
        return 2
    if not _store_or_fail(args):
        return 2
    from sidecar.api.ops.report import replay_json
    from sidecar.cli.report_text import replay_text
    from sidecar.store.delivery_history import replay

    result = replay_json(replay(args.ids, failed=args.failed, since=since,
                                skipped_ones=args.skipped, policy_id=args.policy_id))
    if args.json:
        _print_json(result)
    else:
        print(replay_text(result))
    return 1 if result["skipped"] and not result["requeued"] else 0


def _store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="harbor.yml naming the database")
    parser.add_argument("--database",
                        help="sqlite:///PATH or postgresql://... (overrides --config)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sidecar", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the proxy and the webhook dispatcher")
    serve.add_argument("--config", help="harbor.yml with the keys we honour and a sidecar: section")
    serve.add_argument("--rules", help="rules file with projects and webhook policies")
    serve.add_argument("--upstream", help="registry URL, e.g. http://127.0.0.1:5000")
    serve.add_argument("--bind", help="HOST:PORT to listen on")
    serve.add_argument("--database", help="sqlite:///PATH (default) or postgresql://...")
    serve.add_argument("--workers", type=int, help="gunicorn worker processes")
    serve.add_argument("--hostname", help="host[:port] clients pull from (resource_url)")
    serve.add_argument("--chart-upstream", help="ChartMuseum-compatible chart server URL, "
                       "e.g. http://127.0.0.1:8081 (enables the chart routes)")
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-rules", help="validate a rules file (exit 1 on errors)")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_rules)
    endpoint_check.add_parser(sub)
    scan_command.add_parser(sub)
    replicate_command.add_parser(sub)
    retention_command.add_parser(sub)

    status = sub.add_parser("status", help="upstream, queue, endpoints, policies, deliveries")
    status.add_argument("--url", help="a running sidecar, e.g. http://127.0.0.1:8080 "
                        "(otherwise read the store directly)")
    _store_args(status)
    status.add_argument("--limit", type=int, default=20, help="recent deliveries to show")
    status.add_argument("--project", help="detail this project's policies")
    status.add_argument("--policy", help="detail this policy (NAME or PROJECT/NAME)")
    status.add_argument("--page", type=int, default=1, help="page of policies to show")
    status.add_argument("--page-size", type=int, default=20,
                        help="policies per page (at most 100)")
    status.set_defaults(func=cmd_status)

    deliveries = sub.add_parser("deliveries", help="list deliveries, newest first")
    deliveries.add_argument("--failed", action="store_true", help="only failed ones")
    deliveries.add_argument("--policy", help="policy NAME or PROJECT/NAME")
    deliveries.add_argument("--project", help="only this project")
    deliveries.add_argument("--limit", type=int, default=50)
    _store_args(deliveries)
    deliveries.set_defaults(func=cmd_deliveries)

    replay = sub.add_parser("replay", help="send finished deliveries again (history is kept)")
    replay.add_argument("ids", nargs="*", type=int, metavar="ID")
    replay.add_argument("--failed", action="store_true", help="every failed delivery")
    replay.add_argument("--since", help="with --failed: only those that failed within "
                        "DURATION (e.g. 10m, 2h, 1d)")
    replay.add_argument("--skipped", action="store_true",
                        help="every delivery skipped while its target was disabled")
    replay.add_argument("--policy-id", type=int, help="with --skipped: only this policy's")
    _store_args(replay)
    replay.set_defaults(func=cmd_replay)

    reenable = sub.add_parser(
        "reenable", help="re-enable a policy's targets disabled after failing too long "
        "(sidecar.delivery.auto_disable_after)")
    reenable.add_argument("policy_id", type=int, metavar="POLICY_ID")
    reenable.add_argument("--replay", action="store_true",
                          help="also queue the deliveries skipped while they were disabled")
    _store_args(reenable)
    reenable.set_defaults(func=cmd_reenable)

    quota_commands.add_parser(sub, _store_args, _store_or_fail)  # storage quotas (issue 10)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
