/*
 * A scribbler: another user's process rewriting the words of a shared
 * region in a loop, as anyone may do to a region made 0666 (LTP's C
 * library makes its regions so). Every word after the magic changes all
 * the time, so a futex call that passes the value it read gets EAGAIN.
 *
 *   scribbler PATH [OFFSET]   rewrites every word after the magic, or only
 *                             the word at byte OFFSET, until killed (or
 *                             until its parent exits); prints "scribbling"
 *                             once it has begun
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <unistd.h>

int main(int argc, char *argv[])
{
	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: scribbler PATH [OFFSET]\n");
		return 2;
	}
	/* never outlive the test that started it */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	int fd = open(argv[1], O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		perror("scribbler: open");
		return 2;
	}
	long page = sysconf(_SC_PAGESIZE);
	volatile uint32_t *words = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (words == MAP_FAILED) {
		perror("scribbler: mmap");
		return 2;
	}
	long only = argc == 3 ? strtol(argv[2], NULL, 0) / 4 : 0;
	if (only < 0 || only >= page / 4) {
		fprintf(stderr, "scribbler: offset %s is outside the page\n", argv[2]);
		return 2;
	}
	puts("scribbling");
	fflush(stdout);
	for (uint32_t n = 0;; n++) {
		if (only) {
			words[only] = n;
			continue;
		}
		for (long i = 1; i < page / 4; i++)
			words[i] = n + i;
	}
}
