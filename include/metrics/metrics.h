/* A small thread-safe Prometheus metrics registry: counters, gauges and
 * histograms with labels, rendered in the text exposition format 0.0.4.
 *
 * Updates (metric_inc() and friends) are the hot path: they hash the label
 * values to find the series under a per-family mutex held only for the lookup
 * and the update, allocate only when a label set is seen for the first time,
 * and never format anything. Each family holds at most METRICS_MAX_SERIES
 * series; a new label set past that limit, or one with a value that is not
 * valid UTF-8, is dropped and counted in
 * meshnode_metrics_dropped_series_total{family="<name>"}, a counter every
 * registry owns and renders after all other families.
 *
 * Families live as long as the registry: a family pointer stays valid until
 * metrics_destroy(), and any thread may update it while another renders.
 * Series (one per label set) may be removed, one by one with metric_remove()
 * or by a sweep; any thread may remove while another renders. A render reads
 * label values outside the family lock, so a removed series is only retired
 * and freed once no render can be reading it: at once when no render is
 * running, else when that render ends (by the end of the next one at the
 * latest), and in any case by metrics_destroy().
 *
 * Files. src/metrics/metrics.c: the registry (families, series, updates,
 * removal, registration); exposition.c: the text format and the render;
 * process.c: the process_* readings from /proc; metrics_internal.h: what
 * they share. */
#ifndef MESHNODE_METRICS_METRICS_H
#define MESHNODE_METRICS_METRICS_H

#include <stddef.h>

#include "core/buf.h"
#include "core/error.h"

/* Most series one family holds; further label sets are dropped and counted. */
#define METRICS_MAX_SERIES 10000

/* The counter every registry owns for label sets it had to drop. */
#define METRICS_DROPPED_NAME "meshnode_metrics_dropped_series_total"

struct metrics;
struct metric_family;

/* A new empty registry (it holds only the dropped-series counter), or NULL
 * when memory runs out. */
struct metrics *metrics_create(void);

/* Frees the registry and every family and series in it; the family pointers
 * it handed out become invalid. NULL does nothing. */
void metrics_destroy(struct metrics *m);

/* Register a family. name must match [a-zA-Z_:][a-zA-Z0-9_:]* and be new in
 * this registry; label names must match [a-zA-Z_][a-zA-Z0-9_]*, not begin with
 * "__", be distinct, and for histograms not be "le". help may be NULL (empty).
 * name, help and label names are copied. nlabels may be 0 (label_names is
 * then ignored); a label-less counter or gauge starts at 0 and is rendered
 * from the start. Counters keep the caller's name: add "_total" yourself.
 * Returns a borrowed pointer owned by the registry, or NULL on a bad name,
 * a duplicate name or no memory. */
struct metric_family *metrics_counter(struct metrics *m, const char *name, const char *help,
				      size_t nlabels, const char *const *label_names);
struct metric_family *metrics_gauge(struct metrics *m, const char *name, const char *help,
				    size_t nlabels, const char *const *label_names);

/* As above, for a histogram with the nbounds upper bounds in 'bounds' (copied),
 * strictly increasing and not NaN; a final +Inf is implied and may be left out.
 * nbounds may be 0 (only the +Inf bucket). NULL on bad bounds too. */
struct metric_family *metrics_histogram(struct metrics *m, const char *name, const char *help,
					size_t nlabels, const char *const *label_names,
					const double *bounds, size_t nbounds);

/* Updates. label_values holds the family's nlabels strings in the order of its
 * label names (NULL when nlabels is 0; a NULL string counts as ""); they are
 * copied when the label set's series is created (first seen, or seen again
 * after a removal). A call that does not fit the family's type is ignored, as
 * is a NULL family, so callers may keep optional metrics as NULL pointers. */

/* Counter or gauge: +1. */
void metric_inc(struct metric_family *f, const char *const *label_values);
/* Counter (v >= 0, anything else ignored) or gauge: +v. */
void metric_add(struct metric_family *f, const char *const *label_values, double v);
/* Gauge: =v. */
void metric_set(struct metric_family *f, const char *const *label_values, double v);
/* Counter whose count another module keeps (read in a collect callback):
 * =v. A v below the current value (or NaN) is ignored: a counter never
 * goes back. */
void metric_set_counter(struct metric_family *f, const char *const *label_values, double v);
/* Histogram: counts v in the first bucket whose bound is >= v and adds it to
 * the sum (NaN lands in +Inf only and makes the sum NaN, as Prometheus does). */
void metric_observe(struct metric_family *f, const char *const *label_values, double v);

/* Removes the series of exactly these label values (as for updates), so it
 * no longer renders and no longer counts against METRICS_MAX_SERIES; a later
 * update creates it afresh, from 0. Does nothing when there is no such
 * series, for a NULL family, or for a family without labels (its one series
 * always renders). Any family type. */
void metric_remove(struct metric_family *f, const char *const *label_values);

/* A sweep drops the series a collect callback no longer reports: call
 * metric_sweep_begin(), update every label set that still exists, then
 * metric_sweep_end(), which removes every series of the family not updated
 * (inc, add, set, set_counter or observe, from any thread, even when the
 * value did not change) since the begin. One sweep at a time per family;
 * a collect callback has that, since renders run one at a time. An end
 * without a begin does nothing; so do both calls for a NULL or label-less
 * family. Costs O(series) at the end only: an update just notes the sweep
 * it happened in. */
void metric_sweep_begin(struct metric_family *f);
void metric_sweep_end(struct metric_family *f);

/* Called at each render before any text is produced, e.g. to refresh
 * process_* gauges or gauges derived from other state. Callbacks run in the
 * order they were added, one render at a time, with no registry lock held:
 * they may update and even register families. */
typedef void (*metrics_collect_fn)(struct metrics *m, void *ctx);

/* Adds a collect callback; 'ctx' is borrowed and must outlive the registry.
 * MN_NOMEM (nothing added) when memory runs out, MN_INVALID for a NULL fn. */
enum mn_err metrics_on_collect(struct metrics *m, metrics_collect_fn fn, void *ctx);

/* Runs the collect callbacks, then appends the Prometheus text exposition
 * format (version 0.0.4) of every family to 'out': families in registration
 * order, series in first-seen order (a series removed and created again
 * counts as seen anew), the dropped-series counter last.
 * Returns MN_OK, or the buf error (MN_TOO_LARGE, MN_NOMEM: 'out' freed by
 * buf), or MN_NOMEM when a snapshot cannot be allocated. */
enum mn_err metrics_render(struct metrics *m, struct buf *out);

/* Registers process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds and process_threads, refreshed from /proc/self at
 * each render. MN_CONFLICT when already registered, MN_NOMEM, or MN_IO when
 * /proc cannot be read (Linux only). */
enum mn_err metrics_register_process(struct metrics *m);

/* The HTTP latency buckets (Prometheus client libraries' defaults), in seconds:
 * .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10 */
extern const double metrics_http_buckets[];
extern const size_t metrics_http_buckets_count;

#endif
