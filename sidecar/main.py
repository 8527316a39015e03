"""Console entry point of the `sidecar` command.

`sidecar serve` runs gevent workers. gevent must patch the standard library before `ssl`,
`socket` and friends are imported anywhere, or modules that captured the originals (urllib3,
requests) keep blocking TLS sockets that freeze a whole worker while a webhook endpoint answers
over HTTPS. The CLI's imports reach requests, so serving patches first, here, before them.
"""

from __future__ import annotations

import sys


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        from gevent import monkey

        monkey.patch_all()
    from sidecar.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
