#include "core/fd_limit.h"

#include <sys/resource.h>

bool fd_limit_raise(int threads, unsigned long long *limit)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return true;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)threads * 2 + 64)
		return true;
	*limit = (unsigned long long)rl.rlim_cur;
	return false;
}
