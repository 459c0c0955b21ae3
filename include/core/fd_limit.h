/* The limit on open files. Every open connection holds a descriptor, and
 * an attack opens many: the soft limit is raised to the hard one (nginx's
 * worker_rlimit_nofile), so the configured server threads, not a default
 * of 1024, bound the node. */
#ifndef MESHNODE_CORE_FD_LIMIT_H
#define MESHNODE_CORE_FD_LIMIT_H

#include <stdbool.h>

/* Raises the soft RLIMIT_NOFILE to the hard one. false when the limit
 * then in force (in *limit) is low for 'threads' server threads: under two
 * descriptors a thread and 64 for the rest. true when it is enough, or
 * unlimited, or cannot be read (*limit untouched then). */
bool fd_limit_raise(int threads, unsigned long long *limit);

#endif
