/* The process_* metrics, read from /proc/self at each render (Linux). */
#include "metrics_internal.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ---- process metrics ------------------------------------------------------ */

struct proc_stat {
	unsigned long utime, stime; /* clock ticks */
	long threads;
	unsigned long long starttime; /* clock ticks after boot */
	unsigned long vsize;	      /* bytes */
	long rss;		      /* pages */
};

static bool proc_read_stat(struct proc_stat *st)
{
	char line[1024];
	const char *p;
	FILE *fp;
	int n;

	fp = fopen("/proc/self/stat", "r");
	if (fp == NULL)
		return false;
	p = fgets(line, sizeof(line), fp);
	fclose(fp);
	if (p == NULL)
		return false;
	/* the command name may hold spaces and parentheses: skip to the last ')' */
	p = strrchr(line, ')');
	if (p == NULL)
		return false;
	n = sscanf(p + 1,
		   " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %ld %*d "
		   "%llu %lu %ld",
		   &st->utime, &st->stime, &st->threads, &st->starttime, &st->vsize, &st->rss);
	return n == 6;
}

static bool proc_boot_time(double *out)
{
	char line[256];
	FILE *fp;
	bool found = false;
	unsigned long long btime;

	fp = fopen("/proc/stat", "r");
	if (fp == NULL)
		return false;
	while (fgets(line, sizeof(line), fp)) {
		if (sscanf(line, "btime %llu", &btime) == 1) {
			*out = (double)btime;
			found = true;
			break;
		}
	}
	fclose(fp);
	return found;
}

static long proc_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	long n = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory stream's own descriptor */
}

static void proc_set(struct metric_family *f, double v)
{
	metrics_family_update(f, NULL, OP_SET, v);
}

static void process_collect(struct metrics *m, void *ctx)
{
	struct process_metrics *pm = ctx;
	struct proc_stat st;
	struct rlimit rl;
	long fds;
	double ticks = (double)sysconf(_SC_CLK_TCK);

	(void)m;
	if (proc_read_stat(&st)) {
		proc_set(pm->cpu, (double)(st.utime + st.stime) / ticks);
		proc_set(pm->rss, (double)st.rss * (double)sysconf(_SC_PAGESIZE));
		proc_set(pm->vsize, (double)st.vsize);
		proc_set(pm->threads, (double)st.threads);
	}
	fds = proc_open_fds();
	if (fds >= 0)
		proc_set(pm->open_fds, (double)fds);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		proc_set(pm->max_fds,
			 rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur);
}

enum mn_err metrics_register_process(struct metrics *m)
{
	struct process_metrics *pm;
	struct proc_stat st;
	double boot;
	bool taken;

	if (m == NULL)
		return MN_INVALID;
	pm = &m->proc;
	pthread_mutex_lock(&m->lock);
	taken = metrics_name_taken(m, "process_cpu_seconds_total");
	pthread_mutex_unlock(&m->lock);
	if (taken)
		return MN_CONFLICT;
	if (!proc_read_stat(&st) || !proc_boot_time(&boot))
		return MN_IO;

	pm->cpu = metrics_counter(m, "process_cpu_seconds_total",
				  "Total user and system CPU time spent in seconds.", 0, NULL);
	if (pm->cpu == NULL)
		return MN_NOMEM;
	pm->rss = metrics_gauge(m, "process_resident_memory_bytes",
				"Resident memory size in bytes.", 0, NULL);
	pm->vsize = metrics_gauge(m, "process_virtual_memory_bytes",
				  "Virtual memory size in bytes.", 0, NULL);
	pm->open_fds =
		metrics_gauge(m, "process_open_fds", "Number of open file descriptors.", 0, NULL);
	pm->max_fds = metrics_gauge(m, "process_max_fds",
				    "Maximum number of open file descriptors.", 0, NULL);
	pm->start_time =
		metrics_gauge(m, "process_start_time_seconds",
			      "Start time of the process since unix epoch in seconds.", 0, NULL);
	pm->threads = metrics_gauge(m, "process_threads", "Number of OS threads in the process.", 0,
				    NULL);
	if (!pm->rss || !pm->vsize || !pm->open_fds || !pm->max_fds || !pm->start_time ||
	    !pm->threads)
		return MN_NOMEM; /* the registered ones stay, harmless zeros */

	proc_set(pm->start_time, boot + (double)st.starttime / (double)sysconf(_SC_CLK_TCK));
	return metrics_on_collect(m, process_collect, pm);
}
