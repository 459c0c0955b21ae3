/* Effective configuration: built-in defaults < libconfig file < Consul KV <
 * environment. Every value remembers where it came from. A loaded config is
 * immutable: readers share it, a reload builds a new one. */
#ifndef MESHNODE_CONFIG_CONFIG_H
#define MESHNODE_CONFIG_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/error.h"
#include "peers/peer_settings.h"

enum config_source {
	CONFIG_SRC_DEFAULT,
	CONFIG_SRC_FILE,
	CONFIG_SRC_KV,
	CONFIG_SRC_ENV,
};

/* "default", "file", "kv", "env". */
const char *config_source_name(enum config_source src);

struct config_feature {
	char *name;
	bool enabled;
};

/* One effective setting as shown by --print-config and GET /config. */
struct config_entry {
	char *name;               /* dotted name: "server.threads", "features.beta" */
	json_t *value;            /* owned: string, integer, boolean, array or object */
	enum config_source source;
	char *origin;             /* "config/meshnode.cfg:12", "config/users/log/level",
				     "MESHNODE_SERVER_THREADS"; NULL for defaults */
	bool secret;              /* shown as "<redacted>" */
	bool dynamic;             /* may change while running (docs/configuration.md) */
};

struct config {
	/* service */
	char *service_name;
	char *service_id;
	char *service_address;
	int service_port;
	char **service_tags;      /* n_service_tags strings */
	size_t n_service_tags;
	char **service_meta_keys; /* parallel arrays, n_service_meta entries */
	char **service_meta_values;
	size_t n_service_meta;
	char **service_modules;   /* "users", "orders" */
	size_t n_service_modules;

	/* admin: the admin listener, off when admin_port is 0 */
	char *admin_address;      /* numeric IPv4: "127.0.0.1" */
	int admin_port;
	int admin_threads;

	/* connect: the service port in mutual TLS as a Connect native service */
	bool connect_enabled;
	bool connect_authz_fail_open; /* dynamic */

	/* server */
	int read_timeout_ms;
	int write_timeout_ms;
	int idle_timeout_ms;
	int threads;
	int64_t max_body_bytes;
	int shutdown_timeout_ms;

	/* consul */
	char *consul_address;     /* with scheme: "http://127.0.0.1:8500" */
	char *consul_dns_address; /* the agent's DNS interface: "127.0.0.1:8600" */
	char *consul_token;       /* secret; "" when none */
	char *consul_kv_prefix;   /* "config/<service.name>/" */
	bool consul_required;
	bool consul_register;     /* false: the agent's configuration defines the service */
	int consul_check_interval_ms;
	int consul_check_timeout_ms;
	int consul_deregister_critical_after_ms;
	int64_t consul_kv_max_keys;       /* per prefix; a longer listing is refused whole */
	int64_t consul_kv_max_bytes;      /* per prefix, the listing's size as read */
	int consul_watch_max_services;    /* services followed at once, whatever happens */
	int64_t consul_watch_max_bytes;   /* one health answer (10,000 instances: 10-20 MB) */
	int consul_watch_idle_ms;         /* a watch unused this long stops; 0: never */
	int consul_watch_wait_ms;         /* the blocking wait of every watch */

	/* database */
	char *database_driver;    /* "sqlite" | "memory" | "postgres" */
	char *database_path;      /* sqlite */
	char *database_host;      /* postgres: a host name, address or socket directory */
	int database_port;
	char *database_user;
	char *database_password;  /* secret; "" when none */
	char *database_name;
	int database_pool_size;   /* connections at most, per node */
	int database_connect_timeout_ms; /* one connection attempt */
	int database_acquire_timeout_ms; /* the longest wait for a pooled connection */
	int database_max_waiters;	 /* workers that may wait for one at once */
	char *database_sslmode;   /* libpq's: "disable" ... "verify-full" */

	/* log (dynamic) */
	char *log_level;          /* "debug" | "info" | "warn" | "error" */
	char *log_format;         /* "json" | "text" */

	/* events (dynamic): see events/publisher.h */
	bool events_enabled;
	char *events_broker_service;
	char *events_broker_address;  /* "" or "host:port" */
	char *events_vhost;
	char *events_user;
	char *events_password;        /* secret */
	char *events_queue;
	int events_batch_size;
	int events_retention_ms;

	/* dynamic */
	bool maintenance;
	struct peer_settings *peers;
	size_t n_peers;
	/* a peer that is not configured: the peers.* rows' defaults, name NULL */
	struct peer_settings peer_defaults;
	struct config_feature *features;
	size_t n_features;

	/* every effective setting, sorted by name */
	struct config_entry *entries;
	size_t n_entries;

	/* the KV modify index the KV layer was read at (0 when none) */
	uint64_t kv_index;
	/* the warnings of this load: file keys and MESHNODE_ variables that
	 * name no setting, KV values refused and KV keys ignored */
	size_t n_warnings;

	/* static settings whose sources changed while running: still shown
	 * and used with their running value until a restart */
	char **pending_restart;
	size_t n_pending_restart;
};

/* One Consul KV pair, value already base64-decoded. */
struct config_kv_pair {
	const char *key;    /* full key: "config/shared/log/level" */
	const char *value;  /* NULL for a key with no value (a "folder") */
};

/* A configuration file as read once (at start, on SIGHUP): its keys and
 * values with their origins, so that a KV change rebuilds the configuration
 * from the file as last loaded, never from a half-edited one on disk. */
struct config_file_layer;

/* Reads and parses 'path'. A missing file is an empty layer when
 * 'optional', else an error. MN_CONFIG with one line in 'errors' (libconfig's
 * message with file and line) when it cannot be read or parsed; MN_NOMEM. */
enum mn_err config_file_layer_read(const char *path, bool optional,
				   struct config_file_layer **out, struct buf *errors);
void config_file_layer_free(struct config_file_layer *layer);
const char *config_file_layer_path(const struct config_file_layer *layer);
/* false for an optional file that was not there. */
bool config_file_layer_found(const struct config_file_layer *layer);
/* The number of keys it holds. */
size_t config_file_layer_count(const struct config_file_layer *layer);

struct config_sources {
	const struct config_file_layer *file; /* the file as last read; NULL: read
					 file_path now (when set) */
	const char *file_path;     /* NULL: no file */
	bool file_optional;        /* a missing file is not an error */
	char *const *environ;      /* NULL: no environment layer */
	const struct config_kv_pair *kv; /* NULL: no KV layer */
	size_t n_kv;
	uint64_t kv_index;
	const char *hostname;      /* for the default service.id; NULL: gethostname() */
	/* A reload: the configuration in force. Static settings keep its
	 * values (the changed ones are listed in pending_restart), and a KV
	 * value that is refused keeps its KV value instead of falling back. */
	const struct config *running;
};

/* Builds the effective configuration from 'src'.
 *
 * File and environment problems are errors: each is one line appended to
 * 'errors' ("config/meshnode.cfg:12: key 'server.threads': expected an integer
 * between 1 and 1024") and the call returns MN_CONFIG with *out NULL.
 *
 * A KV value that does not parse or validate is refused, not fatal: one line
 * per refused key is appended to 'warnings' ("kv key 'config/users/log/level':
 * expected one of debug, info, warn, error"), the key is ignored (the lower
 * layers' value stays), and the call succeeds. KV keys outside
 * config/shared/ and the service's kv_prefix are ignored with a warning
 * each; keys that name no setting are ignored with one warning per prefix
 * giving their count and the first three ("kv: 2 keys under 'config/users/'
 * name no setting and are ignored ('config/users/a', 'config/users/b')").
 *
 * The buffers are never overflowed: when one nears its cap, the lines that
 * no longer fit are counted and the last line says how many ("1234 more
 * warnings not shown").
 *
 * When memory runs out (for a value's parse or check too, which is then
 * not taken for a refusal) the call returns MN_NOMEM, with the line "out of
 * memory" in 'errors'.
 *
 * On success *out is a new config (free with config_destroy()). 'errors' and
 * 'warnings' may be NULL. */
enum mn_err config_load(const struct config_sources *src, struct config **out,
			struct buf *errors, struct buf *warnings);

/* The bounds on one Consul KV listing (of config/shared/ or of the node's
 * prefix): true when a listing of 'n_keys' keys is within
 * consul.kv_max_keys of 'cfg'. 'too_large' means the listing was not read
 * whole because it is larger than consul.kv_max_bytes (the cap the caller
 * gave the HTTP client): always refused. When refused, 'why' receives the
 * reason ("20000 keys, more than consul.kv_max_keys (10000)"). A refused
 * listing is refused whole: none of its keys is used. */
bool config_kv_listing_fits(const struct config *cfg, size_t n_keys, bool too_large, char *why,
			    size_t len);

/* Frees 'cfg' and everything it owns; NULL does nothing. */
void config_free(struct config *cfg);

/* Same as config_free(). libconfig exports its own config_destroy(config_t *)
 * and calls it internally through the PLT, so a global symbol of that name in
 * the executable would be called by libconfig with the wrong type: this one
 * stays static inline and never reaches the symbol table. */
static inline void config_destroy(struct config *cfg)
{
	config_free(cfg);
}

/* The effective configuration as a JSON object: {"<name>": {"value": ...,
 * "source": "file", "origin": "...", "dynamic": true}, ...} with secrets as
 * "<redacted>" (new reference). */
json_t *config_to_json(const struct config *cfg);

/* What GET /config and --print-config show: {"settings": config_to_json(),
 * "kv_index": N, "pending_restart": [...]} (new reference). */
json_t *config_document(const struct config *cfg);

/* One page of config_document() for GET /config: the settings whose names
 * start with 'prefix' ("" or NULL: all), in name order, from the 'offset'th,
 * at most 'limit', with "total" (of those matching), "offset", "limit" and,
 * when more follow, "next_offset". A KV listing of thousands of peers.*
 * keys is then pages, not megabytes per request. New reference; NULL when
 * out of memory. */
json_t *config_document_page(const struct config *cfg, const char *prefix, size_t offset,
			     size_t limit);

/* The effective peer settings for 'name': the configured ones, or defaults
 * when the peer is not configured (borrowed, valid while cfg lives; the
 * defaults' name is NULL). */
const struct peer_settings *config_peer_get(const struct config *cfg, const char *name);

/* true when the feature is configured and enabled. */
bool config_feature_enabled(const struct config *cfg, const char *name);

/* true when 'module' is listed in service.modules. */
bool config_has_module(const struct config *cfg, const char *module);

/* What changed from 'old' to 'next': one line per setting whose value
 * differs, "log.level: info -> debug (kv)" (the new value's source;
 * "(removed)" when it has none), secrets as "<redacted>", values cut at
 * 120 bytes, at most 'max_lines' lines and then one "N more settings
 * changed". Returns the number of settings that changed. */
size_t config_changes(const struct config *old, const struct config *next, struct buf *out,
		      size_t max_lines);

/* The effective entry of the dotted setting 'name' ("server.threads",
 * "peers.users.lb"), or NULL when it is not set (borrowed, valid while cfg
 * lives). */
const struct config_entry *config_entry_find(const struct config *cfg, const char *name);

#endif
