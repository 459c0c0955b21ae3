/* The configuration in force, published as an immutable snapshot. Readers
 * take a reference, use the config, and put it back; a reload publishes a
 * whole new config. No reader ever sees half an update, and a config is
 * freed when the last reader puts it back. */
#ifndef MESHNODE_CONFIG_STORE_H
#define MESHNODE_CONFIG_STORE_H

#include "config/config.h"

struct config_store;

/* A store holding 'initial' (taken); NULL when out of memory (initial is
 * then freed). */
struct config_store *config_store_create(struct config *initial);

/* Frees the store and the config in force; every reference must have been
 * put back. NULL is a no-op. */
void config_store_destroy(struct config_store *s);

/* The config in force, with a reference the caller must put back with
 * config_store_put(). Never NULL. */
const struct config *config_store_get(struct config_store *s);
void config_store_put(struct config_store *s, const struct config *cfg);

/* Makes 'next' (taken) the config in force. */
void config_store_publish(struct config_store *s, struct config *next);

#endif
