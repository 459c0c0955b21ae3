"""The repository contract tests on PostgreSQL: the cmocka programs
tests/unit/store/test_users_repo.c and test_orders_repo.c run the same
tests on the memory, SQLite and PostgreSQL drivers; their PostgreSQL group
runs only when MESHNODE_TEST_PG names a database (a libpq conninfo), which
this file sets to a database of a real PostgreSQL 15 (pgserver.PgServer).
Each program runs twice: without MESHNODE_TEST_PG (the group is skipped,
and says how many tests it has) and with it, where every test must pass
and the passed count must grow by exactly the group's size.

The programs are those of the build that made MESHNODE_BIN
(<build>/tests/store/), built by `make unit-build` (`make test` does)."""

import os
import re
import subprocess
import unittest

import harness
import pgserver

POSTGRES = None  # the module's server (conftest.py)

PASSED = re.compile(r"^\[  PASSED  \] (\d+) test", re.M)
SKIPPED = re.compile(r"PostgreSQL group skipped \((\d+) tests\)")


def contract_program(name):
    return os.path.join(os.path.dirname(harness.meshnode_binary()), "tests", "store", name)


class StoreContractOnPostgres(unittest.TestCase):
    def run_program(self, path, conninfo):
        env = dict(os.environ)
        env.pop("MESHNODE_TEST_PG", None)
        if conninfo:
            env["MESHNODE_TEST_PG"] = conninfo
        proc = subprocess.run([path], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=600)
        out = proc.stdout.decode("utf-8", "replace")
        self.assertEqual(proc.returncode, 0, out[-4000:])
        return out

    def check(self, program):
        path = contract_program(program)
        if not os.access(path, os.X_OK):
            self.skipTest("%s not built (make unit-build)" % path)
        db = program.replace("test_", "contract_")
        POSTGRES.drop_database(db)
        POSTGRES.create_database(db)
        conninfo = "host=%s port=%d user=%s password=%s dbname=%s" % (
            POSTGRES.host, POSTGRES.port, pgserver.SUPERUSER,
            pgserver.SUPERUSER_PASSWORD, db)

        without = self.run_program(path, None)
        skipped = SKIPPED.search(without)
        self.assertIsNotNone(skipped, without[-2000:])
        n_pg = int(skipped.group(1))
        self.assertGreater(n_pg, 0)
        base = int(PASSED.findall(without)[-1])

        with_pg = self.run_program(path, conninfo)
        self.assertNotIn("PostgreSQL group skipped", with_pg)
        self.assertEqual(int(PASSED.findall(with_pg)[-1]), base + n_pg, with_pg[-4000:])
        # the group wrote to this server: the last test's rows are there
        rows = POSTGRES.scalar(
            "SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM orders)", db=db)
        self.assertGreater(int(rows), 0)

    def test_users_repo_contract(self):
        self.check("test_users_repo")

    def test_orders_repo_contract(self):
        self.check("test_orders_repo")
