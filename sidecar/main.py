"""Console entry point of the `sidecar` command.

`sidecar serve` runs gevent workers. gevent must patch the standard library before modules
that capture `ssl` and `socket` names (urllib3, requests) are imported, or they keep blocking
TLS sockets that freeze a whole worker while a webhook endpoint answers over HTTPS. Each
worker patches first thing in its own process (sidecar/server/lean.py), before it imports
the application; the master imports none of those modules and no gevent (issue 13: every
module in the master is in each forked worker's memory again). tests/test_master_imports.py
holds the master to that.
"""

from __future__ import annotations

import sys


def main() -> int:
    from sidecar.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
