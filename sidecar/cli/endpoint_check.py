"""`sidecar test-endpoint URL`: send one sample event to an endpoint, as a policy would.

The target is validated exactly as a policy's (same messages), rendered by the dispatcher's
renderer (format, auth header, signature) and sent once by dispatch.probe: bounded timeout, no
redirect to another host, nothing printed of the auth header or the answer's body.
Exit 0 when the endpoint answered 2xx, 1 when it did not, 2 when the target is invalid.
"""

from __future__ import annotations

import argparse
import os
import sys

from sidecar.config import ConfigError
from sidecar.config import load_settings
from sidecar.dispatch import formats
from sidecar.dispatch.addresses import AddressPolicy
from sidecar.rules.policy import parse_policy


def add_parser(sub) -> None:
    """Register the subcommand on `sidecar`'s subparsers."""
    parser = sub.add_parser(
        "test-endpoint",
        help="send a sample PUSH_ARTIFACT event to URL and report status code and latency",
    )
    parser.add_argument("url")
    parser.add_argument("--type", choices=formats.target_types(), default="http")
    parser.add_argument("--format", choices=formats.payload_formats(), default=None,
                        help="payload format of an http target (default: Default)")
    for name, owners in formats.option_owners().items():  # --cloudevents-mode, ...
        choices = tuple(dict.fromkeys(v for row in owners for v in row.options[name]))
        parser.add_argument("--" + name.replace("_", "-"), dest=name, choices=choices,
                            default=None)
    parser.add_argument("--auth-header", default=None,
                        help="sent verbatim as Authorization (http targets)")
    parser.add_argument("--auth-header-env", metavar="VAR", default=None,
                        help="read the auth header from this environment variable instead "
                             "(keeps it out of the process list)")
    parser.add_argument("--secret-env", metavar="VAR", default=None,
                        help="environment variable holding a whsec_ signing secret")
    parser.add_argument("--skip-cert-verify", action="store_true")
    parser.add_argument("--project", default="library", help="project of the sample event")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds (default: notification.webhook_job_http_client_timeout "
                             "from --config, else 3; at most 10)")
    parser.add_argument("--config", help="harbor.yml for the timeout, hostname and "
                        "network.allow_private_network_access")
    parser.set_defaults(func=cmd_test_endpoint)


def _target(args: argparse.Namespace) -> dict:
    target: dict = {"type": args.type, "address": args.url,
                    "skip_cert_verify": args.skip_cert_verify}
    if args.format:
        target["payload_format"] = args.format
    for name in formats.option_owners():
        if getattr(args, name, None):
            target[name] = getattr(args, name)
    auth = args.auth_header
    if args.auth_header_env:
        auth = os.environ.get(args.auth_header_env, "")
    if auth:
        target["auth_header"] = auth
    if args.secret_env:
        target["secret"] = os.environ.get(args.secret_env, "")
    return target


def cmd_test_endpoint(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"sidecar: configuration error: {exc}", file=sys.stderr)
        return 2
    policy, problems = parse_policy(
        {"name": "test-endpoint", "event_types": ["PUSH_ARTIFACT"], "targets": [_target(args)]},
        allow_unknown=True,
    )
    if problems:
        for problem in problems:
            print(f"sidecar test-endpoint: {problem.message}", file=sys.stderr)
        return 2
    target = policy.targets[0]
    timeout = args.timeout or settings.webhook_job_http_client_timeout
    # here, not at the top: `sidecar serve`'s master parses the same command line and must
    # not import the sender (requests, cloudevents) it never uses
    from sidecar.dispatch.probe import probe
    from sidecar.dispatch.probe import sample_event

    payload = sample_event(args.project, settings.hostname or "registry.example.com")
    addresses = AddressPolicy.of(settings.allow_private_network_access,
                                 settings.webhook_allowed_networks)
    result = probe(target, payload, timeout, addresses=addresses)
    kind = target.type + (f", {target.payload_format}" if target.payload_format else "")
    where = f"POST {args.url} ({kind})"
    if result.ok:
        print(f"{where}: {result.status_code} in {result.latency_ms} ms")
        return 0
    code = f"{result.status_code} " if result.status_code is not None else ""
    print(f"{where}: {code}FAILED in {result.latency_ms} ms: {result.error}")
    return 1
