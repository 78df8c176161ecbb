/*
 * A C peer that uses a checkpoint region exactly as LTP's C library does
 * (lib/tst_checkpoint.c): the same futex calls, the same 1 ms wake loop.
 * It proves that our file format and semantics interoperate with C, and it is
 * the baseline of the benchmarks.
 *
 *   peer create PATH                          LTP's C library's region: O_EXCL, 0666, magic
 *   peer wait PATH LAYOUT ID TIMEOUT_MS       exit 0 woken, 1 timed out, 2 error
 *   peer wake PATH LAYOUT ID NR TIMEOUT_MS    exit 0 woke NR, 1 timed out, 2 error
 *   peer ping PATH LAYOUT ROUNDS              wake 0 then wait 1, ROUNDS times;
 *                                             prints the median round trip in ns
 *   peer pong PATH LAYOUT ROUNDS              wait 0 then wake 1, ROUNDS times
 *   peer ring PATH LAYOUT ID NEXT ROUNDS      take the token on ID, pass it to NEXT,
 *                                             ROUNDS times (ID 0 starts it); prints
 *                                             how many tokens it took
 *   peer run CMD [ARG...]                     runs CMD; prints its wall time,
 *                                             CPU time and peak RSS as JSON
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned int *futexes;
static unsigned int max_futexes;

static void die(const char *what)
{
	fprintf(stderr, "peer: %s: %s\n", what, strerror(errno));
	exit(2);
}

static void attach(const char *path, const char *layout)
{
	size_t page = getpagesize();
	size_t offset = strcmp(layout, "ltp") == 0 ? 76 : 4;
	int fd = open(path, O_RDWR);
	if (fd < 0)
		die(path);
	char *p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	close(fd);
	if (memcmp(p, "LTPM", 4) != 0) {
		fprintf(stderr, "peer: %s: bad magic\n", path);
		exit(2);
	}
	futexes = (unsigned int *)(p + offset);
	max_futexes = (page - offset) / sizeof(unsigned int);
}

/* tst_checkpoint_wait() */
static int checkpoint_wait(unsigned int id, unsigned int msec_timeout)
{
	struct timespec timeout;
	int ret;

	if (id >= max_futexes) {
		errno = EOVERFLOW;
		return -1;
	}
	timeout.tv_sec = msec_timeout / 1000;
	timeout.tv_nsec = (msec_timeout % 1000) * 1000000;
	do {
		ret = syscall(SYS_futex, &futexes[id], FUTEX_WAIT, futexes[id], &timeout);
	} while (ret == -1 && errno == EINTR);
	return ret;
}

/* tst_checkpoint_wake() */
static int checkpoint_wake(unsigned int id, unsigned int nr_wake, unsigned int msec_timeout)
{
	unsigned int msecs = 0, waked = 0;

	if (id >= max_futexes) {
		errno = EOVERFLOW;
		return -1;
	}
	for (;;) {
		waked += syscall(SYS_futex, &futexes[id], FUTEX_WAKE, INT_MAX, NULL);
		if (waked == nr_wake)
			break;
		usleep(1000);
		msecs++;
		if (msecs >= msec_timeout) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
	return 0;
}

static int result(int ret)
{
	if (ret == 0)
		return 0;
	fprintf(stderr, "peer: %s\n", strerror(errno));
	return errno == ETIMEDOUT || errno == EOVERFLOW ? 1 : 2;
}

static long long now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int cmp(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;
	return (x > y) - (x < y);
}

static int create(const char *path)
{
	size_t page = getpagesize();
	int fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
	if (fd < 0)
		die(path);
	if (ftruncate(fd, page))
		die("ftruncate");
	char *p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		die("mmap");
	memset(p, 0, page);
	memcpy(p, "LTPM", 4);
	if (fchmod(fd, 0666))
		die("fchmod");
	return 0;
}

static int run(char **argv)
{
	long long start = now_ns();
	pid_t pid = fork();
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	int status;
	struct rusage ru;
	if (wait4(pid, &status, 0, &ru) < 0)
		die("wait4");
	long long wall = now_ns() - start;
	printf("{\"wall_ns\":%lld,\"cpu_ns\":%lld,\"max_rss_kb\":%ld,\"status\":%d}\n", wall,
	       (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
		       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL,
	       ru.ru_maxrss, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && strcmp(argv[1], "create") == 0)
		return create(argv[2]);
	if (argc >= 3 && strcmp(argv[1], "run") == 0)
		return run(argv + 2);
	if (argc == 6 && strcmp(argv[1], "wait") == 0) {
		attach(argv[2], argv[3]);
		return result(checkpoint_wait(strtoul(argv[4], NULL, 10), strtoul(argv[5], NULL, 10)));
	}
	if (argc == 7 && strcmp(argv[1], "wake") == 0) {
		attach(argv[2], argv[3]);
		return result(checkpoint_wake(strtoul(argv[4], NULL, 10), strtoul(argv[5], NULL, 10),
					      strtoul(argv[6], NULL, 10)));
	}
	if (argc == 5 && (strcmp(argv[1], "ping") == 0 || strcmp(argv[1], "pong") == 0)) {
		attach(argv[2], argv[3]);
		int ping = argv[1][1] == 'i';
		long rounds = strtol(argv[4], NULL, 10);
		long long *times = calloc(rounds, sizeof(*times));
		for (long i = 0; i < rounds; i++) {
			long long start = now_ns();
			if (ping ? checkpoint_wake(0, 1, 10000) || checkpoint_wait(1, 10000)
				 : checkpoint_wait(0, 10000) || checkpoint_wake(1, 1, 10000))
				return result(-1);
			times[i] = now_ns() - start;
		}
		qsort(times, rounds, sizeof(*times), cmp);
		if (ping)
			printf("%lld\n", times[rounds / 2]);
		return 0;
	}
	if (argc == 7 && strcmp(argv[1], "ring") == 0) {
		attach(argv[2], argv[3]);
		unsigned int id = strtoul(argv[4], NULL, 10), next = strtoul(argv[5], NULL, 10);
		long rounds = strtol(argv[6], NULL, 10), taken = 0;
		for (long i = 0; i < rounds; i++) {
			if (id == 0 && checkpoint_wake(next, 1, 10000))
				return result(-1);
			if (checkpoint_wait(id, 10000))
				return result(-1);
			taken++;
			if (id != 0 && checkpoint_wake(next, 1, 10000))
				return result(-1);
		}
		printf("%ld\n", taken);
		return 0;
	}
	fprintf(stderr, "peer: bad arguments; see the comment at the top of peer.c\n");
	return 2;
}
