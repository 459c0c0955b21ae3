"""One throwaway PostgreSQL 15 for a bench script, started the way the
tests start theirs (tests/integration/pgserver.py):

    /usr/bin/python3 bench/pg_serve.py INFO_FILE [DATABASE] &

It makes role and database DATABASE (default `bench`, password the same),
writes "<host> <port> <seconds from spawn to ready>" to INFO_FILE once the
server accepts connections, and then waits for SIGTERM, SIGINT or SIGHUP:
fast shutdown, the server's temp directory removed, exit 0. A failure to
start exits 1 with the reason on stderr and no INFO_FILE."""

import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "tests", "integration"))

import harness  # noqa: E402
import pgserver  # noqa: E402


def main():
    if len(sys.argv) not in (2, 3):
        sys.stderr.write(__doc__)
        return 2
    info = sys.argv[1]
    db = sys.argv[2] if len(sys.argv) == 3 else "bench"
    stop = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP}
    # blocked before anything starts, so a signal at any moment still
    # reaches the stop below (and kill_all at exit) instead of killing us
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        pg = pgserver.PgServer(label="postgres (bench)")
        pg.create_role_with_password(db, db)
        pg.create_database(db, owner=db)
    except (pgserver.PgError, harness.WaitTimeout) as e:
        sys.stderr.write("pg_serve: %s\n" % e)
        harness.kill_all()
        return 1
    with open(info + ".tmp", "w") as f:
        f.write("%s %d %.2f\n" % (pg.host, pg.port, pg.startup_seconds))
    os.rename(info + ".tmp", info)
    signal.sigwait(stop)
    pg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
