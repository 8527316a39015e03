"""`sidecar` command line: serve, check-rules."""

from __future__ import annotations

import argparse
import logging
import sys

from sidecar import __version__
from sidecar.config import ConfigError
from sidecar.config import Settings
from sidecar.config import load_settings
from sidecar.config import validate
from sidecar.rules.load import RulesError
from sidecar.rules.load import load_rules


def _settings_from(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    settings = settings.replace(
        rules=args.rules, upstream=args.upstream, bind=args.bind, database=args.database,
        workers=args.workers, hostname=getattr(args, "hostname", None),
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
    if settings.rules:
        try:
            load_rules(settings.rules)
        except RulesError as exc:
            print(f"sidecar: rules file refused:\n{exc}", file=sys.stderr)
            return 2
    from sidecar.store import db as store_db

    try:
        store_db.bind(settings.database)
    except Exception as exc:
        print(f"sidecar: cannot open database {store_db.redacted_url(settings.database)}: {exc}",
              file=sys.stderr)
        return 2
    from sidecar.serve import run

    run(settings)
    return 0


def cmd_check_rules(args: argparse.Namespace) -> int:
    try:
        rules = load_rules(args.file)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    policies = sum(len(p.policies) for p in rules.projects)
    print(f"{args.file}: OK, {len(rules.projects)} projects, {policies} webhook policies")
    return 0


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
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check-rules", help="validate a rules file (exit 1 on errors)")
    check.add_argument("file")
    check.set_defaults(func=cmd_check_rules)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
