/* The pure parts of the PostgreSQL pool (SQLSTATE mapping, libpq's
 * parameters, the SQLSTATE of a handshake's message) and the pool facing a
 * server that is not there: refused, or silent. The pool against a real
 * PostgreSQL is tested in tests/integration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "store/pg_pool.h"

#define PASSWORD "pw 'with' \\ quotes-7777"

static void test_sqlstate_map(void **state)
{
	static const struct {
		const char *code;
		enum mn_err err;
		bool broken, gone;
		enum store_fault fault;
		const char *client;
	} cases[] = {
		{"23505", MN_CONFLICT, false, false, STORE_FAULT_NONE, "conflict"},
		{NULL, MN_UNAVAILABLE, true, true, STORE_FAULT_NONE, "the database is unavailable"},
		{"", MN_UNAVAILABLE, true, true, STORE_FAULT_NONE, "the database is unavailable"},
		{"08006", MN_UNAVAILABLE, true, true, STORE_FAULT_NONE,
		 "the database is unavailable"},
		{"08001", MN_UNAVAILABLE, true, true, STORE_FAULT_NONE,
		 "the database is unavailable"},
		{"57P01", MN_UNAVAILABLE, true, true, STORE_FAULT_NONE,
		 "the database is unavailable"},
		{"57P02", MN_UNAVAILABLE, true, true, STORE_FAULT_NONE,
		 "the database is unavailable"},
		{"57P03", MN_UNAVAILABLE, true, true, STORE_FAULT_NONE,
		 "the database is unavailable"},
		{"57014", MN_UNAVAILABLE, false, false, STORE_FAULT_NONE,
		 "the database is unavailable"},
		{"40001", MN_UNAVAILABLE, false, false, STORE_FAULT_NONE,
		 "the database is busy; try again"},
		{"40P01", MN_UNAVAILABLE, false, false, STORE_FAULT_NONE,
		 "the database is busy; try again"},
		{"55P03", MN_UNAVAILABLE, false, false, STORE_FAULT_NONE,
		 "the database is busy; try again"},
		{"53300", MN_UNAVAILABLE, false, false, STORE_FAULT_NONE,
		 "the database is unavailable"},
		{"53100", MN_UNAVAILABLE, false, false, STORE_FAULT_DISK_FULL,
		 "the store cannot write: disk full"},
		{"25006", MN_UNAVAILABLE, false, false, STORE_FAULT_READ_ONLY,
		 "the store cannot write: read-only"},
		{"58030", MN_UNAVAILABLE, false, false, STORE_FAULT_IO,
		 "the store cannot write: input/output error"},
		{"28P01", MN_CONFIG, true, false, STORE_FAULT_NONE, "the database is unavailable"},
		{"28000", MN_CONFIG, true, false, STORE_FAULT_NONE, "the database is unavailable"},
		{"3D000", MN_CONFIG, true, false, STORE_FAULT_NONE, "the database is unavailable"},
		{"23502", MN_INTERNAL, false, false, STORE_FAULT_NONE, "internal error"},
		{"42P01", MN_INTERNAL, false, false, STORE_FAULT_NONE, "internal error"},
		{"XX000", MN_INTERNAL, false, false, STORE_FAULT_NONE, "internal error"},
	};
	struct pg_failure f;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		pg_sqlstate_map(cases[i].code, &f);
		if (f.err != cases[i].err || f.broken != cases[i].broken ||
		    f.server_gone != cases[i].gone || f.fault != cases[i].fault ||
		    strcmp(f.client, cases[i].client) != 0)
			print_error("sqlstate %s\n", cases[i].code ? cases[i].code : "(none)");
		assert_int_equal(f.err, cases[i].err);
		assert_int_equal(f.broken, cases[i].broken);
		assert_int_equal(f.server_gone, cases[i].gone);
		assert_int_equal(f.fault, cases[i].fault);
		assert_string_equal(f.client, cases[i].client);
		/* a client's reason never holds the code or libpq's words */
		assert_null(strstr(f.client, "ERROR"));
	}
}

/* A holder's own deadline (server.read_timeout_ms) passing breaks only its
 * connection; the statement's deadline passing means the server is gone. */
static void test_timeout_map(void **state)
{
	struct pg_failure f;

	(void)state;
	pg_timeout_map(true, &f);
	assert_int_equal(f.err, MN_UNAVAILABLE);
	assert_true(f.broken);
	assert_false(f.server_gone);
	assert_int_equal(f.fault, STORE_FAULT_NONE);
	assert_string_equal(f.client, "the database is busy; try again");

	pg_timeout_map(false, &f);
	assert_int_equal(f.err, MN_UNAVAILABLE);
	assert_true(f.broken);
	assert_true(f.server_gone);
	assert_string_equal(f.client, "the database is unavailable");
}

static void test_message_sqlstate(void **state)
{
	char s[6];

	(void)state;
	assert_true(pg_message_sqlstate("connection to server at \"127.0.0.1\", port 5432 failed: "
					"FATAL:  28P01: password authentication failed for user "
					"\"app\"\n",
					s));
	assert_string_equal(s, "28P01");
	/* one line per address tried: the first with a code */
	assert_true(pg_message_sqlstate(
		"connection to server at \"localhost\" (::1), port 5432 failed: Connection "
		"refused\n"
		"\tIs the server running on that host and accepting TCP/IP connections?\n"
		"connection to server at \"localhost\" (127.0.0.1), port 5432 failed: FATAL:  "
		"3D000: database \"x\" does not exist\n",
		s));
	assert_string_equal(s, "3D000");
	assert_true(pg_message_sqlstate("ERROR:  57P03: the database system is starting up", s));
	assert_string_equal(s, "57P03");
	assert_false(pg_message_sqlstate("fe_sendauth: no password supplied\n", s));
	assert_false(pg_message_sqlstate("connection to server at \"h\", port 1 failed: "
					 "Connection refused",
					 s));
	assert_false(pg_message_sqlstate("FATAL:  password authentication failed", s));
	assert_false(pg_message_sqlstate("FATAL:  28p01: lower case is no code", s));
	assert_false(pg_message_sqlstate("FATAL:  28P0", s));
	assert_false(pg_message_sqlstate("", s));
	assert_false(pg_message_sqlstate(NULL, s));
}

static const char *param(const struct pg_params *p, const char *key)
{
	for (size_t i = 0; p->keys[i]; i++)
		if (strcmp(p->keys[i], key) == 0)
			return p->values[i];
	return NULL;
}

/* Values go to libpq as they are: a space, a quote or a backslash needs
 * no escaping and cannot add a parameter (expand_dbname is 0, so even a
 * URI as database name is a name). */
static void test_params(void **state)
{
	struct pg_pool_opts o = {
		.host = "db host",
		.port = 6432,
		.user = "o'brien",
		.password = PASSWORD,
		.dbname = "postgresql://evil/x?sslmode=disable",
		.sslmode = "verify-full",
		.pool_size = 8,
		.connect_timeout_ms = 1500,
		.statement_timeout_ms = 5000,
	};
	struct pg_params p;
	size_t n = 0;

	(void)state;
	pg_params_build(&o, &p);
	while (p.keys[n])
		n++;
	assert_true(n <= PG_PARAMS_MAX);
	assert_null(p.values[n]);
	assert_string_equal(param(&p, "host"), "db host");
	assert_string_equal(param(&p, "port"), "6432");
	assert_string_equal(param(&p, "user"), "o'brien");
	assert_string_equal(param(&p, "password"), PASSWORD);
	assert_string_equal(param(&p, "dbname"), "postgresql://evil/x?sslmode=disable");
	assert_string_equal(param(&p, "sslmode"), "verify-full");
	assert_string_equal(param(&p, "application_name"), "meshnode");
	assert_string_equal(param(&p, "client_encoding"), "UTF8");
	/* the handshake's deadline is the pool's, in milliseconds, and
	 * statement_timeout is set after it, so a role's lower one stays */
	assert_null(param(&p, "connect_timeout"));
	assert_null(param(&p, "options"));

	/* no password: libpq's own sources (PGPASSWORD, ~/.pgpass) decide */
	o.password = "";
	pg_params_build(&o, &p);
	assert_null(param(&p, "password"));
}

static void test_describe_and_config(void **state)
{
	struct pg_pool_opts o = {.host = "localhost",
				 .port = 5432,
				 .user = "postgres",
				 .password = PASSWORD,
				 .dbname = "myapp"};
	char host[] = "h", user[] = "u", pw[] = "p", name[] = "d", mode[] = "require";
	struct config cfg = {
		.database_host = host,
		.database_port = 7,
		.database_user = user,
		.database_password = pw,
		.database_name = name,
		.database_sslmode = mode,
		.database_pool_size = 3,
		.database_connect_timeout_ms = 250,
		.database_acquire_timeout_ms = 700,
		.database_max_waiters = 9,
		.read_timeout_ms = 4000,
	};
	char text[200];

	(void)state;
	pg_describe(&o, text, sizeof(text));
	assert_string_equal(text, "postgres database 'myapp' at localhost:5432 as user 'postgres'");
	pg_pool_opts_from_config(&cfg, &o);
	assert_string_equal(o.host, "h");
	assert_int_equal(o.port, 7);
	assert_string_equal(o.user, "u");
	assert_string_equal(o.password, "p");
	assert_string_equal(o.dbname, "d");
	assert_string_equal(o.sslmode, "require");
	assert_int_equal(o.pool_size, 3);
	assert_int_equal(o.connect_timeout_ms, 250);
	/* waiting and statement together within server.read_timeout_ms */
	assert_int_equal(o.acquire_timeout_ms, 700);
	assert_int_equal(o.max_waiters, 9);
	assert_int_equal(o.request_timeout_ms, 4000);
	assert_int_equal(o.statement_timeout_ms, 3050);
	assert_int_equal(pg_statement_timeout_ms(5000, 1000), 3750);
	assert_int_equal(pg_statement_timeout_ms(1000, 1000), PG_POOL_MIN_STATEMENT_MS);
}

/* ---- a server that is not there --------------------------------------- */

struct fixture {
	char dir[64];
	char log[96];
	int log_fd;
	int listener; /* a port that accepts and never answers, or -1 */
	int port;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	*state = f;
	if (f == NULL)
		return -1;
	f->listener = -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/meshnode-pg.XXXXXX");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->log, sizeof(f->log), "%s/log", f->dir);
	f->log_fd = open(f->log, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	if (f->log_fd < 0)
		return -1;
	log_set_fd(f->log_fd);
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	log_set_fd(2);
	close(f->log_fd);
	if (f->listener >= 0)
		close(f->listener);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* A loopback port: listening ('listen') or closed (refused). */
static int loopback_port(struct fixture *f, bool listen_on)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	if (listen_on) {
		assert_int_equal(listen(fd, 16), 0);
		f->listener = fd;
	} else {
		close(fd); /* nothing listens there now */
	}
	return ntohs(a.sin_port);
}

static const char *read_log(struct fixture *f)
{
	static char text[16384];
	FILE *fp = fopen(f->log, "r");
	size_t n = fp ? fread(text, 1, sizeof(text) - 1, fp) : 0;

	if (fp)
		fclose(fp);
	text[n] = '\0';
	return text;
}

static struct pg_pool_opts opts_for(int port, int connect_timeout_ms)
{
	return (struct pg_pool_opts){
		.host = "127.0.0.1",
		.port = port,
		.user = "app",
		.password = PASSWORD,
		.dbname = "myapp",
		.sslmode = "disable",
		.pool_size = 4,
		.connect_timeout_ms = connect_timeout_ms,
		.statement_timeout_ms = 1000,
	};
}

/* Refused: the node would serve; requests fail at once, /ready says the
 * database is unreachable, and nothing anywhere holds the password. */
static void test_server_refuses(void **state)
{
	struct fixture *f = *state;
	struct pg_pool_opts o = opts_for(loopback_port(f, false), 2000);
	struct pg_pool *p = pg_pool_create(&o);
	struct pg_conn *c = (struct pg_conn *)1;
	char err[1024] = "", want[128];
	uint64_t t0;

	assert_non_null(p);
	assert_int_equal(pg_pool_start(p, err, sizeof(err)), MN_UNAVAILABLE);
	assert_non_null(strstr(err, "postgres database 'myapp' at 127.0.0.1:"));
	assert_non_null(strstr(err, "as user 'app'"));
	assert_non_null(strstr(err, "Connection refused"));
	assert_null(strstr(err, "7777"));

	t0 = clock_monotonic_ms();
	assert_int_equal(pg_pool_acquire(p, &c, err, sizeof(err)), MN_UNAVAILABLE);
	assert_true(clock_monotonic_ms() - t0 < 100);
	assert_null(c);
	assert_string_equal(err, "the database is unavailable");

	assert_int_equal(pg_pool_ping(p, err, sizeof(err)), MN_UNAVAILABLE);
	snprintf(want, sizeof(want), "database unreachable at 127.0.0.1:%d", o.port);
	assert_string_equal(err, want);

	/* the thread tries again meanwhile; unref stops it */
	clock_sleep_ms(400);
	pg_pool_unref(p);
	assert_null(strstr(read_log(f), "7777"));

	assert_int_equal(pg_pool_check(&o, err, sizeof(err)), MN_UNAVAILABLE);
	assert_non_null(strstr(err, "cannot connect"));
	assert_null(strstr(err, "7777"));
}

/* A port that takes the connection and never answers: the handshake ends
 * at connect_timeout_ms, in milliseconds. */
static void test_server_silent(void **state)
{
	struct fixture *f = *state;
	struct pg_pool_opts o = opts_for(loopback_port(f, true), 300);
	struct pg_pool *p = pg_pool_create(&o);
	char err[1024] = "";
	uint64_t t0, ms;

	assert_non_null(p);
	t0 = clock_monotonic_ms();
	assert_int_equal(pg_pool_start(p, err, sizeof(err)), MN_UNAVAILABLE);
	ms = clock_monotonic_ms() - t0;
	assert_true(ms >= 290 && ms < 1000);
	assert_non_null(strstr(err, "no answer within 300 ms (database.connect_timeout_ms)"));
	pg_pool_unref(p);
	assert_null(strstr(read_log(f), "7777"));
}

/* A silent server with a long connect_timeout_ms: the start does not wait
 * for it (the pool's thread does), and closing the pool gives up the
 * handshake in progress at once. */
static void test_silent_server_does_not_hold_the_start(void **state)
{
	struct fixture *f = *state;
	struct pg_pool_opts o = opts_for(loopback_port(f, true), 30000);
	struct pg_pool *p = pg_pool_create(&o);
	struct pg_conn *c = (struct pg_conn *)1;
	char err[1024] = "";
	uint64_t t0, ms;

	assert_non_null(p);
	t0 = clock_monotonic_ms();
	assert_int_equal(pg_pool_start(p, err, sizeof(err)), MN_UNAVAILABLE);
	ms = clock_monotonic_ms() - t0;
	assert_true(ms >= PG_POOL_START_WAIT_MS - 10 && ms < PG_POOL_START_WAIT_MS + 1000);
	assert_non_null(strstr(err, "connecting in the background"));
	assert_int_equal(pg_pool_acquire(p, &c, err, sizeof(err)), MN_UNAVAILABLE);
	assert_null(c);
	assert_int_equal(pg_pool_ping(p, err, sizeof(err)), MN_UNAVAILABLE);
	assert_non_null(strstr(err, "not connected yet"));
	t0 = clock_monotonic_ms();
	pg_pool_unref(p);
	assert_true(clock_monotonic_ms() - t0 < 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sqlstate_map),
		cmocka_unit_test(test_timeout_map),
		cmocka_unit_test(test_message_sqlstate),
		cmocka_unit_test(test_params),
		cmocka_unit_test(test_describe_and_config),
		cmocka_unit_test_setup_teardown(test_server_refuses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_silent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_silent_server_does_not_hold_the_start, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
