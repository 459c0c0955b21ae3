#include "settings.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/config.h"
#include "core/hostport.h"
#include "core/json_depth.h"
#include "core/text.h"

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const log_formats[] = {"json", "text", NULL};
static const char *const db_drivers[] = {"sqlite", "memory", "postgres", NULL};
/* libpq's own values, nothing else: libpq would refuse any other at connect
 * time, after the node had started. */
static const char *const db_sslmodes[] = {"disable", "allow",	  "prefer",
					  "require", "verify-ca", "verify-full", NULL};
static const char *const lb_policies[] = {"round_robin", "random", "least_inflight", NULL};
static const char *const discoveries[] = {"http", "dns", NULL};
static const char *const modules[] = {"users", "orders", NULL};

static enum setting_verdict service_name_ok(json_t **value)
{
	const char *s = json_string_value(*value);
	size_t n = strlen(s);

	if (n < 1 || n > 63 || !settings_name_valid(s, n, true))
		return SETTING_REFUSED;
	return SETTING_OK;
}

static enum setting_verdict service_id_ok(json_t **value)
{
	const char *s = json_string_value(*value);
	size_t n = strlen(s);

	if (n < 1 || n > 128 || strchr(s, '/'))
		return SETTING_REFUSED;
	return SETTING_OK;
}

static enum setting_verdict meta_ok(json_t **value)
{
	const char *key;
	json_t *v;

	json_object_foreach(*value, key, v) {
		size_t n = strlen(key);

		if (n > 128 || !settings_name_valid(key, n, false))
			return SETTING_REFUSED;
	}
	return SETTING_OK;
}

/* The agent's DNS interface: a numeric IPv4 address or a bracketed IPv6
 * one, and a port ("127.0.0.1:8600", "[::1]:8600"). */
static enum setting_verdict dns_address_ok(json_t **value)
{
	return hostport_parse_ip(json_string_value(*value), NULL, NULL) ? SETTING_OK
									: SETTING_REFUSED;
}

/* "http://h:p" and "https://h:p" as given; a bare "host:port" gets http://. */
static enum setting_verdict consul_address_ok(json_t **value)
{
	const char *s = json_string_value(*value);
	const char *colon, *p;
	json_t *norm;
	char *tmp;
	size_t n;

	/* Whitespace or a control character has no place in a URL, and a
	 * CR/LF would follow the address into every line that names it. */
	for (p = s; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			goto out_refuse;
	if (strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0) {
		p = strstr(s, "://") + 3;
		if (*p != '\0' && *p != '/')
			return SETTING_OK;
		goto out_refuse;
	}
	if (strstr(s, "://"))
		goto out_refuse;
	colon = strrchr(s, ':');
	if (colon == NULL || colon == s || colon[1] == '\0')
		goto out_refuse;
	for (p = colon + 1; *p; p++)
		if (!isdigit((unsigned char)*p))
			goto out_refuse;
	for (p = s; p < colon; p++)
		if (*p == '/' || isspace((unsigned char)*p))
			goto out_refuse;
	n = strlen(s);
	tmp = malloc(n + 8);
	if (tmp == NULL)
		goto out_nomem;
	memcpy(tmp, "http://", 7);
	memcpy(tmp + 7, s, n + 1);
	norm = json_string(tmp);
	free(tmp);
	if (norm == NULL)
		goto out_nomem;
	json_decref(*value);
	*value = norm;
	return SETTING_OK;
out_nomem:
	return SETTING_NOMEM;
out_refuse:
	return SETTING_REFUSED;
}

/* Host names, user and database names go into libpq's parameters and into
 * log lines: a control character has no place in any of them. */
static enum setting_verdict no_controls_ok(json_t **value)
{
	for (const char *p = json_string_value(*value); *p; p++)
		if ((unsigned char)*p < ' ' || *p == 0x7f)
			return SETTING_REFUSED;
	return SETTING_OK;
}

/* A listener's address: civetweb here listens on IPv4 only, and the check
 * URL and the one-socket rule (config.c) compare addresses as parsed. */
static enum setting_verdict ipv4_ok(json_t **value)
{
	struct in_addr a;

	return inet_pton(AF_INET, json_string_value(*value), &a) == 1 ? SETTING_OK
									: SETTING_REFUSED;
}

static enum setting_verdict kv_prefix_ok(json_t **value)
{
	const char *s = json_string_value(*value);
	size_t n = strlen(s);

	if (n == 0 || s[n - 1] != '/' || s[0] == '/')
		return SETTING_REFUSED;
	return SETTING_OK;
}

/* The rules beyond type and bounds, with what they expect in words: the
 * refusal message ("expected ...") and the reference (make docs). */
static const struct setting_rule check_service_name = {
	service_name_ok, "1 to 63 characters from a-z, 0-9 and '-'"};
static const struct setting_rule check_service_id = {
	service_id_ok, "1 to 128 characters without '/'"};
static const struct setting_rule check_meta = {
	meta_ok, "meta keys of 1 to 128 characters from A-Z, a-z, 0-9, '_' and '-'"};
static const struct setting_rule check_dns_address = {
	dns_address_ok, "an IP address and a port: 127.0.0.1:8600 or [::1]:8600"};
static const struct setting_rule check_consul_address = {
	consul_address_ok, "an http:// or https:// url or host:port"};
static const struct setting_rule check_no_controls = {
	no_controls_ok, "no control characters"};
static const struct setting_rule check_ipv4 = {
	ipv4_ok, "a numeric IPv4 address: 127.0.0.1, or 0.0.0.0 for every address"};
static const struct setting_rule check_kv_prefix = {
	kv_prefix_ok, "a key prefix ending with '/'"};

#define STR(n, d, lo, chk, dyn, ...)                                                          \
	{.name = n, .type = SETTING_STRING, .default_text = d, .min = lo, .check = chk,        \
	 .dynamic = dyn, __VA_ARGS__}
#define ENUM(n, d, list, dyn, ...)                                                             \
	{.name = n, .type = SETTING_STRING, .default_text = d, .choices = list, .dynamic = dyn, \
	 __VA_ARGS__}
#define INT(n, d, lo, hi, dyn, ...)                                                            \
	{.name = n, .type = SETTING_INT, .default_text = d, .min = lo, .max = hi,              \
	 .dynamic = dyn, __VA_ARGS__}
#define BOOL(n, d, dyn, ...) \
	{.name = n, .type = SETTING_BOOL, .default_text = d, .dynamic = dyn, __VA_ARGS__}

/* Where a value lives: a field of struct config, of struct peer_settings
 * (the peers.* rows), a list with its count, a map's keys and values with
 * their count, a two-choice string kept as a bool. */
#define FIELD_SIZE(type, f) sizeof(((type *)0)->f)
#define AT(f) .offset = offsetof(struct config, f), .size = FIELD_SIZE(struct config, f)
#define AT_LIST(f, n) AT(f), .offset_n = offsetof(struct config, n)
#define AT_MAP(keys, values, n) \
	AT(keys), .offset_values = offsetof(struct config, values), \
		  .offset_n = offsetof(struct config, n)
#define AT_PEER(f) \
	.offset = offsetof(struct peer_settings, f), .size = FIELD_SIZE(struct peer_settings, f)
#define AT_PEER_FLAG(f) AT_PEER(f), .flag = true

/* Sorted by name, so the effective config lists them in order. */
const struct setting_def settings_table[] = {
	/* the admin listener (issue 23): /health, /ready, /metrics, /config
	 * and /peers in plain HTTP, apart from the service port; port 0 is
	 * off. 8 threads: an agent's check, a scraper and an operator at once,
	 * with room to spare; its own workers, so a service port with every
	 * worker busy never holds the check. */
	STR("admin.address", "127.0.0.1", 1, &check_ipv4, false, AT(admin_address)),
	INT("admin.port", "0", 0, 65535, false, AT(admin_port)),
	INT("admin.threads", "8", 2, 64, false, AT(admin_threads)),
	/* Connect (issue 23): the service port serves only mutual TLS with
	 * this node's leaf, callers checked against the roots and the
	 * intentions (docs/connect.md); needs admin.port for the check */
	BOOL("connect.authz_fail_open", "false", true, AT(connect_authz_fail_open)),
	BOOL("connect.enabled", "false", false, AT(connect_enabled)),
	{.name = "consul.address", .type = SETTING_STRING, .default_text = "http://127.0.0.1:8500",
	 .min = 1, .check = &check_consul_address, .env = "CONSUL_HTTP_ADDR", .env_order = 4,
	 AT(consul_address)},
	INT("consul.check_interval_ms", "10000", 1000, 3600000, false,
	    AT(consul_check_interval_ms)),
	INT("consul.check_timeout_ms", "2000", 100, 600000, false, AT(consul_check_timeout_ms)),
	INT("consul.deregister_critical_after_ms", "60000", 1000, 86400000, false,
	    AT(consul_deregister_critical_after_ms)),
	STR("consul.dns_address", "127.0.0.1:8600", 1, &check_dns_address, false,
	    AT(consul_dns_address)),
	INT("consul.kv_max_bytes", "4194304", 1024, 268435456, false, AT(consul_kv_max_bytes)),
	INT("consul.kv_max_keys", "10000", 1, 1000000, false, AT(consul_kv_max_keys)),
	{.name = "consul.kv_prefix", .type = SETTING_STRING,
	 .default_text = "config/<service.name>/",
	 .check = &check_kv_prefix, .derived = true, AT(consul_kv_prefix)},
	BOOL("consul.register", "true", false, AT(consul_register)),
	BOOL("consul.required", "false", false, AT(consul_required)),
	/* an HTTP header: no line break may reach it */
	{.name = "consul.token", .type = SETTING_STRING, .default_text = "",
	 .check = &check_no_controls, .secret = true, .env = "CONSUL_HTTP_TOKEN", .env_order = 5,
	 .env_file = "CONSUL_HTTP_TOKEN_FILE", AT(consul_token)},
	INT("consul.watch_idle_ms", "600000", 0, 86400000, false, AT(consul_watch_idle_ms)),
	INT("consul.watch_max_bytes", "67108864", 65536, 1073741824, false,
	    AT(consul_watch_max_bytes)),
	INT("consul.watch_max_services", "32", 1, 1000, false, AT(consul_watch_max_services)),
	INT("consul.watch_wait_ms", "30000", 1000, 600000, false, AT(consul_watch_wait_ms)),
	/* 1000: a pooled connection is free within a millisecond when the
	 * database answers; a second of waiting leaves most of a peer's 5 s
	 * for the statement itself (pg_pool.h) */
	INT("database.acquire_timeout_ms", "1000", 1, 600000, false,
	    AT(database_acquire_timeout_ms)),
	INT("database.connect_timeout_ms", "5000", 100, 600000, false,
	    AT(database_connect_timeout_ms)),
	ENUM("database.driver", "sqlite", db_drivers, false, AT(database_driver)),
	{.name = "database.host", .type = SETTING_STRING, .default_text = "localhost", .min = 1,
	 .check = &check_no_controls, .env = "DB_HOST", .env_order = 6, AT(database_host)},
	{.name = "database.name", .type = SETTING_STRING, .default_text = "myapp", .min = 1,
	 .check = &check_no_controls, .env = "DB_NAME", .env_order = 10, AT(database_name)},
	{.name = "database.password", .type = SETTING_STRING, .default_text = "", .secret = true,
	 .env = "DB_PASSWORD", .env_order = 9, AT(database_password)},
	{.name = "database.path", .type = SETTING_STRING, .default_text = "data/<service.name>.db",
	 .min = 1, .derived = true, AT(database_path)},
	/* 8: see pg_pool.h for why (a request holds a connection for one
	 * statement; two nodes share PostgreSQL's 100 connections) */
	/* 128: a pool of 8 serves a burst of that many in a few ms when the
	 * database answers (one node taking the load of a slower one); a stuck
	 * database parks at most pool_size + 128 of the 512 workers */
	INT("database.max_waiters", "128", 1, 100000, false, AT(database_max_waiters)),
	INT("database.pool_size", "8", 1, 1024, false, AT(database_pool_size)),
	{.name = "database.port", .type = SETTING_INT, .default_text = "5432", .min = 1,
	 .max = 65535,
	 .env = "DB_PORT", .env_order = 7, AT(database_port)},
	ENUM("database.sslmode", "prefer", db_sslmodes, false, AT(database_sslmode)),
	{.name = "database.user", .type = SETTING_STRING, .default_text = "postgres", .min = 1,
	 .check = &check_no_controls, .env = "DB_USER", .env_order = 8, AT(database_user)},
	/* events (issue 13): the OrderCreated events of the outbox to RabbitMQ;
	 * AMQP's short strings end at 255 bytes */
	INT("events.batch_size", "100", 1, 1000, true, AT(events_batch_size)),
	{.name = "events.broker_address", .type = SETTING_STRING, .default_text = "", .max = 255,
	 .check = &check_no_controls, .dynamic = true, AT(events_broker_address)},
	STR("events.broker_service", "rabbitmq", 1, &check_service_name, true,
	    AT(events_broker_service)),
	BOOL("events.enabled", "false", true, AT(events_enabled)),
	{.name = "events.password", .type = SETTING_STRING, .default_text = "guest", .max = 255,
	 .secret = true, .dynamic = true, AT(events_password)},
	{.name = "events.queue", .type = SETTING_STRING, .default_text = "orders", .min = 1,
	 .max = 255, .check = &check_no_controls, .dynamic = true, AT(events_queue)},
	INT("events.retention_ms", "86400000", 1000, 2147483647, true, AT(events_retention_ms)),
	{.name = "events.user", .type = SETTING_STRING, .default_text = "guest", .min = 1,
	 .max = 127, .check = &check_no_controls, .dynamic = true, AT(events_user)},
	{.name = "events.vhost", .type = SETTING_STRING, .default_text = "/", .min = 1, .max = 127,
	 .check = &check_no_controls, .dynamic = true, AT(events_vhost)},
	ENUM("log.format", "json", log_formats, true, AT(log_format)),
	{.name = "log.level", .type = SETTING_STRING, .default_text = "info", .choices = log_levels,
	 .dynamic = true, .env = "LOG_LEVEL", .env_order = 3, AT(log_level)},
	BOOL("maintenance", "false", true, AT(maintenance)),
	INT("server.idle_timeout_ms", "120000", 1, 3600000, false, AT(idle_timeout_ms)),
	INT("server.max_body_bytes", "1048576", 1, 1073741824, false, AT(max_body_bytes)),
	INT("server.read_timeout_ms", "5000", 1, 3600000, false, AT(read_timeout_ms)),
	INT("server.shutdown_timeout_ms", "10000", 0, 600000, false, AT(shutdown_timeout_ms)),
	INT("server.threads", "512", 1, 1024, false, AT(threads)),
	INT("server.write_timeout_ms", "10000", 1, 3600000, false, AT(write_timeout_ms)),
	STR("service.address", "127.0.0.1", 1, NULL, false, AT(service_address)),
	{.name = "service.id", .type = SETTING_STRING,
	 .default_text = "<service.name>-<hostname>-<service.port>", .check = &check_service_id,
	 .derived = true, AT(service_id)},
	{.name = "service.meta", .type = SETTING_MAP, .default_text = "{}", .check = &check_meta,
	 AT_MAP(service_meta_keys, service_meta_values, n_service_meta)},
	{.name = "service.modules", .type = SETTING_LIST, .default_text = "users", .min = 1,
	 .choices = modules, AT_LIST(service_modules, n_service_modules)},
	{.name = "service.name", .type = SETTING_STRING, .default_text = "users", .min = 1,
	 .check = &check_service_name, .env = "SERVICE_NAME", .env_order = 1, AT(service_name)},
	{.name = "service.port", .type = SETTING_INT, .default_text = "8080", .min = 1,
	 .max = 65535, .env = "SERVER_PORT", .env_order = 2, AT(service_port)},
	{.name = "service.tags", .type = SETTING_LIST, .default_text = "[]",
	 AT_LIST(service_tags, n_service_tags)},

	/* templates: one set per configured peer / feature */
	INT("peers.*.breaker_failures", "5", 1, 1000, true, AT_PEER(breaker_failures)),
	INT("peers.*.breaker_open_ms", "10000", 100, 3600000, true, AT_PEER(breaker_open_ms)),
	/* with a Connect identity (connect.enabled): found through
	 * /v1/health/connect/<name> and called over mutual TLS; false calls
	 * a service outside the mesh in plain HTTP */
	BOOL("peers.*.connect", "true", true, AT_PEER(connect)),
	INT("peers.*.connect_timeout_ms", "250", 1, 600000, true, AT_PEER(connect_timeout_ms)),
	ENUM("peers.*.discovery", "http", discoveries, true, AT_PEER_FLAG(dns)),
	ENUM("peers.*.lb", "round_robin", lb_policies, true, AT_PEER(lb)),
	INT("peers.*.panic_threshold", "50", 0, 100, true, AT_PEER(panic_threshold)),
	INT("peers.*.retries", "2", 0, 10, true, AT_PEER(retries)),
	STR("peers.*.tag", "", 0, NULL, true, AT_PEER(tag)),
	INT("peers.*.timeout_ms", "5000", 1, 600000, true, AT_PEER(timeout_ms)),
	BOOL("features.*", NULL, true),
};

const size_t settings_count = sizeof(settings_table) / sizeof(settings_table[0]);

bool settings_name_valid(const char *s, size_t len, bool lower)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (islower(c) || isdigit(c) || c == '-')
			continue;
		if (!lower && (isupper(c) || c == '_'))
			continue;
		return false;
	}
	return true;
}

bool settings_is_template(const struct setting_def *def)
{
	return strchr(def->name, '*') != NULL;
}

/* Matches 'name' against 'pattern' segment by segment; '*' takes one
 * segment: a peer name under "peers.", a feature flag under "features.". */
static bool settings_match(const char *pattern, const char *name)
{
	const char *star = strchr(pattern, '*');
	size_t head, seg;
	const char *rest;

	if (star == NULL)
		return strcmp(pattern, name) == 0;
	head = (size_t)(star - pattern);
	if (strncmp(pattern, name, head) != 0)
		return false;
	rest = name + head;
	if (star[1] == '\0') {
		seg = strlen(rest);
		return settings_name_valid(rest, seg, false) && !strchr(rest, '.');
	}
	/* star[1] is '.': the segment, a peer name, runs to the next dot */
	seg = strcspn(rest, ".");
	if (seg > SETTINGS_PEER_NAME_MAX || !settings_name_valid(rest, seg, true))
		return false;
	return strcmp(rest + seg, star + 1) == 0;
}

const struct setting_def *settings_find(const char *name)
{
	/* every setting, templates too, starts with a fixed letter: the
	 * first one rules most of the table out at once (this runs once per
	 * KV key) */
	for (size_t i = 0; i < settings_count; i++)
		if (settings_table[i].name[0] == name[0] &&
		    settings_match(settings_table[i].name, name))
			return &settings_table[i];
	return NULL;
}

static void settings_describe(const struct setting_def *def, char *reason, size_t len)
{
	const char *const *c;
	size_t off;

	switch (def->type) {
	case SETTING_INT:
		snprintf(reason, len, "expected an integer between %lld and %lld", def->min,
			 def->max);
		return;
	case SETTING_BOOL:
		snprintf(reason, len, "expected true or false");
		return;
	case SETTING_MAP:
		snprintf(reason, len, "expected a group of string values");
		return;
	case SETTING_LIST:
		if (def->choices == NULL) {
			snprintf(reason, len, "expected a list of non-empty strings");
			return;
		}
		off = (size_t)snprintf(reason, len, "expected a non-empty list of ");
		break;
	case SETTING_STRING:
		if (def->choices == NULL) {
			snprintf(reason, len, def->min > 0 ? "expected a non-empty string"
							   : "expected a string");
			return;
		}
		off = (size_t)snprintf(reason, len, "expected one of ");
		break;
	default:
		snprintf(reason, len, "unsupported setting type");
		return;
	}
	for (c = def->choices; *c && off < len; c++)
		off += (size_t)snprintf(reason + off, len - off, "%s%s", c == def->choices ? "" : ", ",
					*c);
}

static bool parse_int(const char *text, long long *out)
{
	char *end;
	long long v;

	while (isspace((unsigned char)*text))
		text++;
	if (!isdigit((unsigned char)*text) && *text != '-' && *text != '+')
		return false;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno != 0 || end == text)
		return false;
	while (isspace((unsigned char)*end))
		end++;
	if (*end != '\0')
		return false;
	*out = v;
	return true;
}

static json_t *parse_json(const char *text, json_type type)
{
	json_t *v;

	/* KV and environment values are outside input too */
	if (json_depth_exceeds(text, strlen(text), MN_JSON_MAX_DEPTH))
		return NULL;
	v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);

	if (v && json_typeof(v) != type) {
		json_decref(v);
		return NULL;
	}
	return v;
}

/* "a, b,c" -> ["a","b","c"]; "" -> []; items trimmed. */
static json_t *parse_comma_list(const char *text)
{
	json_t *list = json_array();
	const char *p = text, *end, *a, *b;

	if (list == NULL)
		return NULL;
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0')
		return list;
	for (;;) {
		end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		a = p;
		b = end;
		while (a < b && isspace((unsigned char)*a))
			a++;
		while (b > a && isspace((unsigned char)b[-1]))
			b--;
		if (json_array_append_new(list, json_stringn(a, (size_t)(b - a))) != 0) {
			json_decref(list);
			return NULL;
		}
		if (*end == '\0')
			return list;
		p = end + 1;
	}
}

json_t *settings_parse_text(const struct setting_def *def, const char *text, char *reason,
			    size_t len)
{
	const char *p = text;
	json_t *v = NULL;
	long long n;
	bool b;

	switch (def->type) {
	case SETTING_STRING:
		v = json_string(text);
		break;
	case SETTING_INT:
		if (parse_int(text, &n))
			v = json_integer(n);
		break;
	case SETTING_BOOL:
		if (text_parse_bool(text, &b))
			v = json_boolean(b);
		break;
	case SETTING_LIST:
		while (isspace((unsigned char)*p))
			p++;
		v = *p == '[' ? parse_json(p, JSON_ARRAY) : parse_comma_list(p);
		break;
	case SETTING_MAP:
		v = parse_json(text, JSON_OBJECT);
		break;
	}
	if (v == NULL)
		settings_describe(def, reason, len);
	return v;
}

static bool check_string(const struct setting_def *def, const char *s, char *reason, size_t len)
{
	size_t n = strlen(s);

	if ((long long)n < def->min || (def->max > 0 && (long long)n > def->max))
		goto out_refuse;
	if (def->choices) {
		for (const char *const *c = def->choices; *c; c++)
			if (strcmp(*c, s) == 0)
				return true;
		goto out_refuse;
	}
	return true;
out_refuse:
	settings_describe(def, reason, len);
	return false;
}

bool settings_check(const struct setting_def *def, json_t **value, char *reason, size_t len)
{
	json_t *v = *value, *item;
	const char *key;
	size_t i;
	long long n;

	switch (def->type) {
	case SETTING_STRING:
		if (!json_is_string(v) || !check_string(def, json_string_value(v), reason, len))
			goto out_refuse;
		break;
	case SETTING_INT:
		if (!json_is_integer(v))
			goto out_refuse;
		n = json_integer_value(v);
		if (n < def->min || n > def->max)
			goto out_refuse;
		break;
	case SETTING_BOOL:
		if (!json_is_boolean(v))
			goto out_refuse;
		break;
	case SETTING_LIST:
		if (!json_is_array(v) || (long long)json_array_size(v) < def->min)
			goto out_refuse;
		json_array_foreach(v, i, item) {
			const char *s = json_string_value(item);

			if (s == NULL || *s == '\0')
				goto out_refuse;
			if (def->choices) {
				const char *const *c;

				for (c = def->choices; *c && strcmp(*c, s) != 0; c++)
					;
				if (*c == NULL)
					goto out_refuse;
			}
		}
		break;
	case SETTING_MAP:
		if (!json_is_object(v))
			goto out_refuse;
		json_object_foreach(v, key, item)
			if (!json_is_string(item))
				goto out_refuse;
		break;
	}
	if (def->check == NULL)
		return true;
	switch (def->check->ok(value)) {
	case SETTING_OK:
		return true;
	case SETTING_NOMEM:
		snprintf(reason, len, "out of memory");
		return false;
	case SETTING_REFUSED:
		break;
	}
	snprintf(reason, len, "expected %s", def->check->expects);
	return false;
out_refuse:
	settings_describe(def, reason, len);
	return false;
}

/* Edit distance of a and b (each at most 127 bytes compared), with
 * insertions, deletions and substitutions. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[128];

	if (la > 127)
		la = 127;
	if (lb > 127)
		lb = 127;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			diag = up;
			row[j] = best;
		}
	}
	return row[lb];
}

/* A dotted name in its MESHNODE_ form: "SERVER_THREADS". */
static void env_form(const char *name, char *out, size_t len)
{
	size_t i = 0;

	for (; name[i] && i + 1 < len; i++)
		out[i] = name[i] == '.' ? '_' : (char)toupper((unsigned char)name[i]);
	out[i] = '\0';
}

bool settings_closest(const char *name, bool env, char *out, size_t len)
{
	size_t best = SIZE_MAX, limit = strlen(name) / 3;
	char form[160], cand[160];
	const char *seg_end = NULL;

	if (limit > 2)
		limit = 2;
	/* a configured peer's settings: "peers.<name>.<setting>" */
	if (!env && strncmp(name, "peers.", 6) == 0)
		seg_end = strchr(name + 6, '.');
	for (size_t i = 0; i < settings_count; i++) {
		const char *s = settings_table[i].name;
		size_t d;

		if (settings_is_template(&settings_table[i])) {
			if (seg_end == NULL || strncmp(s, "peers.*.", 8) != 0)
				continue;
			snprintf(cand, sizeof(cand), "%.*s%s", (int)(seg_end + 1 - name), name,
				 s + 8);
		} else {
			snprintf(cand, sizeof(cand), "%s", s);
		}
		if (env) {
			env_form(cand, form, sizeof(form));
			d = edit_distance(name, form);
		} else {
			d = edit_distance(name, cand);
		}
		if (d > 0 && d <= limit && d < best) {
			best = d;
			snprintf(out, len, "%s", cand);
		}
	}
	return best != SIZE_MAX;
}
