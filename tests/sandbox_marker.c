/*
 * A shared library whose constructor leaves a mark: loading it runs code.
 * sandbox_test.ts names it in LTP_CHECKPOINT_LIBC to show that the module
 * never loads it while the system's C library is there.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((constructor)) static void leave_mark(void)
{
	const char *path = getenv("SANDBOX_TEST_MARKER");

	if (path) {
		int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);

		if (fd >= 0)
			close(fd);
	}
}
