/* A libconfig file as an operator writes it, loaded the way the node loads
 * config/meshnode.cfg: through config_load(), so libconfig's parse, the walk
 * over groups and every setting's check all run. The input lives in one
 * memfd, reached by its /proc/self/fd path, so no file is written. */
#include <sys/mman.h>

#include "config/config.h"
#include "fuzz.h"
#include "fuzz_config.h"

const char *__lsan_default_suppressions(void);

/* Debian 12's libconfig (1.5) leaks the text of a string token when a
 * syntax error follows it (hyperrealm/libconfig#142, fixed in 1.7.3): a few
 * bytes per failed parse, inside the library. Only the scanner's two
 * allocation sites of that text are suppressed, so a config_t we forgot to
 * destroy still shows. */
const char *__lsan_default_suppressions(void)
{
	return "leak:strbuf_append\nleak:libconfig_yylex\n";
}

static int file_fd = -1;
static char file_path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_quiet_logs();
	file_fd = memfd_create("meshnode.cfg", MFD_CLOEXEC);
	FUZZ_CHECK(file_fd >= 0);
	snprintf(file_path, sizeof(file_path), "/proc/self/fd/%d", file_fd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_sources src = {.file_path = file_path, .hostname = "fuzz-host"};
	struct buf errors, warnings;

	/* @include reads other files by design: the machine's files are not
	 * the operator's input. */
	if (memmem(data, size, "@include", 8) != NULL)
		return -1;
	FUZZ_CHECK(ftruncate(file_fd, 0) == 0);
	FUZZ_CHECK(size == 0 || pwrite(file_fd, data, size, 0) == (ssize_t)size);

	fuzz_config_load(&src, &errors, &warnings);
	buf_release(&errors);
	buf_release(&warnings);
	return 0;
}
