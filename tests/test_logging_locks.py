"""Logging from the database threads and from greenlets at once never hangs a worker.

gevent's patching makes logging's locks gevent locks, which lose wake-ups between OS threads:
a proxied DELETE then waited for ever on a handler lock that a database thread had held
(seen with debug logging). `sidecar.serve.native_logging_locks` is what the workers run; the
check runs in a child process because gevent's patching cannot be undone. (Without that call
the same script hangs every time here: gevent 26.9.)
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    from gevent import monkey; monkey.patch_all()
    import logging, gevent
    from gevent.threadpool import ThreadPool
    logging.basicConfig(level=logging.DEBUG, stream=open("/dev/null", "w"))
    if sys.argv[1] == "native":
        from sidecar.serve import native_logging_locks
        native_logging_locks()
    log = logging.getLogger("sidecar.test")
    def native():  # a database thread (store.executor) logging its queries
        for i in range(20000):
            log.debug("native %d", i)
    def green():  # requests being proxied, logging as they go
        for i in range(20000):
            log.debug("green %d", i)
            if i % 50 == 0:
                gevent.sleep(0)
    pool = ThreadPool(2)
    jobs = [pool.spawn(native), pool.spawn(native)] + [gevent.spawn(green) for _ in range(4)]
    gevent.joinall(jobs, timeout=15)
    print("done" if all(job.ready() for job in jobs) else "hung")
""")


def run(mode: str) -> str:
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                          text=True, timeout=60).stdout.strip()


def test_threads_and_greenlets_logging_together_finish():
    assert run("native") == "done"

