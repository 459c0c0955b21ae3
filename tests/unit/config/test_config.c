#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config.h"
#include "../../../src/config/settings.h"
#include "small_stack.h"

#define MAX_FILES 8
/* The settings that are not templates (peers.*, features.*). */
#define N_SETTINGS 57
/* The settings of one configured peer (the peers.* rows). */
#define N_PEER_SETTINGS 10

struct fixture {
	char dir[64];
	char *files[MAX_FILES];
	size_t n_files;
	struct buf errors;
	struct buf warnings;
	struct config *cfg;
};

static int fixture_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/meshnode-config.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	buf_init(&f->errors, 1 << 16);
	buf_init(&f->warnings, 1 << 16);
	*state = f;
	return 0;
}

static int fixture_teardown(void **state)
{
	struct fixture *f = *state;

	for (size_t i = 0; i < f->n_files; i++) {
		unlink(f->files[i]);
		free(f->files[i]);
	}
	rmdir(f->dir);
	buf_release(&f->errors);
	buf_release(&f->warnings);
	config_destroy(f->cfg);
	free(f);
	return 0;
}

/* Writes 'text' to a file in the fixture's directory; the path stays valid
 * until teardown. */
static const char *write_file(struct fixture *f, const char *name, const char *text)
{
	char *path;
	FILE *fp;

	assert_true(f->n_files < MAX_FILES);
	assert_true(asprintf(&path, "%s/%s", f->dir, name) > 0);
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
	f->files[f->n_files++] = path;
	return path;
}

static const char *errors_text(struct fixture *f)
{
	return f->errors.data ? f->errors.data : "";
}

static const char *warnings_text(struct fixture *f)
{
	return f->warnings.data ? f->warnings.data : "";
}

static size_t count_lines(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		if (*s == '\n')
			n++;
	return n;
}

static enum mn_err load(struct fixture *f, struct config_sources *src)
{
	if (src->hostname == NULL)
		src->hostname = "host1";
	config_destroy(f->cfg);
	f->cfg = NULL;
	buf_reset(&f->errors);
	buf_reset(&f->warnings);
	return config_load(src, &f->cfg, &f->errors, &f->warnings);
}

static void load_ok(struct fixture *f, struct config_sources *src)
{
	enum mn_err err = load(f, src);

	if (err != MN_OK)
		print_error("errors:\n%s", errors_text(f));
	assert_int_equal(err, MN_OK);
	assert_non_null(f->cfg);
	assert_string_equal(errors_text(f), "");
}

/* Loads expecting MN_CONFIG and exactly one error line equal to 'line'. */
static void load_fails_with(struct fixture *f, struct config_sources *src, const char *line)
{
	char *want;

	assert_int_equal(load(f, src), MN_CONFIG);
	assert_null(f->cfg);
	assert_true(asprintf(&want, "%s\n", line) > 0);
	assert_string_equal(errors_text(f), want);
	free(want);
}

static void assert_entry(const struct config *cfg, const char *name, enum config_source src,
			 const char *origin)
{
	const struct config_entry *e = config_entry_find(cfg, name);

	if (e == NULL)
		print_error("no entry '%s'\n", name);
	assert_non_null(e);
	assert_string_equal(config_source_name(e->source), config_source_name(src));
	if (origin == NULL)
		assert_null(e->origin);
	else
		assert_string_equal(e->origin, origin);
}

static void test_defaults(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const struct config *cfg;
	const struct peer_settings *p;

	load_ok(f, &src);
	cfg = f->cfg;
	assert_string_equal(cfg->service_name, "users");
	assert_string_equal(cfg->service_id, "users-host1-8080");
	assert_string_equal(cfg->service_address, "127.0.0.1");
	assert_int_equal(cfg->service_port, 8080);
	assert_int_equal(cfg->n_service_tags, 0);
	assert_int_equal(cfg->n_service_meta, 0);
	assert_int_equal(cfg->n_service_modules, 1);
	assert_string_equal(cfg->service_modules[0], "users");
	assert_int_equal(cfg->read_timeout_ms, 5000);
	assert_int_equal(cfg->write_timeout_ms, 10000);
	assert_int_equal(cfg->idle_timeout_ms, 120000);
	assert_int_equal(cfg->threads, 512);
	assert_int_equal(cfg->max_body_bytes, 1048576);
	assert_int_equal(cfg->shutdown_timeout_ms, 10000);
	assert_string_equal(cfg->consul_address, "http://127.0.0.1:8500");
	assert_string_equal(cfg->consul_token, "");
	assert_string_equal(cfg->consul_kv_prefix, "config/users/");
	assert_false(cfg->consul_required);
	assert_int_equal(cfg->consul_check_interval_ms, 10000);
	assert_int_equal(cfg->consul_check_timeout_ms, 2000);
	assert_int_equal(cfg->consul_deregister_critical_after_ms, 60000);
	assert_int_equal(cfg->consul_kv_max_keys, 10000);
	assert_int_equal(cfg->consul_kv_max_bytes, 4194304);
	assert_int_equal(cfg->consul_watch_max_services, 32);
	assert_int_equal(cfg->consul_watch_max_bytes, 67108864);
	assert_int_equal(cfg->consul_watch_idle_ms, 600000);
	assert_int_equal(cfg->consul_watch_wait_ms, 30000);
	assert_string_equal(cfg->database_driver, "sqlite");
	assert_string_equal(cfg->database_path, "data/users.db");
	assert_string_equal(cfg->database_host, "localhost");
	assert_int_equal(cfg->database_port, 5432);
	assert_string_equal(cfg->database_user, "postgres");
	assert_string_equal(cfg->database_password, "");
	assert_string_equal(cfg->database_name, "myapp");
	assert_int_equal(cfg->database_pool_size, 8);
	assert_int_equal(cfg->database_connect_timeout_ms, 5000);
	assert_int_equal(cfg->database_acquire_timeout_ms, 1000);
	assert_int_equal(cfg->database_max_waiters, 128);
	assert_string_equal(cfg->database_sslmode, "prefer");
	assert_string_equal(cfg->log_level, "info");
	assert_string_equal(cfg->log_format, "json");
	/* the admin listener is off: everything on the service port */
	assert_string_equal(cfg->admin_address, "127.0.0.1");
	assert_int_equal(cfg->admin_port, 0);
	assert_int_equal(cfg->admin_threads, 8);
	assert_false(cfg->connect_enabled);
	assert_false(cfg->connect_authz_fail_open);
	assert_false(cfg->maintenance);
	assert_int_equal(cfg->n_peers, 0);
	assert_int_equal(cfg->n_features, 0);
	assert_int_equal(cfg->kv_index, 0);
	assert_int_equal(cfg->n_entries, N_SETTINGS);

	for (size_t i = 0; i < cfg->n_entries; i++) {
		assert_int_equal(cfg->entries[i].source, CONFIG_SRC_DEFAULT);
		assert_null(cfg->entries[i].origin);
		if (i > 0)
			assert_true(strcmp(cfg->entries[i - 1].name, cfg->entries[i].name) < 0);
	}
	assert_entry(cfg, "service.id", CONFIG_SRC_DEFAULT, NULL);

	p = config_peer_get(cfg, "users");
	assert_null(p->name);
	assert_int_equal(p->timeout_ms, 5000);
	assert_int_equal(p->retries, 2);
	assert_string_equal(p->lb, "round_robin");
	assert_string_equal(p->tag, "");
	assert_int_equal(p->breaker_failures, 5);
	assert_int_equal(p->breaker_open_ms, 10000);
	assert_int_equal(p->panic_threshold, 50);
	assert_false(config_feature_enabled(cfg, "beta"));
	assert_true(config_has_module(cfg, "users"));
	assert_false(config_has_module(cfg, "orders"));
	assert_string_equal(warnings_text(f), "");
}

/* Every setting set to a value of its own: each lands in its own field of
 * struct config or struct peer_settings (the rows' offsetof, checked here
 * against the fields by name), and the whole is freed without a leak. */
static const char file_every_setting[] =
	"admin = { address = \"127.0.0.3\"; port = 9182; threads = 5; };\n"
	"service = { name = \"orders-x\"; id = \"orders-x-1\"; address = \"127.0.0.2\";\n"
	"  port = 9181; tags = [\"a\", \"b\"]; meta = { zone = \"eu\"; };\n"
	"  modules = [\"users\", \"orders\"]; };\n"
	"server = { read_timeout_ms = 5001; write_timeout_ms = 10002; idle_timeout_ms = 120003;\n"
	"  threads = 34; max_body_bytes = 1048575; shutdown_timeout_ms = 10006; };\n"
	"consul = { address = \"127.0.0.1:1\"; token = \"tok\"; kv_prefix = \"config/c/\";\n"
	"  register = false; required = true; check_interval_ms = 10007;\n"
	"  check_timeout_ms = 2008; deregister_critical_after_ms = 60009;\n"
	"  dns_address = \"127.0.0.1:8601\"; kv_max_keys = 10010; kv_max_bytes = 4194311;\n"
	"  watch_max_services = 42; watch_max_bytes = 67108877; watch_idle_ms = 600013;\n"
	"  watch_wait_ms = 30014; };\n"
	"database = { driver = \"postgres\"; path = \"/tmp/x.db\"; host = \"db.example\";\n"
	"  port = 5433; user = \"u1\"; password = \"p1\"; name = \"n1\"; pool_size = 9;\n"
	"  connect_timeout_ms = 5015; acquire_timeout_ms = 1016; max_waiters = 117;\n"
	"  sslmode = \"require\"; };\n"
	"log = { level = \"warn\"; format = \"text\"; };\n"
	"events = { enabled = true; broker_service = \"rmq\"; broker_address = \"h:5673\";\n"
	"  vhost = \"/v\"; user = \"eu\"; password = \"ep\"; queue = \"q1\"; batch_size = 118;\n"
	"  retention_ms = 86400019; };\n"
	"maintenance = true;\n"
	"peers = { users = { timeout_ms = 5020; connect_timeout_ms = 221; retries = 3;\n"
	"  lb = \"least_inflight\"; tag = \"blue\"; breaker_failures = 6;\n"
	"  breaker_open_ms = 10022;\n"
	"  panic_threshold = 23; discovery = \"dns\"; }; };\n"
	"features = { beta = true; };\n";

static void test_every_setting_in_its_field(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const struct peer_settings *p;
	const struct config *c;

	src.file_path = write_file(f, "a.cfg", file_every_setting);
	load_ok(f, &src);
	c = f->cfg;
	assert_string_equal(c->service_name, "orders-x");
	assert_string_equal(c->service_id, "orders-x-1");
	assert_string_equal(c->service_address, "127.0.0.2");
	assert_int_equal(c->service_port, 9181);
	assert_string_equal(c->admin_address, "127.0.0.3");
	assert_int_equal(c->admin_port, 9182);
	assert_int_equal(c->admin_threads, 5);
	assert_int_equal(c->n_service_tags, 2);
	assert_string_equal(c->service_tags[1], "b");
	assert_null(c->service_tags[2]);
	assert_int_equal(c->n_service_meta, 1);
	assert_string_equal(c->service_meta_keys[0], "zone");
	assert_string_equal(c->service_meta_values[0], "eu");
	assert_int_equal(c->n_service_modules, 2);
	assert_string_equal(c->service_modules[1], "orders");
	assert_int_equal(c->read_timeout_ms, 5001);
	assert_int_equal(c->write_timeout_ms, 10002);
	assert_int_equal(c->idle_timeout_ms, 120003);
	assert_int_equal(c->threads, 34);
	assert_int_equal(c->max_body_bytes, 1048575);
	assert_int_equal(c->shutdown_timeout_ms, 10006);
	assert_string_equal(c->consul_address, "http://127.0.0.1:1");
	assert_string_equal(c->consul_token, "tok");
	assert_string_equal(c->consul_kv_prefix, "config/c/");
	assert_false(c->consul_register);
	assert_true(c->consul_required);
	assert_int_equal(c->consul_check_interval_ms, 10007);
	assert_int_equal(c->consul_check_timeout_ms, 2008);
	assert_int_equal(c->consul_deregister_critical_after_ms, 60009);
	assert_string_equal(c->consul_dns_address, "127.0.0.1:8601");
	assert_int_equal(c->consul_kv_max_keys, 10010);
	assert_int_equal(c->consul_kv_max_bytes, 4194311);
	assert_int_equal(c->consul_watch_max_services, 42);
	assert_int_equal(c->consul_watch_max_bytes, 67108877);
	assert_int_equal(c->consul_watch_idle_ms, 600013);
	assert_int_equal(c->consul_watch_wait_ms, 30014);
	assert_string_equal(c->database_driver, "postgres");
	assert_string_equal(c->database_path, "/tmp/x.db");
	assert_string_equal(c->database_host, "db.example");
	assert_int_equal(c->database_port, 5433);
	assert_string_equal(c->database_user, "u1");
	assert_string_equal(c->database_password, "p1");
	assert_string_equal(c->database_name, "n1");
	assert_int_equal(c->database_pool_size, 9);
	assert_int_equal(c->database_connect_timeout_ms, 5015);
	assert_int_equal(c->database_acquire_timeout_ms, 1016);
	assert_int_equal(c->database_max_waiters, 117);
	assert_string_equal(c->database_sslmode, "require");
	assert_string_equal(c->log_level, "warn");
	assert_string_equal(c->log_format, "text");
	assert_true(c->events_enabled);
	assert_string_equal(c->events_broker_service, "rmq");
	assert_string_equal(c->events_broker_address, "h:5673");
	assert_string_equal(c->events_vhost, "/v");
	assert_string_equal(c->events_user, "eu");
	assert_string_equal(c->events_password, "ep");
	assert_string_equal(c->events_queue, "q1");
	assert_int_equal(c->events_batch_size, 118);
	assert_int_equal(c->events_retention_ms, 86400019);
	assert_true(c->maintenance);
	assert_int_equal(c->n_peers, 1);
	p = config_peer_get(c, "users");
	assert_string_equal(p->name, "users");
	assert_int_equal(p->timeout_ms, 5020);
	assert_int_equal(p->connect_timeout_ms, 221);
	assert_int_equal(p->retries, 3);
	assert_string_equal(p->lb, "least_inflight");
	assert_string_equal(p->tag, "blue");
	assert_int_equal(p->breaker_failures, 6);
	assert_int_equal(p->breaker_open_ms, 10022);
	assert_int_equal(p->panic_threshold, 23);
	assert_true(p->dns);
	assert_true(config_feature_enabled(c, "beta"));
}

/* The peer that is not configured is the peers.* rows' defaults: the same
 * as a configured peer given only a default value. */
static void test_default_peer_is_the_rows_defaults(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const struct peer_settings *d, *p;

	src.file_path = write_file(f, "a.cfg", "peers = { users = { retries = 2; }; };\n");
	load_ok(f, &src);
	d = config_peer_get(f->cfg, "nobody");
	p = config_peer_get(f->cfg, "users");
	assert_null(d->name);
	assert_string_equal(p->name, "users");
	assert_int_equal(d->timeout_ms, 5000);
	assert_int_equal(d->timeout_ms, p->timeout_ms);
	assert_int_equal(d->connect_timeout_ms, 250);
	assert_int_equal(d->connect_timeout_ms, p->connect_timeout_ms);
	assert_int_equal(d->retries, 2);
	assert_int_equal(d->retries, p->retries);
	assert_string_equal(d->lb, "round_robin");
	assert_string_equal(d->lb, p->lb);
	assert_string_equal(d->tag, "");
	assert_string_equal(d->tag, p->tag);
	assert_int_equal(d->breaker_failures, 5);
	assert_int_equal(d->breaker_failures, p->breaker_failures);
	assert_int_equal(d->breaker_open_ms, 10000);
	assert_int_equal(d->breaker_open_ms, p->breaker_open_ms);
	assert_int_equal(d->panic_threshold, 50);
	assert_int_equal(d->panic_threshold, p->panic_threshold);
	assert_false(d->dns);
	assert_false(p->dns);
}

/* Each row names a field of the size its type needs, inside its struct,
 * and no two rows share one. */
static void test_settings_fields(void **state)
{
	(void)state;
	for (size_t i = 0; i < settings_count; i++) {
		const struct setting_def *a = &settings_table[i];
		bool peer = strncmp(a->name, "peers.*.", 8) == 0;
		size_t limit = peer ? sizeof(struct peer_settings) : sizeof(struct config);

		if (strcmp(a->name, "features.*") == 0) {
			assert_int_equal(a->size, 0);
			continue;
		}
		if (a->size == 0)
			fail_msg("'%s' names no field", a->name);
		assert_true(a->offset + a->size <= limit);
		switch (a->type) {
		case SETTING_STRING:
			assert_int_equal(a->size, a->flag ? sizeof(bool) : sizeof(char *));
			if (a->flag)
				assert_non_null(a->choices[1]);
			break;
		case SETTING_INT:
			assert_true(a->size == sizeof(int) || a->size == sizeof(int64_t));
			break;
		case SETTING_BOOL: assert_int_equal(a->size, sizeof(bool)); break;
		case SETTING_LIST:
		case SETTING_MAP:
			assert_int_equal(a->size, sizeof(char **));
			assert_true(a->offset_n + sizeof(size_t) <= limit);
			break;
		}
		for (size_t k = 0; k < i; k++) {
			const struct setting_def *b = &settings_table[k];

			if (b->size == 0 || (strncmp(b->name, "peers.*.", 8) == 0) != peer)
				continue;
			if (a->offset < b->offset + b->size && b->offset < a->offset + a->size)
				fail_msg("'%s' and '%s' share a field", a->name, b->name);
		}
	}
}

static void test_default_hostname_from_system(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	char host[256], *want;
	struct config *cfg = NULL;

	assert_int_equal(gethostname(host, sizeof(host)), 0);
	assert_int_equal(config_load(&src, &cfg, NULL, NULL), MN_OK);
	assert_true(asprintf(&want, "users-%s-8080", host) > 0);
	assert_string_equal(cfg->service_id, want);
	free(want);
	config_destroy(cfg);
	(void)f;
}

static const char file_full[] =
	"# comment line 1\n"
	"service = {\n"
	"\tname = \"orders\";\n"
	"\tport = 9090;\n"
	"\ttags = [\"a\", \"b\"];\n"
	"\tmeta = { team = \"core\"; tier_1 = \"yes\"; };\n"
	"\tmodules = [\"users\", \"orders\"];\n"
	"};\n"
	"server = { threads = 16; max_body_bytes = 1073741824L; };\n"
	"consul = { address = \"consul.local:8500\"; required = true; };\n"
	"log = { level = \"debug\"; };\n"
	"peers = { users = { timeout_ms = 2000; lb = \"random\"; }; };\n"
	"features = { beta = true; old_ui = false; };\n"
	"maintenance = true;\n";

static void test_file_overrides_defaults(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const struct config *cfg;
	const struct peer_settings *p;
	char origin[256];
	const char *path = write_file(f, "a.cfg", file_full);

	src.file_path = path;
	load_ok(f, &src);
	cfg = f->cfg;
	assert_string_equal(cfg->service_name, "orders");
	assert_int_equal(cfg->service_port, 9090);
	assert_string_equal(cfg->service_id, "orders-host1-9090");
	assert_string_equal(cfg->consul_kv_prefix, "config/orders/");
	assert_string_equal(cfg->database_path, "data/orders.db");
	assert_int_equal(cfg->n_service_tags, 2);
	assert_string_equal(cfg->service_tags[0], "a");
	assert_string_equal(cfg->service_tags[1], "b");
	assert_int_equal(cfg->n_service_meta, 2);
	assert_string_equal(cfg->service_meta_keys[0], "team");
	assert_string_equal(cfg->service_meta_values[0], "core");
	assert_string_equal(cfg->service_meta_keys[1], "tier_1");
	assert_true(config_has_module(cfg, "orders"));
	assert_true(config_has_module(cfg, "users"));
	assert_int_equal(cfg->threads, 16);
	assert_int_equal(cfg->max_body_bytes, 1073741824);
	assert_int_equal(cfg->read_timeout_ms, 5000);
	assert_string_equal(cfg->consul_address, "http://consul.local:8500");
	assert_true(cfg->consul_required);
	assert_string_equal(cfg->log_level, "debug");
	assert_true(cfg->maintenance);

	snprintf(origin, sizeof(origin), "%s:9", path);
	assert_entry(cfg, "server.threads", CONFIG_SRC_FILE, origin);
	assert_entry(cfg, "server.max_body_bytes", CONFIG_SRC_FILE, origin);
	snprintf(origin, sizeof(origin), "%s:3", path);
	assert_entry(cfg, "service.name", CONFIG_SRC_FILE, origin);
	snprintf(origin, sizeof(origin), "%s:6", path);
	assert_entry(cfg, "service.meta", CONFIG_SRC_FILE, origin);
	assert_entry(cfg, "server.read_timeout_ms", CONFIG_SRC_DEFAULT, NULL);
	assert_entry(cfg, "service.id", CONFIG_SRC_DEFAULT, NULL);
	assert_entry(cfg, "consul.kv_prefix", CONFIG_SRC_DEFAULT, NULL);

	assert_int_equal(cfg->n_peers, 1);
	p = config_peer_get(cfg, "users");
	assert_non_null(p->name);
	assert_string_equal(p->name, "users");
	assert_int_equal(p->timeout_ms, 2000);
	assert_string_equal(p->lb, "random");
	assert_int_equal(p->retries, 2);
	snprintf(origin, sizeof(origin), "%s:12", path);
	assert_entry(cfg, "peers.users.timeout_ms", CONFIG_SRC_FILE, origin);
	assert_entry(cfg, "peers.users.retries", CONFIG_SRC_DEFAULT, NULL);
	assert_null(config_peer_get(cfg, "orders")->name);

	assert_int_equal(cfg->n_features, 2);
	assert_true(config_feature_enabled(cfg, "beta"));
	assert_false(config_feature_enabled(cfg, "old_ui"));
	assert_false(config_feature_enabled(cfg, "missing"));
	assert_true(config_entry_find(cfg, "features.beta")->dynamic);
}

static void test_file_int_accepts_plain_and_int64(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};

	src.file_path = write_file(f, "a.cfg", "server = { max_body_bytes = 2048; };\n");
	load_ok(f, &src);
	assert_int_equal(f->cfg->max_body_bytes, 2048);
	src.file_path = write_file(f, "b.cfg", "server = { max_body_bytes = 4096L; };\n");
	load_ok(f, &src);
	assert_int_equal(f->cfg->max_body_bytes, 4096);
}

/* Expects exactly "<file>:<line>: <rest>" for 'text'. */
static void file_error_case(struct fixture *f, const char *text, int line, const char *rest)
{
	struct config_sources src = {0};
	char want[512];

	src.file_path = write_file(f, "bad.cfg", text);
	snprintf(want, sizeof(want), "%s:%d: %s", src.file_path, line, rest);
	load_fails_with(f, &src, want);
}

/* Loads 'text' expecting success and exactly one warning line: 'rest'
 * after "<file>:<line>: ". */
static void file_warning_case(struct fixture *f, const char *text, int line, const char *rest)
{
	struct config_sources src = {0};
	char want[512];

	src.file_path = write_file(f, "odd.cfg", text);
	snprintf(want, sizeof(want), "%s:%d: %s\n", src.file_path, line, rest);
	load_ok(f, &src);
	assert_string_equal(warnings_text(f), want);
}

static void test_file_type_mismatch(void **state)
{
	file_error_case(*state, "\nserver = {\n  threads = \"many\";\n};\n",
			3, "key 'server.threads': expected an integer between 1 and 1024");
}

static void test_file_out_of_range(void **state)
{
	file_error_case(*state, "server = { threads = 5000; };\n",
			1, "key 'server.threads': expected an integer between 1 and 1024");
}

static void test_admin_settings_refused(void **state)
{
	/* numeric IPv4 only: the check URL and the one-socket rule compare
	 * addresses as parsed, and civetweb here listens on IPv4 only */
	static const char *const bad[] = {"localhost", "::1", "127.0.0.1:9", "127.1",
					  " 127.0.0.1", "127.0.0.1\n"};
	char text[128];

	file_error_case(*state, "admin = { threads = 1; };\n", 1,
			"key 'admin.threads': expected an integer between 2 and 64");
	file_error_case(*state, "admin = { threads = 65; };\n", 1,
			"key 'admin.threads': expected an integer between 2 and 64");
	file_error_case(*state, "admin = { port = 65536; };\n", 1,
			"key 'admin.port': expected an integer between 0 and 65535");
	file_error_case(*state, "admin = { port = -1; };\n", 1,
			"key 'admin.port': expected an integer between 0 and 65535");
	file_error_case(*state, "admin = { address = \"\"; };\n", 1,
			"key 'admin.address': expected a non-empty string");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct config_sources src = {0};
		const char *env[] = {text, NULL};

		snprintf(text, sizeof(text), "MESHNODE_ADMIN_ADDRESS=%s", bad[i]);
		src.environ = (char *const *)env;
		load_fails_with(*state, &src,
				"environment variable 'MESHNODE_ADMIN_ADDRESS': expected a numeric "
				"IPv4 address: 127.0.0.1, or 0.0.0.0 for every address");
	}
}

/* The admin listener and the service port on one socket: refused whole,
 * whichever layer set which, and whatever spelling claims the address. */
static void test_admin_port_is_not_the_service_port(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *same[] = {"MESHNODE_ADMIN_PORT=8080", NULL};
	const char *any[] = {"MESHNODE_ADMIN_PORT=9000", "MESHNODE_ADMIN_ADDRESS=0.0.0.0",
			     "SERVER_PORT=9000", NULL};
	const char *apart[] = {"MESHNODE_ADMIN_PORT=9000", "MESHNODE_ADMIN_ADDRESS=127.0.0.2",
			       "SERVER_PORT=9000", NULL};
	const char *other[] = {"MESHNODE_ADMIN_PORT=9001", "SERVER_PORT=9000", NULL};

	src.environ = (char *const *)same;
	load_fails_with(f, &src,
			"key 'admin.port': 8080 is service.port on the same address ('127.0.0.1', "
			"'127.0.0.1'); expected another port, or 0 to serve everything on the "
			"service port");
	src.environ = (char *const *)any;
	load_fails_with(f, &src,
			"key 'admin.port': 9000 is service.port on the same address ('0.0.0.0', "
			"'127.0.0.1'); expected another port, or 0 to serve everything on the "
			"service port");
	/* the file sets the service port, the environment the admin one */
	src.environ = (char *const *)same;
	src.file_path = write_file(f, "same.cfg", "service = { port = 8080; };\n");
	assert_int_equal(load(f, &src), MN_CONFIG);
	assert_non_null(strstr(errors_text(f), "key 'admin.port': 8080 is service.port"));
	src.file_path = NULL;
	/* two addresses, one port: two sockets */
	src.environ = (char *const *)apart;
	load_ok(f, &src);
	assert_int_equal(f->cfg->admin_port, 9000);
	src.environ = (char *const *)other;
	load_ok(f, &src);
	assert_int_equal(f->cfg->admin_port, 9001);
	assert_int_equal(f->cfg->service_port, 9000);
}

/* Connect serves the service port in mutual TLS only: the agent's plain
 * HTTP check needs the admin listener. */
static void test_connect_needs_the_admin_listener(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *alone[] = {"MESHNODE_CONNECT_ENABLED=true", NULL};
	const char *with_admin[] = {"MESHNODE_CONNECT_ENABLED=true", "MESHNODE_ADMIN_PORT=9001",
				    "MESHNODE_CONNECT_AUTHZ_FAIL_OPEN=true", NULL};

	src.environ = (char *const *)alone;
	load_fails_with(f, &src,
			"key 'connect.enabled': connect.enabled needs admin.port: the agent's "
			"check cannot present a client certificate");
	src.environ = (char *const *)with_admin;
	load_ok(f, &src);
	assert_true(f->cfg->connect_enabled);
	assert_true(f->cfg->connect_authz_fail_open);
}

static void test_file_unknown_enum(void **state)
{
	file_error_case(*state, "log = {\n level = \"loud\";\n};\n",
			2, "key 'log.level': expected one of debug, info, warn, error");
}

/* An unknown key is a warning: the node starts with the rest of the file
 * (one written for a newer node, or with a typo the warning points at). */
static void test_file_unknown_key(void **state)
{
	struct fixture *f = *state;

	file_warning_case(f, "server = { threads = 8; treads = 9; };\n", 1,
			  "key 'server.treads': unknown setting, ignored (did you mean "
			  "'server.threads'?)");
	assert_int_equal(f->cfg->threads, 8);
}

/* A typo gets the setting it most likely meant (a peer's too); a name far
 * from any, none. */
static void test_unknown_names_get_the_closest_setting(void **state)
{
	file_warning_case(*state, "consul = { adress = \"http://127.0.0.1:8500\"; };\n", 1,
			  "key 'consul.adress': unknown setting, ignored (did you mean "
			  "'consul.address'?)");
	file_warning_case(*state, "peers = { users = { timout_ms = 1; }; };\n", 1,
			  "key 'peers.users.timout_ms': unknown setting, ignored (did you mean "
			  "'peers.users.timeout_ms'?)");
	file_warning_case(*state, "colour = 1;\n", 1, "key 'colour': unknown setting, ignored");
}

static void test_env_typo_named(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {"MESHNODE_SERVER_THREAD=16", "MESHNODE_NO_SUCH_THING=1", NULL};

	src.environ = (char *const *)env;
	load_ok(f, &src);
	assert_string_equal(warnings_text(f),
			    "environment variable 'MESHNODE_SERVER_THREAD': unknown setting, ignored "
			    "(did you mean 'MESHNODE_SERVER_THREADS'?)\n"
			    "environment variable 'MESHNODE_NO_SUCH_THING': unknown setting, "
			    "ignored\n");
}

/* What a reload logs: one line per changed setting with its new source,
 * secrets redacted, a removed setting, and a cap on the lines. */
static void test_changes_one_line_per_setting(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {"CONSUL_HTTP_TOKEN=old-secret-1", NULL};
	const char *env2[] = {"CONSUL_HTTP_TOKEN=new-secret-2", NULL};
	struct config_kv_pair kv[] = {
		{"config/users/log/level", "debug"},
		{"config/users/features/beta", "true"},
		{"config/users/peers/users/timeout_ms", "2000"},
	};
	struct config *old;
	struct buf out;

	buf_init(&out, 1 << 16);
	src.environ = (char *const *)env;
	src.kv = kv;
	src.n_kv = 2;
	load_ok(f, &src);
	old = f->cfg;
	f->cfg = NULL;
	src.environ = (char *const *)env2;
	kv[0].value = "warn";
	kv[1] = kv[2];
	load_ok(f, &src);
	assert_int_equal(config_changes(old, f->cfg, &out, 50), 4);
	assert_string_equal(out.data,
			    "consul.token: <redacted> -> <redacted> (env)\n"
			    "features.beta: true -> (unset) (removed)\n"
			    "log.level: debug -> warn (kv)\n"
			    "peers.users.timeout_ms: (unset) -> 2000 (kv)\n");
	assert_null(strstr(out.data, "secret"));
	buf_reset(&out);
	assert_int_equal(config_changes(old, f->cfg, &out, 2), 4);
	assert_string_equal(out.data,
			    "consul.token: <redacted> -> <redacted> (env)\n"
			    "features.beta: true -> (unset) (removed)\n"
			    "2 more settings changed\n");
	buf_reset(&out);
	assert_int_equal(config_changes(f->cfg, f->cfg, &out, 50), 0);
	assert_int_equal(out.len, 0);
	buf_release(&out);
	config_destroy(old);
}

/* A reload from the file as last loaded: the file on disk may be broken
 * meanwhile, the layer still gives what it held. */
static void test_file_layer_kept(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	struct config_file_layer *layer = NULL;
	const char *path = write_file(f, "layer.cfg", "server = { threads = 12; };\n");
	struct buf errors;

	buf_init(&errors, 4096);
	assert_int_equal(config_file_layer_read(path, false, &layer, &errors), MN_OK);
	assert_true(config_file_layer_found(layer));
	assert_int_equal(config_file_layer_count(layer), 1);
	write_file(f, "layer.cfg", "server = { threads = = 12; };\n");
	src.file = layer;
	load_ok(f, &src);
	assert_int_equal(f->cfg->threads, 12);
	/* and the broken file is refused when read again */
	config_file_layer_free(layer);
	layer = NULL;
	assert_int_equal(config_file_layer_read(path, false, &layer, &errors), MN_CONFIG);
	assert_null(layer);
	assert_non_null(strstr(errors.data, "syntax error in 'server = { threads = = 12; };'"));
	/* an optional file that is not there is an empty layer */
	assert_int_equal(config_file_layer_read("/nonexistent/x.cfg", true, &layer, &errors),
			 MN_OK);
	assert_false(config_file_layer_found(layer));
	config_file_layer_free(layer);
	buf_release(&errors);
}

static void test_file_syntax_error(void **state)
{
	char text[16384];

	/* libconfig's message, and the line it is about */
	file_error_case(*state, "server = {\n threads = = 8;\n};\n", 2,
			"syntax error in 'threads = = 8;'");
	/* after a line longer than the reader's buffer, still the right one */
	snprintf(text, sizeof(text), "# %09000d\nserver = {\n threads = = 8;\n};\n", 0);
	file_error_case(*state, text, 3, "syntax error in 'threads = = 8;'");
}

static void test_file_invalid_utf8(void **state)
{
	file_error_case(*state, "service = {\n name = \"us\xff\";\n};\n", 2,
			"key 'service.name': expected a non-empty string");
}

/* libconfig reads 1e999 as infinity, which has no JSON value: the load
 * used to fail as out of memory, with no error line (found by
 * fuzz_config_file). */
static void test_file_float_overflow(void **state)
{
	file_error_case(*state, "server = {\n threads = 1e999;\n};\n", 2,
			"key 'server.threads': expected an integer between 1 and 1024");
}

static void test_file_float_overflow_in_list(void **state)
{
	file_error_case(*state, "service = { tags = ( \"a\", -1e999 ); };\n", 1,
			"key 'service.tags': expected a list of non-empty strings");
}

static void test_file_bad_values_of_every_kind(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	char want[2048];

	src.file_path = write_file(f, "bad.cfg",
				   "service = {\n"
				   "  name = \"Users\";\n"
				   "  port = 1.5;\n"
				   "  tags = [\"\"];\n"
				   "  meta = { team = 1; };\n"
				   "  modules = [\"payments\"];\n"
				   "};\n"
				   "consul = { address = \"ftp://x\"; kv_prefix = \"x\"; required = 1; };\n"
				   "peers = { users = { retries = 11; }; };\n"
				   "features = { beta = \"yes\"; };\n");
	assert_int_equal(load(f, &src), MN_CONFIG);
	assert_null(f->cfg);
	snprintf(want, sizeof(want),
		 "%1$s:2: key 'service.name': expected 1 to 63 characters from a-z, 0-9 and '-'\n"
		 "%1$s:3: key 'service.port': expected an integer between 1 and 65535\n"
		 "%1$s:4: key 'service.tags': expected a list of non-empty strings\n"
		 "%1$s:5: key 'service.meta': expected a group of string values\n"
		 "%1$s:6: key 'service.modules': expected a non-empty list of users, orders\n"
		 "%1$s:8: key 'consul.address': expected an http:// or https:// url or host:port\n"
		 "%1$s:8: key 'consul.kv_prefix': expected a key prefix ending with '/'\n"
		 "%1$s:8: key 'consul.required': expected true or false\n"
		 "%1$s:9: key 'peers.users.retries': expected an integer between 0 and 10\n"
		 "%1$s:10: key 'features.beta': expected true or false\n",
		 src.file_path);
	assert_string_equal(errors_text(f), want);
}

static void test_file_missing(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	char path[128], want[256];

	snprintf(path, sizeof(path), "%s/none.cfg", f->dir);
	src.file_path = path;
	snprintf(want, sizeof(want), "%s: cannot open: no such file", path);
	load_fails_with(f, &src, want);

	src.file_optional = true;
	load_ok(f, &src);
	assert_int_equal(f->cfg->threads, 512);
}

static void test_env_overrides_file(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {
		"PATH=/usr/bin",
		"SERVER_PORT=7000",
		"SERVICE_NAME=orders",
		"LOG_LEVEL=warn",
		"CONSUL_HTTP_ADDR=https://consul.example:8501",
		"MESHNODE_SERVER_THREADS=8",
		"MESHNODE_LOG_LEVEL=error",
		"MESHNODE_CONSUL_REQUIRED=TRUE",
		"MESHNODE_SERVICE_TAGS=x, y",
		"MESHNODE_DATABASE_DRIVER=memory",
		"MESHNODE_BIN=/somewhere/meshnode",
		NULL,
	};

	src.file_path = write_file(f, "a.cfg", "server = { threads = 16; };\n"
					       "log = { level = \"debug\"; };\n");
	src.environ = (char *const *)env;
	load_ok(f, &src);
	assert_int_equal(f->cfg->service_port, 7000);
	assert_entry(f->cfg, "service.port", CONFIG_SRC_ENV, "SERVER_PORT");
	assert_string_equal(f->cfg->service_name, "orders");
	assert_string_equal(f->cfg->service_id, "orders-host1-7000");
	assert_string_equal(f->cfg->database_path, "data/orders.db");
	assert_int_equal(f->cfg->threads, 8);
	assert_entry(f->cfg, "server.threads", CONFIG_SRC_ENV, "MESHNODE_SERVER_THREADS");
	/* MESHNODE_LOG_LEVEL wins over LOG_LEVEL, both over the file */
	assert_string_equal(f->cfg->log_level, "error");
	assert_entry(f->cfg, "log.level", CONFIG_SRC_ENV, "MESHNODE_LOG_LEVEL");
	assert_string_equal(f->cfg->consul_address, "https://consul.example:8501");
	assert_true(f->cfg->consul_required);
	assert_int_equal(f->cfg->n_service_tags, 2);
	assert_string_equal(f->cfg->service_tags[1], "y");
	assert_string_equal(f->cfg->database_driver, "memory");
	assert_string_equal(warnings_text(f),
			    "environment variable 'MESHNODE_BIN': unknown setting, ignored\n");
}

/* A secret from the environment ending in a newline (a copy-paste, a
 * Kubernetes secret made from a file) is trimmed, as Consul's CLI trims a
 * token file; a line break inside a token is refused as a configuration
 * error, so --check-config and the start agree (issue 21, point 7). */
static void test_env_secrets_trimmed(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {
		"CONSUL_HTTP_TOKEN=0b1f-token\n",
		"DB_PASSWORD=s3cret\r\n",
		"MESHNODE_EVENTS_PASSWORD=rabbit \n",
		"SERVICE_NAME=orders\n",
		NULL,
	};
	const char *bad[] = {"CONSUL_HTTP_TOKEN=ab\ncd", NULL};

	src.environ = (char *const *)env;
	/* only secrets: a non-secret value is checked as written */
	load_fails_with(f, &src, "environment variable 'SERVICE_NAME': expected 1 to 63 "
				 "characters from a-z, 0-9 and '-'");
	env[3] = NULL;
	load_ok(f, &src);
	assert_string_equal(f->cfg->consul_token, "0b1f-token");
	assert_string_equal(f->cfg->database_password, "s3cret");
	assert_string_equal(f->cfg->events_password, "rabbit");
	src.environ = (char *const *)bad;
	load_fails_with(f, &src, "environment variable 'CONSUL_HTTP_TOKEN': expected no control "
				 "characters");
	/* from the file too: the token goes into an HTTP header */
	src.environ = NULL;
	src.file_path = write_file(f, "tok.cfg", "consul = { token = \"ab\\ncd\"; };\n");
	assert_int_equal(load(f, &src), MN_CONFIG);
	assert_non_null(strstr(errors_text(f), "key 'consul.token': expected no control characters"));
	assert_null(strstr(errors_text(f), "ab"));
}

/* GET /config's pages: name order, a prefix, and where the next begins. */
static void test_document_pages(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	json_t *doc;
	size_t total, seen = 0;

	load_ok(f, &src);
	doc = config_document_page(f->cfg, "", 0, 1000);
	total = (size_t)json_integer_value(json_object_get(doc, "total"));
	assert_int_equal(total, f->cfg->n_entries);
	assert_int_equal(json_object_size(json_object_get(doc, "settings")), total);
	assert_null(json_object_get(doc, "next_offset"));
	json_decref(doc);
	for (size_t off = 0; off < total; off += 7) {
		doc = config_document_page(f->cfg, NULL, off, 7);
		seen += json_object_size(json_object_get(doc, "settings"));
		if (off + 7 < total)
			assert_int_equal(json_integer_value(json_object_get(doc, "next_offset")),
					 off + 7);
		else
			assert_null(json_object_get(doc, "next_offset"));
		json_decref(doc);
	}
	assert_int_equal(seen, total);
	doc = config_document_page(f->cfg, "service.", 0, 1000);
	assert_non_null(json_object_get(json_object_get(doc, "settings"), "service.name"));
	assert_null(json_object_get(json_object_get(doc, "settings"), "server.threads"));
	assert_true(json_integer_value(json_object_get(doc, "total")) < (json_int_t)total);
	json_decref(doc);
	doc = config_document_page(f->cfg, "", total + 5, 10);
	assert_int_equal(json_object_size(json_object_get(doc, "settings")), 0);
	json_decref(doc);
}

/* The aliases live in the table rows: the same ten as ever, each applied
 * once, in the order 1..N that keeps their error lines where they were. */
static void test_settings_env_aliases(void **state)
{
	static const char *const expected[][2] = {
		{"SERVICE_NAME", "service.name"},   {"SERVER_PORT", "service.port"},
		{"LOG_LEVEL", "log.level"},         {"CONSUL_HTTP_ADDR", "consul.address"},
		{"CONSUL_HTTP_TOKEN", "consul.token"}, {"DB_HOST", "database.host"},
		{"DB_PORT", "database.port"},       {"DB_USER", "database.user"},
		{"DB_PASSWORD", "database.password"}, {"DB_NAME", "database.name"},
	};
	size_t n = 0;

	(void)state;
	for (size_t i = 0; i < settings_count; i++) {
		const struct setting_def *def = &settings_table[i];
		size_t k;

		if (def->env == NULL) {
			assert_int_equal(def->env_order, 0);
			continue;
		}
		n++;
		assert_in_range(def->env_order, 1, sizeof(expected) / sizeof(expected[0]));
		k = def->env_order - 1u;
		assert_string_equal(def->env, expected[k][0]);
		assert_string_equal(def->name, expected[k][1]);
	}
	assert_int_equal(n, sizeof(expected) / sizeof(expected[0]));
}

static void test_env_alias_order_independent(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {"MESHNODE_SERVICE_PORT=7001", "SERVER_PORT=7000", NULL};

	src.environ = (char *const *)env;
	load_ok(f, &src);
	assert_int_equal(f->cfg->service_port, 7001);
	assert_entry(f->cfg, "service.port", CONFIG_SRC_ENV, "MESHNODE_SERVICE_PORT");
}

static void test_env_errors(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {
		"MESHNODE_SERVER_THREADS=lots",
		"SERVER_PORT=70000",
		"CONSUL_HTTP_ADDR=consul",
		"MESHNODE_LOG_FORMAT=xml",
		"MESHNODE_PEERS_USERS_RETRIES=-1",
		"MESHNODE_FEATURES_BETA=maybe",
		NULL,
	};

	src.environ = (char *const *)env;
	assert_int_equal(load(f, &src), MN_CONFIG);
	assert_null(f->cfg);
	assert_string_equal(
		errors_text(f),
		"environment variable 'SERVER_PORT': expected an integer between 1 and 65535\n"
		"environment variable 'CONSUL_HTTP_ADDR': expected an http:// or https:// url or "
		"host:port\n"
		"environment variable 'MESHNODE_SERVER_THREADS': expected an integer between 1 "
		"and 1024\n"
		"environment variable 'MESHNODE_LOG_FORMAT': expected one of json, text\n"
		"environment variable 'MESHNODE_PEERS_USERS_RETRIES': expected an integer between "
		"0 and 10\n"
		"environment variable 'MESHNODE_FEATURES_BETA': expected true or false\n");
}

static void test_file_and_env_errors_together(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {"MESHNODE_SERVER_THREADS=0", NULL};

	src.file_path = write_file(f, "a.cfg", "server = { threads = \"x\"; };\n");
	src.environ = (char *const *)env;
	assert_int_equal(load(f, &src), MN_CONFIG);
	assert_int_equal(count_lines(errors_text(f)), 2);
	assert_non_null(strstr(errors_text(f), ":1: key 'server.threads': expected"));
	assert_non_null(strstr(errors_text(f), "'MESHNODE_SERVER_THREADS': expected"));
}

static void test_token_file_wins_and_is_redacted(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {"CONSUL_HTTP_TOKEN=env-secret-1111", NULL, NULL};
	char var[256];
	json_t *js;
	char *dump;

	snprintf(var, sizeof(var), "CONSUL_HTTP_TOKEN_FILE=%s",
		 write_file(f, "token", "  file-secret-2222\n"));
	env[1] = var;
	src.environ = (char *const *)env;
	src.file_path = write_file(f, "a.cfg", "consul = { token = \"cfg-secret-3333\"; };\n");
	load_ok(f, &src);
	assert_string_equal(f->cfg->consul_token, "file-secret-2222");
	assert_entry(f->cfg, "consul.token", CONFIG_SRC_ENV, "CONSUL_HTTP_TOKEN_FILE");
	assert_true(config_entry_find(f->cfg, "consul.token")->secret);

	js = config_to_json(f->cfg);
	assert_non_null(js);
	assert_string_equal(json_string_value(json_object_get(json_object_get(js, "consul.token"),
							      "value")),
			    "<redacted>");
	dump = json_dumps(js, 0);
	assert_non_null(dump);
	assert_null(strstr(dump, "secret"));
	free(dump);
	json_decref(js);
}

static void test_token_env_only_and_empty(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {"CONSUL_HTTP_TOKEN=env-secret-1111", NULL};
	json_t *js;

	src.environ = (char *const *)env;
	load_ok(f, &src);
	assert_string_equal(f->cfg->consul_token, "env-secret-1111");
	assert_entry(f->cfg, "consul.token", CONFIG_SRC_ENV, "CONSUL_HTTP_TOKEN");

	src.environ = NULL;
	load_ok(f, &src);
	js = config_to_json(f->cfg);
	assert_string_equal(json_string_value(json_object_get(json_object_get(js, "consul.token"),
							      "value")),
			    "");
	json_decref(js);
}

static void test_token_file_unreadable(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	char var[256], want[512];
	const char *env[] = {"CONSUL_HTTP_TOKEN=env-secret-1111", var, NULL};

	snprintf(var, sizeof(var), "CONSUL_HTTP_TOKEN_FILE=%s/no-token", f->dir);
	src.environ = (char *const *)env;
	snprintf(want, sizeof(want),
		 "environment variable 'CONSUL_HTTP_TOKEN_FILE': cannot read '%s/no-token': "
		 "No such file or directory",
		 f->dir);
	load_fails_with(f, &src, want);
	assert_null(strstr(errors_text(f), "secret"));
}

static void test_secret_not_in_file_error(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};

	src.file_path = write_file(f, "a.cfg", "consul = { token = [\"cfg-secret-3333\"]; };\n");
	assert_int_equal(load(f, &src), MN_CONFIG);
	assert_non_null(strstr(errors_text(f), "key 'consul.token': expected a string"));
	assert_null(strstr(errors_text(f), "secret-3333"));
}

/* The reference design's DB_ variables set the PostgreSQL settings; the
 * MESHNODE_ forms win over them as over every alias; the password is a
 * secret wherever it comes from. */
static void test_database_env_aliases(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {"DB_HOST=db.internal",	   "DB_PORT=6432",
			     "DB_USER=app",		   "DB_PASSWORD=pw-secret-4444",
			     "DB_NAME=shop",		   "MESHNODE_DATABASE_NAME=shop2",
			     "MESHNODE_DATABASE_DRIVER=postgres", NULL};
	json_t *js;
	char *dump;

	src.environ = (char *const *)env;
	src.file_path = write_file(f, "a.cfg",
				   "database = { host = \"file-host\"; port = 5433;"
				   " password = \"cfg-secret-5555\"; pool_size = 4; };\n");
	load_ok(f, &src);
	assert_string_equal(f->cfg->database_driver, "postgres");
	assert_string_equal(f->cfg->database_host, "db.internal");
	assert_entry(f->cfg, "database.host", CONFIG_SRC_ENV, "DB_HOST");
	assert_int_equal(f->cfg->database_port, 6432);
	assert_string_equal(f->cfg->database_user, "app");
	assert_string_equal(f->cfg->database_password, "pw-secret-4444");
	assert_entry(f->cfg, "database.password", CONFIG_SRC_ENV, "DB_PASSWORD");
	assert_true(config_entry_find(f->cfg, "database.password")->secret);
	assert_string_equal(f->cfg->database_name, "shop2");
	assert_entry(f->cfg, "database.name", CONFIG_SRC_ENV, "MESHNODE_DATABASE_NAME");
	assert_int_equal(f->cfg->database_pool_size, 4);
	assert_int_equal(config_entry_find(f->cfg, "database.pool_size")->source, CONFIG_SRC_FILE);

	js = config_document(f->cfg);
	assert_non_null(js);
	assert_string_equal(
		json_string_value(json_object_get(
			json_object_get(json_object_get(js, "settings"), "database.password"),
			"value")),
		"<redacted>");
	dump = json_dumps(js, 0);
	assert_non_null(dump);
	assert_null(strstr(dump, "secret"));
	free(dump);
	json_decref(js);
}

/* A changed password is a change line without either value. */
static void test_database_password_change_redacted(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {"DB_PASSWORD=old-secret-1", NULL};
	const char *env2[] = {"DB_PASSWORD=new-secret-2", "DB_PORT=6543", NULL};
	struct config *old;
	struct buf out;

	buf_init(&out, 1 << 12);
	src.environ = (char *const *)env;
	load_ok(f, &src);
	old = f->cfg;
	f->cfg = NULL;
	src.environ = (char *const *)env2;
	load_ok(f, &src);
	assert_int_equal(config_changes(old, f->cfg, &out, 50), 2);
	assert_string_equal(out.data, "database.password: <redacted> -> <redacted> (env)\n"
				      "database.port: 5432 -> 6543 (env)\n");
	buf_release(&out);
	config_destroy(old);
}

static void test_database_settings_refused(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *bad_mode[] = {"MESHNODE_DATABASE_SSLMODE=on", NULL};
	const char *bad_port[] = {"DB_PORT=70000", NULL};
	const char *bad_host[] = {"DB_HOST=a\nb", NULL};
	const char *bad_pw[] = {"DB_PASSWORD=", NULL}; /* empty: unset, as Consul's */

	src.environ = (char *const *)bad_mode;
	load_fails_with(f, &src,
			"environment variable 'MESHNODE_DATABASE_SSLMODE': expected one of "
			"disable, allow, prefer, require, verify-ca, verify-full");
	src.environ = (char *const *)bad_port;
	load_fails_with(f, &src,
			"environment variable 'DB_PORT': expected an integer between 1 and 65535");
	src.environ = (char *const *)bad_host;
	load_fails_with(f, &src, "environment variable 'DB_HOST': expected no control characters");
	src.environ = (char *const *)bad_pw;
	load_ok(f, &src);
	assert_entry(f->cfg, "database.password", CONFIG_SRC_DEFAULT, NULL);
	src.environ = NULL;
	src.file_path = write_file(f, "a.cfg", "database = { pool_size = 0; };\n");
	assert_int_equal(load(f, &src), MN_CONFIG);
	assert_non_null(strstr(errors_text(f), "key 'database.pool_size': expected an integer "
					       "between 1 and 1024"));
	/* no waiting room at all: the pool would never open a connection */
	src.file_path = write_file(f, "b.cfg", "database = { max_waiters = 0; };\n");
	assert_int_equal(load(f, &src), MN_CONFIG);
	assert_non_null(strstr(errors_text(f), "key 'database.max_waiters': expected an integer "
					       "between 1 and 100000"));
}

static void test_kv_layers(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const struct config_kv_pair kv[] = {
		{"config/", NULL},
		{"config/users/", NULL},
		{"config/users/log/level", "debug\n"},
		{"config/shared/log/level", "warn"},
		{"config/shared/log/format", " text \n"},
		{"config/shared/server/", NULL},
		{"config/shared/server/threads", "32"},
		{"config/users/server/threads", "many"},
		{"config/users/server/nope", "1"},
		{"config/users/peers/users/timeout_ms", "2000"},
		{"config/users/features/beta", "True"},
		{"config/users/maintenance", "false"},
		{"config/users/empty", NULL},
		{"config/orders/server/threads", "2"},
		{"other/thing", "x"},
		{"config/users/service/name", "evil"},
	};

	src.file_path = write_file(f, "a.cfg", "server = { threads = 16; };\n");
	src.kv = kv;
	src.n_kv = sizeof(kv) / sizeof(kv[0]);
	src.kv_index = 4242;
	load_ok(f, &src);
	assert_int_equal(f->cfg->kv_index, 4242);
	/* the service prefix wins over shared, whatever the order of keys */
	assert_string_equal(f->cfg->log_level, "debug");
	assert_entry(f->cfg, "log.level", CONFIG_SRC_KV, "config/users/log/level");
	assert_string_equal(f->cfg->log_format, "text");
	assert_entry(f->cfg, "log.format", CONFIG_SRC_KV, "config/shared/log/format");
	/* the bad service value is refused: shared's value stays */
	assert_int_equal(f->cfg->threads, 32);
	assert_entry(f->cfg, "server.threads", CONFIG_SRC_KV, "config/shared/server/threads");
	assert_int_equal(config_peer_get(f->cfg, "users")->timeout_ms, 2000);
	assert_entry(f->cfg, "peers.users.timeout_ms", CONFIG_SRC_KV,
		     "config/users/peers/users/timeout_ms");
	assert_true(config_feature_enabled(f->cfg, "beta"));
	assert_string_equal(f->cfg->service_name, "users");
	assert_entry(f->cfg, "maintenance", CONFIG_SRC_KV, "config/users/maintenance");
	assert_string_equal(
		warnings_text(f),
		"kv key 'config/orders/server/threads': outside 'config/shared/' and "
		"'config/users/', ignored\n"
		"kv key 'other/thing': outside 'config/shared/' and 'config/users/', ignored\n"
		"kv key 'config/users/server/threads': expected an integer between 1 and 1024\n"
		"kv key 'config/users/service/name': 'service.name' cannot be set from consul "
		"kv\n"
		"kv: 1 key under 'config/users/' names no setting and is ignored "
		"('config/users/server/nope')\n");
}

static void test_kv_bad_value_keeps_file_value(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const struct config_kv_pair kv[] = {
		{"config/users/log/level", "loud"},
		{"config/users/server/threads", "0"},
	};
	char origin[256];

	src.file_path = write_file(f, "a.cfg", "server = { threads = 16; };\n");
	src.kv = kv;
	src.n_kv = 2;
	load_ok(f, &src);
	assert_int_equal(f->cfg->threads, 16);
	snprintf(origin, sizeof(origin), "%s:1", src.file_path);
	assert_entry(f->cfg, "server.threads", CONFIG_SRC_FILE, origin);
	assert_string_equal(f->cfg->log_level, "info");
	assert_entry(f->cfg, "log.level", CONFIG_SRC_DEFAULT, NULL);
	assert_int_equal(count_lines(warnings_text(f)), 2);
	assert_non_null(strstr(warnings_text(f), "kv key 'config/users/log/level': expected one "
						 "of debug, info, warn, error\n"));
}

/* A KV key is outside input: a newline or an escape sequence in it stays
 * inside its one warning line, which becomes one log record. */
static void test_kv_key_with_control_characters_is_one_warning(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const struct config_kv_pair kv[] = {
		{"config/users/log/level\n{\"level\":\"error\",\"msg\":\"forged\"}", "debug"},
		{"config/users/x\x1b[2J\xff", "1"},
		{"elsewhere/\r\nkey", "1"},
	};

	src.kv = kv;
	src.n_kv = 3;
	load_ok(f, &src);
	/* the two keys that name no setting share one line */
	assert_int_equal(count_lines(warnings_text(f)), 2);
	assert_non_null(strstr(warnings_text(f),
			       "('config/users/log/level\\n{\"level\":\"error\",\"msg\":"
			       "\"forged\"}', 'config/users/x\\x1b[2J\\xff')\n"));
	assert_non_null(strstr(warnings_text(f), "kv key 'elsewhere/\\r\\nkey'"));
	assert_string_equal(f->cfg->log_level, "info");
}

static void test_env_beats_kv(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const struct config_kv_pair kv[] = {{"config/users/server/threads", "32"}};
	const char *env[] = {"MESHNODE_SERVER_THREADS=4", NULL};

	src.kv = kv;
	src.n_kv = 1;
	src.environ = (char *const *)env;
	load_ok(f, &src);
	assert_int_equal(f->cfg->threads, 4);
	assert_entry(f->cfg, "server.threads", CONFIG_SRC_ENV, "MESHNODE_SERVER_THREADS");
}

static void test_kv_prefix_follows_service_name(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const struct config_kv_pair kv[] = {
		{"config/users/server/threads", "2"},
		{"config/orders/server/threads", "3"},
	};
	const char *env[] = {"SERVICE_NAME=orders", NULL};

	src.kv = kv;
	src.n_kv = 2;
	src.environ = (char *const *)env;
	load_ok(f, &src);
	assert_int_equal(f->cfg->threads, 3);
	assert_string_equal(f->cfg->consul_kv_prefix, "config/orders/");
	assert_entry(f->cfg, "consul.kv_prefix", CONFIG_SRC_DEFAULT, NULL);
	assert_string_equal(f->cfg->database_path, "data/orders.db");
	assert_string_equal(f->cfg->service_id, "orders-host1-8080");
}

static void test_kv_prefix_explicit(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const struct config_kv_pair kv[] = {
		{"config/users/server/threads", "2"},
		{"svc/users-a/server/threads", "5"},
		{"svc/users-a/consul/kv_prefix", "elsewhere/"},
	};
	char origin[256];

	src.file_path = write_file(f, "a.cfg", "consul = { kv_prefix = \"svc/users-a/\"; };\n"
					       "database = { path = \"/var/lib/u.db\"; };\n"
					       "service = { id = \"fixed-id\"; };\n");
	src.kv = kv;
	src.n_kv = 3;
	load_ok(f, &src);
	assert_int_equal(f->cfg->threads, 5);
	assert_string_equal(f->cfg->consul_kv_prefix, "svc/users-a/");
	snprintf(origin, sizeof(origin), "%s:1", src.file_path);
	assert_entry(f->cfg, "consul.kv_prefix", CONFIG_SRC_FILE, origin);
	assert_string_equal(f->cfg->database_path, "/var/lib/u.db");
	assert_string_equal(f->cfg->service_id, "fixed-id");
	assert_non_null(strstr(warnings_text(f), "'consul.kv_prefix' cannot be set"));
}

/* consul.register: true by default; false from the file or the
 * environment; static, so a KV change waits for a restart; anything but a
 * boolean refused. */
static void test_consul_register(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {"MESHNODE_CONSUL_REGISTER=false", NULL};
	const struct config_kv_pair kv[] = {{"config/users/consul/register", "true"}};
	const struct config_entry *e;
	struct config *running;
	char origin[256], want[512];

	load_ok(f, &src);
	e = config_entry_find(f->cfg, "consul.register");
	assert_non_null(e);
	assert_true(json_is_true(e->value));
	assert_false(e->dynamic);
	assert_entry(f->cfg, "consul.register", CONFIG_SRC_DEFAULT, NULL);

	src.file_path = write_file(f, "a.cfg", "consul = {\n  register = false;\n};\n");
	load_ok(f, &src);
	assert_true(json_is_false(config_entry_find(f->cfg, "consul.register")->value));
	snprintf(origin, sizeof(origin), "%s:2", src.file_path);
	assert_entry(f->cfg, "consul.register", CONFIG_SRC_FILE, origin);

	src.file_path = NULL;
	src.environ = (char *const *)env;
	load_ok(f, &src);
	assert_true(json_is_false(config_entry_find(f->cfg, "consul.register")->value));
	assert_entry(f->cfg, "consul.register", CONFIG_SRC_ENV, "MESHNODE_CONSUL_REGISTER");

	/* running with false, KV says true: still false until a restart */
	running = f->cfg;
	f->cfg = NULL;
	src = (struct config_sources){.environ = NULL, .kv = kv, .n_kv = 1, .kv_index = 3,
				      .running = running};
	src.file_path = write_file(f, "b.cfg", "consul = { register = false; };\n");
	load_ok(f, &src);
	assert_true(json_is_false(config_entry_find(f->cfg, "consul.register")->value));
	assert_int_equal(f->cfg->n_pending_restart, 1);
	assert_string_equal(f->cfg->pending_restart[0], "consul.register");
	config_destroy(running);

	src = (struct config_sources){0};
	src.file_path = write_file(f, "c.cfg", "consul = { register = \"no\"; };\n");
	snprintf(want, sizeof(want), "%s:1: key 'consul.register': expected true or false",
		 src.file_path);
	load_fails_with(f, &src, want);
}

static void test_peers_and_features_from_every_layer(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const struct config_kv_pair kv[] = {
		{"config/shared/peers/users/retries", "4"},
		{"config/users/features/beta", "true"},
		{"config/users/peers/users/tag", " v2 \n"},
	};
	const char *env[] = {
		"MESHNODE_PEERS_USERS_LB=least_inflight",
		"MESHNODE_PEERS_ORDER_SVC_BREAKER_OPEN_MS=500",
		"MESHNODE_PEERS_ORDER_SVC_TIMEOUT_MS=700",
		"MESHNODE_PEERS_ORDER_SVC_PANIC_THRESHOLD=0",
		"MESHNODE_FEATURES_NEW_UI=true",
		"MESHNODE_MAINTENANCE=true",
		NULL,
	};
	const struct peer_settings *p;

	src.file_path = write_file(f, "a.cfg", "peers = { users = { timeout_ms = 2000; }; };\n"
					       "features = { beta = false; dark = true; };\n");
	src.kv = kv;
	src.n_kv = 3;
	src.environ = (char *const *)env;
	load_ok(f, &src);
	assert_int_equal(f->cfg->n_peers, 2);
	p = config_peer_get(f->cfg, "users");
	assert_int_equal(p->timeout_ms, 2000);
	assert_int_equal(p->retries, 4);
	assert_string_equal(p->lb, "least_inflight");
	assert_string_equal(p->tag, "v2");
	assert_int_equal(p->breaker_failures, 5);
	assert_int_equal(p->panic_threshold, 50);
	assert_entry(f->cfg, "peers.users.retries", CONFIG_SRC_KV,
		     "config/shared/peers/users/retries");
	assert_entry(f->cfg, "peers.users.lb", CONFIG_SRC_ENV, "MESHNODE_PEERS_USERS_LB");
	assert_entry(f->cfg, "peers.users.breaker_failures", CONFIG_SRC_DEFAULT, NULL);
	p = config_peer_get(f->cfg, "order-svc");
	assert_string_equal(p->name, "order-svc");
	assert_int_equal(p->breaker_open_ms, 500);
	assert_int_equal(p->timeout_ms, 700);
	assert_int_equal(p->panic_threshold, 0);
	assert_entry(f->cfg, "peers.order-svc.breaker_open_ms", CONFIG_SRC_ENV,
		     "MESHNODE_PEERS_ORDER_SVC_BREAKER_OPEN_MS");
	assert_true(config_feature_enabled(f->cfg, "beta"));
	assert_entry(f->cfg, "features.beta", CONFIG_SRC_KV, "config/users/features/beta");
	assert_true(config_feature_enabled(f->cfg, "dark"));
	assert_true(config_feature_enabled(f->cfg, "new_ui"));
	assert_entry(f->cfg, "features.new_ui", CONFIG_SRC_ENV, "MESHNODE_FEATURES_NEW_UI");
	assert_true(f->cfg->maintenance);
	assert_int_equal(f->cfg->n_features, 3);
}

/* A peer name longer than any service name the resolver accepts is not a
 * setting. Before it was refused, a name of ~280 characters overflowed the
 * buffers that build "peers.<name>.<setting>" and the whole load failed
 * with MN_INTERNAL, from KV too (found by fuzz_config_kv). */
static void test_long_peer_name(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	char longest[129], too_long[130], huge[291], k1[200], k2[200], k3[340], text[1024];
	struct config_kv_pair kv[3];
	const struct peer_settings *p;
	enum mn_err err;

	memset(longest, 'a', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	memset(too_long, 'b', sizeof(too_long) - 1);
	too_long[sizeof(too_long) - 1] = '\0';
	memset(huge, 'c', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	snprintf(k1, sizeof(k1), "config/users/peers/%s/lb", longest);
	snprintf(k2, sizeof(k2), "config/users/peers/%s/lb", too_long);
	snprintf(k3, sizeof(k3), "config/users/peers/%s/timeout_ms", huge);
	kv[0] = (struct config_kv_pair){k1, "random"};
	kv[1] = (struct config_kv_pair){k2, "random"};
	kv[2] = (struct config_kv_pair){k3, "100"};
	src.kv = kv;
	src.n_kv = 3;
	load_ok(f, &src);
	assert_int_equal(f->cfg->n_peers, 1);
	p = config_peer_get(f->cfg, longest);
	assert_string_equal(p->name, longest);
	assert_string_equal(p->lb, "random");
	snprintf(text, sizeof(text),
		 "kv: 2 keys under 'config/users/' name no setting and are ignored ('%s', '%s')\n",
		 k2, k3);
	assert_string_equal(warnings_text(f), text);

	/* in the file, a clear warning rather than an internal error */
	snprintf(text, sizeof(text), "peers = { %s = { lb = \"random\"; }; };\n", huge);
	src = (struct config_sources){.file_path = write_file(f, "long.cfg", text)};
	err = load(f, &src);
	assert_int_equal(err, MN_OK);
	snprintf(text, sizeof(text), "key 'peers.%s.lb': unknown setting, ignored\n", huge);
	assert_non_null(strstr(warnings_text(f), text));
}

static void test_lists_and_maps_from_text(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const struct config_kv_pair kv[] = {
		{"config/users/service/tags", " a, b ,c\n"},
		{"config/users/service/meta", "{\"team\": \"core\", \"zone\": \"eu-1\"}"},
		{"config/shared/service/modules", "users,payments"},
	};
	const char *env[] = {"MESHNODE_SERVICE_MODULES=[\"orders\", \"users\"]", NULL};

	src.kv = kv;
	src.n_kv = 3;
	src.environ = (char *const *)env;
	load_ok(f, &src);
	assert_int_equal(f->cfg->n_service_tags, 3);
	assert_string_equal(f->cfg->service_tags[0], "a");
	assert_string_equal(f->cfg->service_tags[1], "b");
	assert_string_equal(f->cfg->service_tags[2], "c");
	assert_int_equal(f->cfg->n_service_meta, 2);
	assert_string_equal(f->cfg->service_meta_keys[1], "zone");
	assert_string_equal(f->cfg->service_meta_values[1], "eu-1");
	assert_int_equal(f->cfg->n_service_modules, 2);
	assert_string_equal(f->cfg->service_modules[0], "orders");
	assert_string_equal(warnings_text(f),
			    "kv key 'config/shared/service/modules': expected a non-empty list of "
			    "users, orders\n");

	/* JSON text for a list, and an empty comma list for tags */
	{
		const struct config_kv_pair kv2[] = {
			{"config/users/service/tags", "[\"x\",\"y\"]"},
			{"config/users/service/modules", ""},
			{"config/users/service/meta", "team=core"},
		};

		src.kv = kv2;
		src.environ = NULL;
		load_ok(f, &src);
		assert_int_equal(f->cfg->n_service_tags, 2);
		assert_string_equal(f->cfg->service_tags[1], "y");
		assert_int_equal(f->cfg->n_service_modules, 1);
		assert_int_equal(count_lines(warnings_text(f)), 2);
		assert_non_null(strstr(warnings_text(f), "kv key 'config/users/service/meta': "
							 "expected a group of string values"));
	}
}

struct small_stack_load {
	struct fixture *f;
	struct config_sources *src;
	enum mn_err result;
};

static void *small_stack_load_run(void *arg)
{
	struct small_stack_load *l = arg;

	l->result = load(l->f, l->src);
	return NULL;
}

/* Loads on a thread with a worker-sized stack, where a parse recursing
 * once per level of a value would crash instead of passing unnoticed. */
static enum mn_err load_on_small_stack(struct fixture *f, struct config_sources *src)
{
	struct small_stack_load l = {f, src, MN_INTERNAL};

	assert_true(small_stack_run(small_stack_load_run, &l));
	return l.result;
}

/* KV and environment values are outside input: a list or map nested past
 * MN_JSON_MAX_DEPTH is refused before jansson sees it, like any bad value.
 * 2000 levels are within jansson's own limit and need 160 KiB of stack to
 * parse: without the guard the small stack overflows. */
static void test_deep_json_values_refused(void **state)
{
	enum { DEPTH = 2000 };
	struct fixture *f = *state;
	struct config_sources src = {0};
	char *deep_list = malloc(2 * DEPTH + 8), *deep_map = malloc(6 * DEPTH + 8), *env_var;
	struct config_kv_pair kv[2] = {{"config/users/service/tags", deep_list},
				       {"config/users/service/meta", deep_map}};
	const char *env[2] = {NULL, NULL};
	char *p = deep_map;

	assert_non_null(deep_list);
	assert_non_null(deep_map);
	memset(deep_list, '[', DEPTH);
	memset(deep_list + DEPTH, ']', DEPTH);
	deep_list[2 * DEPTH] = '\0';
	for (int i = 0; i < DEPTH; i++, p += 5)
		memcpy(p, "{\"a\":", 5);
	*p++ = '1';
	memset(p, '}', DEPTH);
	p[DEPTH] = '\0';

	src.kv = kv;
	src.n_kv = 2;
	src.hostname = "host1";
	assert_int_equal(load_on_small_stack(f, &src), MN_OK);
	assert_int_equal(f->cfg->n_service_tags, 0);
	assert_int_equal(f->cfg->n_service_meta, 0);
	assert_int_equal(count_lines(warnings_text(f)), 2);
	assert_non_null(strstr(warnings_text(f), "kv key 'config/users/service/tags': expected"));
	assert_non_null(strstr(warnings_text(f), "kv key 'config/users/service/meta': expected"));

	src.kv = NULL;
	src.n_kv = 0;
	assert_true(asprintf(&env_var, "MESHNODE_SERVICE_TAGS=%s", deep_list) > 0);
	env[0] = env_var;
	src.environ = (char *const *)env;
	assert_int_equal(load_on_small_stack(f, &src), MN_CONFIG);
	assert_non_null(strstr(errors_text(f), "environment variable 'MESHNODE_SERVICE_TAGS'"));
	free(env_var);
	free(deep_list);
	free(deep_map);
}

static void test_consul_address_forms(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {"CONSUL_HTTP_ADDR=10.0.0.5:8500", NULL};

	src.environ = (char *const *)env;
	load_ok(f, &src);
	assert_string_equal(f->cfg->consul_address, "http://10.0.0.5:8500");
	env[0] = "CONSUL_HTTP_ADDR=https://[::1]:8501";
	load_ok(f, &src);
	assert_string_equal(f->cfg->consul_address, "https://[::1]:8501");
	env[0] = "CONSUL_HTTP_ADDR=10.0.0.5";
	assert_int_equal(load(f, &src), MN_CONFIG);
	/* no whitespace or control character, in either form; the error is
	 * one line that does not repeat the value */
	env[0] = "CONSUL_HTTP_ADDR=http://127.0.0.1:8500\r\n{\"level\":\"error\"}";
	load_fails_with(f, &src,
			"environment variable 'CONSUL_HTTP_ADDR': expected an http:// or https:// "
			"url or host:port");
	env[0] = "CONSUL_HTTP_ADDR=127.0.0.1:8500\n";
	assert_int_equal(load(f, &src), MN_CONFIG);
	env[0] = "CONSUL_HTTP_ADDR=http://consul\x1b:8500";
	assert_int_equal(load(f, &src), MN_CONFIG);
	env[0] = "CONSUL_HTTP_ADDR=https://consul :8500";
	assert_int_equal(load(f, &src), MN_CONFIG);
}

static void test_derived_service_id_invalid(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};

	src.hostname = "bad/host";
	assert_int_equal(load(f, &src), MN_CONFIG);
	assert_non_null(strstr(errors_text(f), "key 'service.id': "));
}

/* Peers are found by name whatever the order their settings sort in
 * ("peers.a-b.x" sorts before "peers.a.x", the names the other way). */
static void test_peer_lookup_by_name(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {.hostname = "host1"};
	const char *names[] = {"b", "a-b", "a", "ab", "a0", "a1"};

	src.file_path = write_file(f, "a.cfg",
				   "peers = { b = { retries = 1; }; a-b = { retries = 2; };\n"
				   "  a = { retries = 3; }; ab = { retries = 4; };\n"
				   "  a0 = { retries = 5; }; };\n");
	load_ok(f, &src);
	assert_int_equal(f->cfg->n_peers, 5);
	for (int i = 0; i < 5; i++) {
		const struct peer_settings *p = config_peer_get(f->cfg, names[i]);

		assert_non_null(p->name);
		assert_string_equal(p->name, names[i]);
		assert_int_equal(p->retries, i + 1);
	}
	assert_null(config_peer_get(f->cfg, names[5])->name); /* not configured */
	assert_null(config_peer_get(f->cfg, "")->name);
	assert_null(config_peer_get(f->cfg, NULL)->name);
}

static void test_to_json(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {"MESHNODE_PEERS_USERS_RETRIES=3", "MESHNODE_FEATURES_BETA=true",
			     NULL};
	json_t *js, *e;
	const char *key, *prev = "";
	char origin[256];

	src.file_path = write_file(f, "a.cfg", "\n\nserver = { threads = 16; };\n");
	src.environ = (char *const *)env;
	load_ok(f, &src);
	js = config_to_json(f->cfg);
	assert_non_null(js);
	assert_int_equal(json_object_size(js), N_SETTINGS + N_PEER_SETTINGS + 1);

	e = json_object_get(js, "server.threads");
	assert_int_equal(json_integer_value(json_object_get(e, "value")), 16);
	assert_string_equal(json_string_value(json_object_get(e, "source")), "file");
	snprintf(origin, sizeof(origin), "%s:3", src.file_path);
	assert_string_equal(json_string_value(json_object_get(e, "origin")), origin);
	assert_true(json_is_false(json_object_get(e, "dynamic")));

	e = json_object_get(js, "log.level");
	assert_string_equal(json_string_value(json_object_get(e, "value")), "info");
	assert_string_equal(json_string_value(json_object_get(e, "source")), "default");
	assert_true(json_is_null(json_object_get(e, "origin")));
	assert_true(json_is_true(json_object_get(e, "dynamic")));

	e = json_object_get(js, "peers.users.retries");
	assert_int_equal(json_integer_value(json_object_get(e, "value")), 3);
	assert_string_equal(json_string_value(json_object_get(e, "origin")),
			    "MESHNODE_PEERS_USERS_RETRIES");
	e = json_object_get(js, "peers.users.lb");
	assert_string_equal(json_string_value(json_object_get(e, "value")), "round_robin");
	e = json_object_get(js, "features.beta");
	assert_true(json_is_true(json_object_get(e, "value")));
	e = json_object_get(js, "service.modules");
	assert_true(json_is_array(json_object_get(e, "value")));
	assert_string_equal(json_string_value(json_array_get(json_object_get(e, "value"), 0)),
			    "users");

	json_object_foreach(js, key, e) {
		assert_true(strcmp(prev, key) < 0);
		prev = key;
	}
	json_decref(js);
}

/* The shipped file loads cleanly and gives exactly the defaults. */
static void test_shipped_config_equals_defaults(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	struct config *defaults = NULL;
	const char *top = getenv("MESHNODE_TOP");
	char path[4096];
	size_t n_file = 0;

	snprintf(path, sizeof(path), "%s/config/meshnode.cfg", top ? top : ".");
	assert_int_equal(access(path, R_OK), 0);
	src.hostname = "host1";
	assert_int_equal(config_load(&src, &defaults, NULL, NULL), MN_OK);
	src.file_path = path;
	load_ok(f, &src);
	assert_string_equal(warnings_text(f), "");
	assert_int_equal(f->cfg->n_entries, defaults->n_entries);
	for (size_t i = 0; i < defaults->n_entries; i++) {
		const struct config_entry *d = &defaults->entries[i];
		const struct config_entry *e = config_entry_find(f->cfg, d->name);

		assert_non_null(e);
		if (!json_equal(d->value, e->value))
			print_error("setting '%s' differs from its default\n", d->name);
		assert_true(json_equal(d->value, e->value));
		if (e->source == CONFIG_SRC_FILE)
			n_file++;
	}
	/* all but the three derived defaults are written out */
	assert_int_equal(n_file, defaults->n_entries - 3);
	config_destroy(defaults);
}

/* A reload: a static setting changed in KV keeps its running value and is
 * reported pending; dynamic ones take the new value. */
static void test_reload_pins_static_settings(void **state)
{
	struct fixture *f = *state;
	const struct config_kv_pair first[] = {{"config/users/log/level", "debug"}};
	const struct config_kv_pair second[] = {
		{"config/users/log/level", "warn"},
		{"config/users/server/threads", "32"},
		{"config/users/features/beta", "true"},
	};
	struct config_sources src = {.kv = first, .n_kv = 1, .kv_index = 5};
	struct config *running;

	load_ok(f, &src);
	running = f->cfg;
	f->cfg = NULL;
	assert_int_equal(running->n_pending_restart, 0);

	src = (struct config_sources){.kv = second, .n_kv = 3, .kv_index = 9, .running = running};
	load_ok(f, &src);
	assert_string_equal(f->cfg->log_level, "warn");
	assert_true(config_feature_enabled(f->cfg, "beta"));
	assert_int_equal(f->cfg->threads, 512);
	assert_entry(f->cfg, "server.threads", CONFIG_SRC_DEFAULT, NULL);
	assert_int_equal(f->cfg->n_pending_restart, 1);
	assert_string_equal(f->cfg->pending_restart[0], "server.threads");
	assert_int_equal(f->cfg->kv_index, 9);
	config_destroy(running);
}

/* A reload: a refused KV value keeps the KV value in force (the last good
 * one), not the file's; at first load there is none, so the file's stays. */
static void test_reload_refused_kv_keeps_last_good(void **state)
{
	struct fixture *f = *state;
	const struct config_kv_pair good[] = {{"config/users/log/level", "debug"}};
	const struct config_kv_pair bad[] = {{"config/users/log/level", "loud"}};
	struct config_sources src = {.kv = good, .n_kv = 1};
	struct config *running;

	load_ok(f, &src);
	running = f->cfg;
	f->cfg = NULL;
	src = (struct config_sources){.kv = bad, .n_kv = 1, .running = running};
	load_ok(f, &src);
	assert_string_equal(f->cfg->log_level, "debug");
	assert_entry(f->cfg, "log.level", CONFIG_SRC_KV, "config/users/log/level");
	assert_non_null(strstr(warnings_text(f), "kv key 'config/users/log/level'"));
	assert_non_null(strstr(warnings_text(f), "keeping the value in force"));

	/* a deleted key falls back to the default */
	src = (struct config_sources){.running = running, .kv = bad, .n_kv = 0};
	load_ok(f, &src);
	assert_string_equal(f->cfg->log_level, "info");
	assert_entry(f->cfg, "log.level", CONFIG_SRC_DEFAULT, NULL);
	config_destroy(running);
}

/* Keys that name no setting are one warning per prefix: their count and
 * the first three, never one line each. */
static void test_kv_unknown_keys_are_one_warning_per_prefix(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	struct config_kv_pair kv[12];
	char keys[12][64];

	for (size_t i = 0; i < 10; i++) {
		snprintf(keys[i], sizeof(keys[i]), "config/users/flood/k%02zu", i);
		kv[i] = (struct config_kv_pair){keys[i], "x"};
	}
	kv[10] = (struct config_kv_pair){"config/shared/nope", "1"};
	kv[11] = (struct config_kv_pair){"config/users/log/level", "debug"};
	src.kv = kv;
	src.n_kv = 12;
	load_ok(f, &src);
	assert_string_equal(f->cfg->log_level, "debug");
	assert_string_equal(
		warnings_text(f),
		"kv: 1 key under 'config/shared/' names no setting and is ignored "
		"('config/shared/nope')\n"
		"kv: 10 keys under 'config/users/' name no setting and are ignored "
		"(e.g. 'config/users/flood/k00', 'config/users/flood/k01', "
		"'config/users/flood/k02', ...)\n");

	/* three: all shown, no "e.g." */
	src.n_kv = 3;
	load_ok(f, &src);
	assert_string_equal(warnings_text(f),
			    "kv: 3 keys under 'config/users/' name no setting and are ignored "
			    "('config/users/flood/k00', 'config/users/flood/k01', "
			    "'config/users/flood/k02')\n");
}

/* Refused values of real settings stay one line each, until the buffer
 * nears its cap: then the others are counted and one last line says how
 * many were not shown. The buffer is never freed by an overflow. */
static void test_warnings_near_the_cap_are_counted(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {.hostname = "host1"};
	struct config_kv_pair kv[200];
	char keys[200][64];
	struct buf warnings;
	size_t shown, more = 0;
	const char *last;

	for (size_t i = 0; i < 200; i++) {
		snprintf(keys[i], sizeof(keys[i]), "config/users/peers/p%03zu/retries", i);
		kv[i] = (struct config_kv_pair){keys[i], "-1"};
	}
	src.kv = kv;
	src.n_kv = 200;
	buf_init(&warnings, 2048);
	assert_int_equal(config_load(&src, &f->cfg, NULL, &warnings), MN_OK);
	assert_non_null(warnings.data);
	assert_true(warnings.len <= 2048);
	assert_true(warnings.data[warnings.len - 1] == '\n');
	shown = count_lines(warnings.data) - 1;
	assert_true(shown > 10);
	last = strrchr(warnings.data, '\n');
	while (last > warnings.data && last[-1] != '\n')
		last--;
	assert_int_equal(sscanf(last, "%zu more warnings not shown\n", &more), 1);
	assert_int_equal(shown + more, 200);
	/* what is shown is the first lines, whole */
	assert_non_null(strstr(warnings.data, "kv key 'config/users/peers/p000/retries': expected "
					      "an integer between 0 and 10\n"));
	assert_null(strstr(warnings.data, "p199"));
	/* the refused values were ignored: the peers have their defaults */
	assert_int_equal(f->cfg->n_peers, 0);
	buf_release(&warnings);
}

/* The same for errors: one line each while they fit, then a count. */
static void test_errors_near_the_cap_are_counted(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {.hostname = "host1"};
	char vars[100][64], *env[101];
	struct buf errors;
	size_t more = 0;
	const char *last;

	for (size_t i = 0; i < 100; i++) {
		snprintf(vars[i], sizeof(vars[i]), "MESHNODE_PEERS_P%03zu_TIMEOUT_MS=soon", i);
		env[i] = vars[i];
	}
	env[100] = NULL;
	src.environ = env;
	buf_init(&errors, 1024);
	assert_int_equal(config_load(&src, &f->cfg, &errors, NULL), MN_CONFIG);
	assert_null(f->cfg);
	assert_non_null(errors.data);
	assert_true(errors.len <= 1024);
	last = strrchr(errors.data, '\n');
	while (last > errors.data && last[-1] != '\n')
		last--;
	assert_int_equal(sscanf(last, "%zu more errors not shown\n", &more), 1);
	assert_int_equal(count_lines(errors.data) - 1 + more, 100);
	buf_release(&errors);
}

/* A 10,000-key listing of every kind at once (valid peer settings, names
 * of no setting, refused values) loads with the right result: correctness
 * at a size where the old linear lookups were quadratic. No timing here:
 * bench/kv_reload.c measures it. */
static void test_ten_thousand_key_listing(void **state)
{
	struct fixture *f = *state;
	enum { N = 10000 };
	struct config_kv_pair *kv = calloc(N, sizeof(*kv));
	char (*keys)[64] = calloc(N, sizeof(*keys));
	char (*values)[16] = calloc(N, sizeof(*values));
	struct config_sources src = {0};
	struct config *running;
	size_t n_valid = 0, n_unknown = 0, n_refused = 0, more = 0;
	const struct peer_settings *p;
	const char *line;
	char want[256];

	assert_non_null(kv);
	assert_non_null(keys);
	assert_non_null(values);
	for (size_t i = 0; i < N; i++) {
		switch (i % 3) {
		case 0: /* valid */
			snprintf(keys[i], sizeof(keys[i]), "config/users/peers/p%zu/timeout_ms", i);
			snprintf(values[i], sizeof(values[i]), "%zu", 1000 + i);
			n_valid++;
			break;
		case 1: /* names no setting */
			snprintf(keys[i], sizeof(keys[i]), "config/users/flood/k%05zu", i);
			snprintf(values[i], sizeof(values[i]), "x");
			n_unknown++;
			break;
		default: /* refused value of a real setting */
			snprintf(keys[i], sizeof(keys[i]), "config/users/peers/q%zu/retries", i);
			snprintf(values[i], sizeof(values[i]), "many");
			n_refused++;
			break;
		}
		kv[i] = (struct config_kv_pair){keys[i], values[i]};
	}
	src.kv = kv;
	src.n_kv = N;
	load_ok(f, &src);
	assert_int_equal(f->cfg->n_peers, n_valid);
	for (size_t i = 0; i < N; i += 3) {
		char name[32];

		snprintf(name, sizeof(name), "p%zu", i);
		p = config_peer_get(f->cfg, name);
		assert_non_null(p->name);
		assert_int_equal(p->timeout_ms, 1000 + (int)i);
		assert_int_equal(p->retries, 2);
		assert_string_equal(p->lb, "round_robin");
	}
	assert_null(config_peer_get(f->cfg, "q2")->name);
	/* the settings of their own plus the peers.* rows of each valid peer */
	assert_int_equal(f->cfg->n_entries, N_SETTINGS + N_PEER_SETTINGS * n_valid);
	for (size_t i = 1; i < f->cfg->n_entries; i++)
		assert_true(strcmp(f->cfg->entries[i - 1].name, f->cfg->entries[i].name) < 0);

	/* the warnings: one line per refused value while they fit, the count
	 * of the rest, and the one line of the unknown names, which comes
	 * last and so is part of the count too */
	assert_true(f->warnings.len <= 1 << 16);
	line = strrchr(warnings_text(f), '\n');
	assert_non_null(line);
	while (line > warnings_text(f) && line[-1] != '\n')
		line--;
	assert_int_equal(sscanf(line, "%zu more warnings not shown\n", &more), 1);
	assert_int_equal(count_lines(warnings_text(f)) - 1 + more, n_refused + 1);
	snprintf(want, sizeof(want), "kv key 'config/users/peers/q2/retries': expected an integer "
				     "between 0 and 10\n");
	assert_non_null(strstr(warnings_text(f), want));

	/* as a reload against itself: the same result */
	running = f->cfg;
	f->cfg = NULL;
	src.running = running;
	load_ok(f, &src);
	assert_int_equal(f->cfg->n_entries, running->n_entries);
	assert_int_equal(f->cfg->n_peers, n_valid);
	config_destroy(running);

	/* and without the refused values, the unknown names are one line */
	for (size_t i = 2; i < N; i += 3)
		kv[i] = (struct config_kv_pair){"config/users/", NULL}; /* a folder */
	src = (struct config_sources){.kv = kv, .n_kv = N};
	load_ok(f, &src);
	snprintf(want, sizeof(want),
		 "kv: %zu keys under 'config/users/' name no setting and are ignored (e.g. "
		 "'config/users/flood/k00001', 'config/users/flood/k00004', "
		 "'config/users/flood/k00007', ...)\n",
		 n_unknown);
	assert_string_equal(warnings_text(f), want);
	free(kv);
	free(keys);
	free(values);
}

/* consul.kv_max_keys and consul.kv_max_bytes: a listing is refused whole
 * past either, with the reason naming the setting. */
static void test_kv_listing_bounds(void **state)
{
	struct fixture *f = *state;
	struct config_sources src = {0};
	const char *env[] = {"MESHNODE_CONSUL_KV_MAX_KEYS=100", NULL};
	char why[160] = "";

	load_ok(f, &src);
	assert_true(config_kv_listing_fits(f->cfg, 0, false, why, sizeof(why)));
	assert_true(config_kv_listing_fits(f->cfg, 10000, false, why, sizeof(why)));
	assert_string_equal(why, "");
	assert_false(config_kv_listing_fits(f->cfg, 10001, false, why, sizeof(why)));
	assert_string_equal(why, "10001 keys, more than consul.kv_max_keys (10000)");
	assert_false(config_kv_listing_fits(f->cfg, 3, true, why, sizeof(why)));
	assert_string_equal(why, "larger than consul.kv_max_bytes (4194304 bytes)");

	src.environ = (char *const *)env;
	load_ok(f, &src);
	assert_true(config_kv_listing_fits(f->cfg, 100, false, why, sizeof(why)));
	assert_false(config_kv_listing_fits(f->cfg, 101, false, why, sizeof(why)));
	assert_string_equal(why, "101 keys, more than consul.kv_max_keys (100)");
}

/* KV cannot lift its own caps: they are read before KV is. */
static void test_kv_cannot_set_its_caps(void **state)
{
	struct fixture *f = *state;
	const struct config_kv_pair kv[] = {
		{"config/users/consul/kv_max_keys", "1000000"},
		{"config/shared/consul/kv_max_bytes", "268435456"},
	};
	struct config_sources src = {.kv = kv, .n_kv = 2};

	load_ok(f, &src);
	assert_int_equal(f->cfg->consul_kv_max_keys, 10000);
	assert_int_equal(f->cfg->consul_kv_max_bytes, 4194304);
	assert_string_equal(warnings_text(f),
			    "kv key 'config/shared/consul/kv_max_bytes': 'consul.kv_max_bytes' "
			    "cannot be set from consul kv\n"
			    "kv key 'config/users/consul/kv_max_keys': 'consul.kv_max_keys' cannot "
			    "be set from consul kv\n");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_defaults),
		T(test_default_hostname_from_system),
		T(test_file_overrides_defaults),
		T(test_file_int_accepts_plain_and_int64),
		T(test_file_type_mismatch),
		T(test_file_out_of_range),
		T(test_admin_settings_refused),
		T(test_admin_port_is_not_the_service_port),
		T(test_connect_needs_the_admin_listener),
		T(test_file_unknown_enum),
		T(test_file_unknown_key),
		T(test_file_syntax_error),
		T(test_file_invalid_utf8),
		T(test_file_float_overflow),
		T(test_file_float_overflow_in_list),
		T(test_file_bad_values_of_every_kind),
		T(test_file_missing),
		T(test_env_overrides_file),
		T(test_env_secrets_trimmed),
		T(test_document_pages),
		T(test_every_setting_in_its_field),
		T(test_default_peer_is_the_rows_defaults),
		T(test_settings_fields),
		T(test_settings_env_aliases),
		T(test_env_alias_order_independent),
		T(test_env_errors),
		T(test_file_and_env_errors_together),
		T(test_token_file_wins_and_is_redacted),
		T(test_token_env_only_and_empty),
		T(test_token_file_unreadable),
		T(test_secret_not_in_file_error),
		T(test_database_env_aliases),
		T(test_database_password_change_redacted),
		T(test_database_settings_refused),
		T(test_kv_layers),
		T(test_kv_bad_value_keeps_file_value),
		T(test_kv_key_with_control_characters_is_one_warning),
		T(test_env_beats_kv),
		T(test_kv_prefix_follows_service_name),
		T(test_kv_prefix_explicit),
		T(test_consul_register),
		T(test_peers_and_features_from_every_layer),
		T(test_long_peer_name),
		T(test_lists_and_maps_from_text),
		T(test_deep_json_values_refused),
		T(test_consul_address_forms),
		T(test_derived_service_id_invalid),
		T(test_peer_lookup_by_name),
		T(test_unknown_names_get_the_closest_setting),
		T(test_env_typo_named),
		T(test_changes_one_line_per_setting),
		T(test_file_layer_kept),
		T(test_to_json),
		T(test_shipped_config_equals_defaults),
		T(test_reload_pins_static_settings),
		T(test_reload_refused_kv_keeps_last_good),
		T(test_kv_unknown_keys_are_one_warning_per_prefix),
		T(test_warnings_near_the_cap_are_counted),
		T(test_errors_near_the_cap_are_counted),
		T(test_ten_thousand_key_listing),
		T(test_kv_listing_bounds),
		T(test_kv_cannot_set_its_caps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
