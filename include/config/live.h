/* The live configuration: the file (read at start and on SIGHUP only),
 * Consul KV (config/shared/ and the node's prefix, read at start and then
 * followed with blocking queries) and the environment, rebuilt into one
 * immutable config on every change and published in a config_store.
 *
 * A KV change rebuilds from the file as last loaded, so a file being edited
 * never blocks a KV change and never goes live unsignalled. Every reload
 * logs what changed, one line per setting ("log.level: info -> debug
 * (kv)"); refused values are logged when they appear, not again on every
 * later reload; a KV listing over consul.kv_max_keys / kv_max_bytes is
 * refused whole and the last good one stays. */
#ifndef MESHNODE_CONFIG_LIVE_H
#define MESHNODE_CONFIG_LIVE_H

#include <stdatomic.h>
#include <stdbool.h>

#include "config/config.h"
#include "config/store.h"
#include "consul/client.h"
#include "core/buf.h"
#include "core/error.h"
#include "metrics/metrics.h"

struct config_live;

struct config_live_opts {
	const char *file_path;       /* the file to load */
	bool file_optional;          /* a missing file is not an error */
	char *const *environ;        /* the process environment */
	/* Called with every configuration about to be published (under the
	 * engine's lock, never two at once): 'old' is the one in force. The
	 * log level and format are applied by the engine itself. May be NULL. */
	void (*apply)(void *ctx, const struct config *old, const struct config *next);
	void *ctx;
	/* When it turns true, the first load's KV read stops at once (the
	 * node is told to stop while starting). May be NULL. */
	const atomic_bool *cancel;
	/* The transport of the first load's KV read (borrowed; NULL:
	 * libcurl). Unit tests pass a fake. */
	const struct httpc_transport *transport;
};

/* Loads defaults, file, Consul KV (when the agent answers within a second:
 * otherwise the node starts without it, and the watches of
 * config_live_follow() bring it in when the agent answers) and environment.
 * MN_CONFIG with one line per problem in 'errors' (file and environment
 * problems); KV values refused, KV keys ignored and
 * unknown file keys go to 'warnings' (may be NULL) and are remembered so
 * that later reloads log only new ones. *out owns the config store. */
enum mn_err config_live_create(const struct config_live_opts *opts, struct config_live **out,
			       struct buf *errors, struct buf *warnings);

/* The store of the configuration in force (borrowed). */
struct config_store *config_live_store(struct config_live *live);

/* What the first load read, for --check-config: the file (or that there
 * was none), each KV prefix with its key count and index, or why KV was
 * not read. Lines appended to 'out'. */
void config_live_describe(const struct config_live *live, struct buf *out);

/* true when what an operator wrote is at fault somewhere, though the node
 * would start: a file key or a MESHNODE_ variable that names no setting, a
 * KV value refused, a KV key that names no setting, a KV listing over the
 * caps. An agent that did not answer is not. */
bool config_live_content_trouble(const struct config_live *live);

/* Registers the engine's metrics in 'registry' (which must outlive the
 * engine): meshnode_config_reloads_total{result} and
 * meshnode_config_kv_listing_refused{prefix}. MN_NOMEM. */
enum mn_err config_live_metrics(struct config_live *live, struct metrics *registry);

/* Starts following both KV prefixes through 'consul' (borrowed; it must
 * outlive config_live_stop()), from the index the first load read. */
enum mn_err config_live_follow(struct config_live *live, struct consul *consul);

/* SIGHUP: reads the file and both KV prefixes again (once, without
 * disturbing the watches; the KV reads within 2 s) and reloads once, on
 * the calling thread. A file that no longer loads is refused and the
 * configuration in force stays, with the file as last loaded. */
void config_live_reload(struct config_live *live);

/* SIGHUP, from the thread that takes signals: config_live_reload() on the
 * engine's reload thread (started on the first request), never waiting
 * for it. Requests made while a reload waits to start are served by that
 * one. MN_NOMEM when the thread cannot start; MN_OK and nothing done once
 * config_live_stop() began. */
enum mn_err config_live_request_reload(struct config_live *live);

/* Stops the watches and the reload thread (a reload in progress has its
 * KV reads cancelled and publishes nothing; it is waited for at most a
 * second). No reload starts after it returns. false when the reload in
 * progress was left behind (a file read held by a stalled file system, a
 * rebuild still running): it may still call 'apply', so what that touches
 * must not be freed, and the engine itself never is. NULL does nothing. */
bool config_live_stop(struct config_live *live);

/* Stops and frees everything, the store included; NULL does nothing. */
void config_live_destroy(struct config_live *live);

#endif
