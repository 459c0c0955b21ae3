/* Allocation-failure runs ("torture" in SQLite's and libcurl's words): each
 * case of a program under tests/alloc/ runs once with no failure, then once
 * per allocation it made, the N-th failing (N = 1, 2, ...), until a run
 * completes with no failure injected. A run in which an allocation failed
 * must end in MN_NOMEM from the code under test, or, when the code absorbed
 * the failure, in the very result of the run without failure (the exact
 * rules: torture_case()); it must leave nothing allocated, and must not
 * crash. Header-only: one per program, which prints its figures and
 * cmocka's summary line.
 *
 * The failing allocator. The program itself defines malloc, calloc,
 * realloc, strdup, strndup, posix_memalign, aligned_alloc and memalign: an
 * executable's definitions come first in the dynamic linker's search, so
 * they stand in for libc's everywhere, in our objects and inside jansson,
 * libconfig, libresolv and libc (fopen, vasprintf) alike. Each forwards to
 * the next definition (dlsym(RTLD_NEXT)): under ASan/LSan that is the
 * sanitizer's allocator, so every block is still tracked and a leak still
 * reported. strdup and strndup are rebuilt over malloc because ASan's own
 * interceptors of them would allocate without passing through malloc.
 * -Wl,--wrap was the other way; it reaches only our static objects, never
 * an allocation inside jansson or libconfig.
 *
 * Only allocations of the thread that armed the counter, while it is armed,
 * count (the driver itself, and the description of a result, never fail). Failure is
 * one-shot: the N-th allocation fails and the following ones succeed, so
 * the code's cleanup after the failure runs with a working allocator, as
 * it would after a transient refusal. */
#ifndef MESHNODE_TESTS_ALLOC_TORTURE_H
#define MESHNODE_TESTS_ALLOC_TORTURE_H

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <sanitizer/lsan_interface.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/log.h"

#if !defined(__SANITIZE_ADDRESS__)
#error "tests/alloc/ programs are built with SANITIZE=address (make alloc-test)"
#endif

/* ASan's count of the bytes in live blocks (compiler-rt's
 * sanitizer/allocator_interface.h, which GCC does not install). */
size_t __sanitizer_get_current_allocated_bytes(void);

static __thread bool torture_armed;
static __thread unsigned long torture_count, torture_fail_at;
static __thread bool torture_injected;

static void *(*torture_real_malloc)(size_t);
static void *(*torture_real_calloc)(size_t, size_t);
static void *(*torture_real_realloc)(void *, size_t);
static int (*torture_real_posix_memalign)(void **, size_t, size_t);
static void *(*torture_real_aligned_alloc)(size_t, size_t);
static void *(*torture_real_memalign)(size_t, size_t);

#define TORTURE_CHECK(cond)                                                                        \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			torture_armed = false;                                                     \
			fprintf(stderr, "%s:%d: check failed: %s (failure point %lu)\n", __FILE__, \
				__LINE__, #cond, torture_fail_at);                                 \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static void torture_resolve(void)
{
	torture_real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
	torture_real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
	torture_real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	torture_real_posix_memalign =
		(int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
	torture_real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
	torture_real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
	if (!torture_real_malloc || !torture_real_calloc || !torture_real_realloc ||
	    !torture_real_posix_memalign || !torture_real_aligned_alloc || !torture_real_memalign)
		abort();
}

/* Where the failed allocation was asked for: in the program itself (our
 * objects, linked in statically) or in a shared library (jansson,
 * libconfig, libc). */
static __thread bool torture_site_ours;
static __thread char torture_site[128];

static void torture_note_site(const void *caller)
{
	static void *exe_base;
	Dl_info info;

	if (exe_base == NULL && dladdr((void *)torture_note_site, &info))
		exe_base = info.dli_fbase;
	if (dladdr(caller, &info) == 0) {
		torture_site_ours = false;
		snprintf(torture_site, sizeof(torture_site), "?");
		return;
	}
	torture_site_ours = info.dli_fbase == exe_base;
	snprintf(torture_site, sizeof(torture_site), "%s",
		 torture_site_ours		? "meshnode"
		 : strrchr(info.dli_fname, '/') ? strrchr(info.dli_fname, '/') + 1
						: info.dli_fname);
}

/* Libraries whose allocations never fail here, because they do not check
 * them: libconfig 1.5 writes through the NULL (config_init() ->
 * __new_setting()) and its flex scanner calls exit(2) ("out of dynamic
 * memory"). Nothing our code does after such a failure can be tested; the
 * libc calls libconfig makes (fopen) still fail. */
static const char *const torture_spared[] = {"libconfig.so"};
static uintptr_t torture_spared_lo[8], torture_spared_hi[8];
static size_t torture_n_spared;

static int torture_find_spared(struct dl_phdr_info *info, size_t size, void *data)
{
	(void)size, (void)data;
	for (size_t i = 0; i < sizeof(torture_spared) / sizeof(torture_spared[0]); i++) {
		if (info->dlpi_name == NULL || strstr(info->dlpi_name, torture_spared[i]) == NULL)
			continue;
		for (int k = 0; k < info->dlpi_phnum && torture_n_spared < 8; k++) {
			const ElfW(Phdr) *ph = &info->dlpi_phdr[k];

			if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
				continue;
			torture_spared_lo[torture_n_spared] = info->dlpi_addr + ph->p_vaddr;
			torture_spared_hi[torture_n_spared] =
				info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
			torture_n_spared++;
		}
	}
	return 0;
}

static bool torture_is_spared(const void *caller)
{
	static bool found;

	if (!found) {
		found = true;
		dl_iterate_phdr(torture_find_spared, NULL);
	}
	for (size_t i = 0; i < torture_n_spared; i++)
		if ((uintptr_t)caller >= torture_spared_lo[i] &&
		    (uintptr_t)caller < torture_spared_hi[i])
			return true;
	return false;
}

/* True when this allocation, asked for at 'caller', is the one to fail. */
static bool torture_fail_now(const void *caller)
{
	if (!torture_armed || torture_is_spared(caller))
		return false;
	if (++torture_count != torture_fail_at)
		return false;
	torture_injected = true;
	torture_armed = false; /* dladdr() may allocate */
	torture_note_site(caller);
	torture_armed = true;
	errno = ENOMEM;
	return true;
}

#define TORTURE_CALLER __builtin_extract_return_addr(__builtin_return_address(0))

/* Memory the dynamic linker may ask for while dlsym() resolves the real
 * functions: a static arena, never freed (it is not the sanitizer's). */
static bool torture_resolving;
static _Alignas(16) char torture_arena[4096];
static size_t torture_arena_used;

static void *torture_arena_alloc(size_t n)
{
	void *p;

	n = (n + 15) & ~(size_t)15;
	if (n > sizeof(torture_arena) - torture_arena_used)
		abort();
	p = torture_arena + torture_arena_used;
	torture_arena_used += n;
	return p;
}

static void torture_init_real(void)
{
	if (torture_real_malloc == NULL && !torture_resolving) {
		torture_resolving = true;
		torture_resolve();
		torture_resolving = false;
	}
}

void *malloc(size_t n)
{
	torture_init_real();
	if (torture_resolving)
		return torture_arena_alloc(n);
	return torture_fail_now(TORTURE_CALLER) ? NULL : torture_real_malloc(n);
}

void *calloc(size_t n, size_t size)
{
	torture_init_real();
	if (torture_resolving)
		return torture_arena_alloc(n * size); /* zero: static storage */
	return torture_fail_now(TORTURE_CALLER) ? NULL : torture_real_calloc(n, size);
}

void *realloc(void *p, size_t n)
{
	torture_init_real();
	return torture_fail_now(TORTURE_CALLER) ? NULL : torture_real_realloc(p, n);
}

int posix_memalign(void **out, size_t align, size_t n)
{
	torture_init_real();
	return torture_fail_now(TORTURE_CALLER) ? ENOMEM
						: torture_real_posix_memalign(out, align, n);
}

void *aligned_alloc(size_t align, size_t n)
{
	torture_init_real();
	return torture_fail_now(TORTURE_CALLER) ? NULL : torture_real_aligned_alloc(align, n);
}

void *memalign(size_t align, size_t n); /* <malloc.h> */
void *memalign(size_t align, size_t n)
{
	torture_init_real();
	return torture_fail_now(TORTURE_CALLER) ? NULL : torture_real_memalign(align, n);
}

/* Rebuilt over the counter so that the failure is put on their caller. */
static void *torture_malloc_for(size_t n, const void *caller)
{
	torture_init_real();
	return torture_fail_now(caller) ? NULL : torture_real_malloc(n);
}

char *strdup(const char *s)
{
	size_t n = strlen(s) + 1;
	char *p = torture_malloc_for(n, TORTURE_CALLER);

	return p ? memcpy(p, s, n) : NULL;
}

char *strndup(const char *s, size_t max)
{
	size_t n = strnlen(s, max);
	char *p = torture_malloc_for(n + 1, TORTURE_CALLER);

	if (p == NULL)
		return NULL;
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

/* What a case's successful run made, in words, compared between runs: a
 * fixed block, so that describing a result allocates nothing. */
struct torture_out {
	char data[1u << 20];
	size_t len;
};

/* Appends to 'out' with the counter paused (describing a result, e.g.
 * with json_dumps(), is not the code under test). */
__attribute__((format(printf, 2, 3))) static void torture_outf(struct torture_out *out,
							       const char *fmt, ...)
{
	bool armed = torture_armed;
	va_list ap;
	int n;

	torture_armed = false;
	va_start(ap, fmt);
	n = vsnprintf(out->data + out->len, sizeof(out->data) - out->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(out->data) - out->len)
		abort();
	out->len += (size_t)n;
	torture_armed = armed;
}

/* Runs 'fn(arg)' with the counter paused and returns its result. */
#define TORTURE_PAUSED(expr)                                                                       \
	({                                                                                         \
		bool torture_was_ = torture_armed;                                                 \
		torture_armed = false;                                                             \
		__auto_type torture_r_ = (expr);                                                   \
		torture_armed = torture_was_;                                                      \
		torture_r_;                                                                        \
	})

/* A case: runs the code under test once on its input, frees everything it
 * made and returns the code's result (MN_OK or its error). What it made,
 * or the error's text, goes into 'out' in words. Invariants are checked
 * with TORTURE_CHECK. */
typedef enum mn_err (*torture_fn)(const void *input, size_t len, struct torture_out *out);

struct torture_totals {
	unsigned long cases, points, nomem, absorbed, cut;
};

static struct torture_totals torture_totals;
static unsigned long torture_findings;

static bool torture_same(const struct torture_out *a, const struct torture_out *b)
{
	return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}

/* A case writes the lines its code reports (warnings) after a '\f': the
 * result proper is what comes before. */
static size_t torture_result_len(const struct torture_out *a)
{
	const char *ff = memchr(a->data, '\f', a->len);

	return ff ? (size_t)(ff - a->data) : a->len;
}

static bool torture_same_result(const struct torture_out *a, const struct torture_out *b)
{
	size_t n = torture_result_len(a);

	return n == torture_result_len(b) && memcmp(a->data, b->data, n) == 0;
}

/* Runs 'fn' on one input without failure (the reference), then for
 * N = 1, 2, ... with the N-th allocation failing, until a run makes fewer
 * than N allocations. A run with a failure must
 *   - return MN_NOMEM, or
 *   - come to the reference's result (the failure absorbed: same code,
 *     same words), or
 *   - return the reference's error with other words, or its result with
 *     other warnings (the allocation that failed was the report's own: its
 *     lines are written best effort, and a line that cannot be added is
 *     lost), or
 * and in every run the bytes allocated before and after must match (a
 * leak: LSan names it). Anything else aborts with the failure point: an
 * error from our own code that is not MN_NOMEM, a success with another
 * result, a leak. A crash ends the program by itself. */
static void torture_case(const char *name, torture_fn fn, const void *input, size_t len)
{
	const unsigned long max_points = 200000;
	static struct torture_out ref, out;
	unsigned long n, nomem = 0, absorbed = 0, cut = 0;
	enum mn_err ref_rc, rc;
	size_t before;

	/* also gets lazy set-up of libc and the libraries out of the way */
	ref.len = 0;
	ref_rc = fn(input, len, &ref);
	for (n = 1;; n++) {
		TORTURE_CHECK(n <= max_points);
		out.len = 0;
		before = __sanitizer_get_current_allocated_bytes();
		torture_count = 0;
		torture_fail_at = n;
		torture_injected = false;
		torture_armed = true;
		rc = fn(input, len, &out);
		torture_armed = false;
		/* a difference is a leak unless LSan finds only suppressed ones
		 * (libconfig's, in tests/alloc/alloc_config.c) */
		if (__sanitizer_get_current_allocated_bytes() != before &&
		    __lsan_do_recoverable_leak_check() != 0) {
			fprintf(stderr,
				"%s: failure point %lu (in %s): %zu bytes allocated before, %zu "
				"after\n",
				name, n, torture_injected ? torture_site : "no failure", before,
				__sanitizer_get_current_allocated_bytes());
			abort();
		}
		if (!torture_injected) {
			/* the N-th allocation never came: every point was tried */
			TORTURE_CHECK(rc == ref_rc && torture_same(&out, &ref));
			break;
		}
		if (rc == ref_rc && torture_same(&out, &ref)) {
			absorbed++;
		} else if (rc == MN_NOMEM) {
			nomem++;
		} else if (rc == ref_rc && (rc != MN_OK || torture_same_result(&out, &ref))) {
			cut++;
		} else {
			fprintf(stderr,
				"%s: failure point %lu (in %s): %s, %.*s\ninstead of %s, or of "
				"%s: %.*s\n",
				name, n, torture_site, mn_strerror(rc), (int)out.len, out.data,
				mn_strerror(MN_NOMEM), mn_strerror(ref_rc), (int)ref.len, ref.data);
			/* TORTURE_KEEP_GOING=1 lists every such finding, then fails */
			if (getenv("TORTURE_KEEP_GOING") == NULL)
				abort();
			torture_findings++;
		}
	}
	torture_totals.cases++;
	torture_totals.points += n - 1;
	torture_totals.nomem += nomem;
	torture_totals.absorbed += absorbed;
	torture_totals.cut += cut;
	if (getenv("TORTURE_VERBOSE"))
		printf("  %-56s %5lu points: %lu nomem, %lu absorbed, %lu report cut\n", name,
		       n - 1, nomem, absorbed, cut);
}

/* Runs torture_case() on every file of 'dir' (the fuzz seeds of a parser
 * and the like) whose name ends in 'suffix' (NULL: every file), in name
 * order; 'min_files' guards against an empty or
 * moved directory. */
static inline void torture_files(const char *dir, const char *suffix, torture_fn fn,
				 size_t min_files)
{
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	size_t files = 0;

	TORTURE_CHECK(n >= 0);
	for (int i = 0; i < n; i++) {
		char path[512], name[600];
		FILE *f;
		long size;
		char *data;
		size_t nlen = strlen(names[i]->d_name);

		if (names[i]->d_name[0] == '.' ||
		    (suffix && (nlen < strlen(suffix) ||
				strcmp(names[i]->d_name + nlen - strlen(suffix), suffix) != 0))) {
			free(names[i]);
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		f = fopen(path, "rb");
		TORTURE_CHECK(f != NULL);
		TORTURE_CHECK(fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0);
		rewind(f);
		data = malloc((size_t)size + 1);
		TORTURE_CHECK(data != NULL);
		TORTURE_CHECK(fread(data, 1, (size_t)size, f) == (size_t)size);
		data[size] = '\0';
		fclose(f);
		snprintf(name, sizeof(name), "%s", path);
		torture_case(name, fn, data, (size_t)size);
		free(data);
		free(names[i]);
		files++;
	}
	free(names);
	TORTURE_CHECK(files >= min_files);
}

/* The body of a captured HTTP answer (a fixture starting "HTTP/"), or
 * the whole input. */
static inline const char *torture_http_body(const char *input, size_t *len)
{
	const char *end;
	size_t sep = 4;

	if (*len < 5 || memcmp(input, "HTTP/", 5) != 0)
		return input;
	end = memmem(input, *len, "\r\n\r\n", 4);
	if (end == NULL) {
		end = memmem(input, *len, "\n\n", 2);
		sep = 2;
	}
	TORTURE_CHECK(end != NULL);
	*len -= (size_t)(end + sep - input);
	return end + sep;
}

/* Logs go to /dev/null: what a failed run logs is not what is checked. */
static inline void torture_quiet_logs(void)
{
	int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);

	if (fd >= 0)
		log_set_fd(fd);
	log_set_level(MN_LOG_ERROR);
}

/* The program's summary line, read by scripts/run-tests.sh like cmocka's:
 * "[  PASSED  ] <cases> test(s)." plus the figures. */
static inline int torture_report(const char *program)
{
	printf("%s: %lu cases, %lu failure points: %lu MN_NOMEM, %lu absorbed, %lu same outcome "
	       "with its report cut\n",
	       program, torture_totals.cases, torture_totals.points, torture_totals.nomem,
	       torture_totals.absorbed, torture_totals.cut);
	if (torture_findings) {
		printf("[  FAILED  ] %lu test(s).\n", torture_findings);
		return 1;
	}
	printf("[  PASSED  ] %lu test(s).\n", torture_totals.cases);
	return 0;
}

#endif
