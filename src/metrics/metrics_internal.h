/* What the files of the metrics registry share and nothing else sees: the
 * registry's, families' and series' layout, and the functions that cross
 * between metrics.c (the registry), exposition.c (the text format) and
 * process.c (the process_* readings). The public interface is
 * metrics/metrics.h. */
#ifndef MESHNODE_METRICS_METRICS_INTERNAL_H
#define MESHNODE_METRICS_METRICS_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/hashmap.h"
#include "metrics/metrics.h"

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

enum metric_op { OP_ADD, OP_SET, OP_RAISE, OP_OBSERVE };

/* One label set of a family, allocated with its bucket counts, value
 * pointers and value strings in the same block. Render reads the label values
 * without the family lock, so a removed series is not freed at once: it moves
 * to its family's retired list, freed under the render lock (metrics_family_reap()). */
struct series {
	uint64_t hash;
	double value;	   /* counter or gauge value, histogram sum */
	uint64_t count;	   /* histogram observations */
	uint64_t gen;	   /* the family's sweep generation at the last update */
	uint64_t *buckets; /* histogram: nbounds + 1 non-cumulative counts */
	char **values;	   /* nlabels strings */
	struct series *retired_next;
};

struct metric_family {
	struct metric_family *next;
	struct metrics *owner;
	enum metric_type type;
	char *name;
	char *help;
	size_t nlabels;
	char **label_names;
	double *bounds;
	size_t nbounds;

	pthread_mutex_t lock; /* everything below, and every series' numbers */
	struct series *only;  /* the series of a label-less family */
	struct hashmap index; /* struct series * by label values */
	struct series **list; /* first-seen order */
	size_t nseries;
	size_t list_alloc;
	uint64_t gen;		/* bumped by metric_sweep_begin() */
	bool sweeping;		/* between metric_sweep_begin() and _end() */
	struct series *retired; /* removed, maybe still read by a render */
};

struct collector {
	struct collector *next;
	metrics_collect_fn fn;
	void *ctx;
};

struct process_metrics {
	struct metric_family *cpu;
	struct metric_family *rss;
	struct metric_family *vsize;
	struct metric_family *open_fds;
	struct metric_family *max_fds;
	struct metric_family *start_time;
	struct metric_family *threads;
};

struct metrics {
	pthread_mutex_t lock; /* the two lists */
	struct metric_family *families;
	struct metric_family **families_tail;
	struct collector *collectors;
	struct collector **collectors_tail;
	size_t ncollectors;
	pthread_mutex_t render_lock; /* one render (and collect) at a time */
	struct metric_family *dropped;
	struct process_metrics proc;
};

/* Applies 'op' with 'v' to the series of 'values' in 'f' (not NULL, the
 * type checked by the caller), created if new; a label set dropped is
 * counted in the dropped-series counter. */
void metrics_family_update(struct metric_family *f, const char *const *values, enum metric_op op,
			   double v);

/* Frees the series retired from 'f'; the caller holds the render lock and
 * has no render snapshot of its own alive. */
void metrics_family_reap(struct metric_family *f);

/* Whether 'name' is registered in 'm'; m->lock held. */
bool metrics_name_taken(const struct metrics *m, const char *name);

#endif
