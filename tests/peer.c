/*
 * A C peer that uses a checkpoint region exactly as LTP's C library does
 * (lib/tst_checkpoint.c): the same futex calls, the same 1 ms wake loop.
 * It proves that our file format and semantics interoperate with C, and it is
 * the baseline of the benchmarks.
 *
 *   peer create PATH                          a region as LTP's C library makes it (lib/tst_test.c,
 *                                             setup_ipc()): O_CREAT|O_EXCL, one zeroed page, magic
 *                                             LTPM, the header of struct ipc_region (lib_pid and
 *                                             main_pid = this pid, start_time = CLOCK_MONOTONIC now),
 *                                             mode 0666; futexes from byte 76
 *   peer create-shell PATH                    a region as LTP's shell library makes it (tst_test.sh):
 *                                             a page of zeros (dd if=/dev/zero bs=PAGE count=1),
 *                                             LTPM over the first 4 bytes, chmod 600; no header
 *   peer parent PATH LAYOUT wake|wait ID CMD [ARG...]
 *                                             an LTP C test with an exec()'d child: makes PATH as
 *                                             create does, exports LTP_IPC_PATH=PATH, fork()s and
 *                                             execvp()s CMD, then TST_CHECKPOINT_WAKE(ID) (wake 1)
 *                                             or TST_CHECKPOINT_WAIT(ID), 10000 ms times
 *                                             LTP_TIMEOUT_MUL, and reaps the child. Exit 0 when both
 *                                             the checkpoint and the child succeeded, 1 when either
 *                                             failed, 2 on a broken set-up. PATH is left behind.
 *   peer wait PATH LAYOUT ID TIMEOUT_MS       exit 0 woken, 1 timed out, 2 error
 *   peer wake PATH LAYOUT ID NR TIMEOUT_MS    exit 0 woke NR, 1 timed out, 2 error
 *   peer ping PATH LAYOUT ROUNDS              wake 0 then wait 1, ROUNDS times;
 *                                             prints the median round trip in ns
 *   peer pong PATH LAYOUT ROUNDS              wait 0 then wake 1, ROUNDS times
 *   peer floor-ping PATH LAYOUT ROUNDS        the floor of a handoff (not LTP's protocol: it writes
 *                                             the word): word 0 = 1, FUTEX_WAKE, FUTEX_WAIT while
 *                                             it is 1; ROUNDS times; prints the median round trip
 *   peer floor-pong PATH LAYOUT ROUNDS        FUTEX_WAIT while word 0 is 0, word 0 = 0, FUTEX_WAKE
 *   peer ring PATH LAYOUT ID NEXT ROUNDS      take the token on ID, pass it to NEXT,
 *                                             ROUNDS times (ID 0 starts it); prints
 *                                             how many tokens it took
 *   peer run CMD [ARG...]                     runs CMD; prints its wall time,
 *                                             CPU time and peak RSS as JSON
 *
 * LAYOUT is where the futexes start: "ltp" at byte 76 (LTP mainline, after
 * struct ipc_region's header) or "seed" at byte 4 (the seed patch).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stddef.h>
#include <stdint.h>
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

/*
 * LTP mainline's struct ipc_region (lib/tst_test.c) up to its futexes, as it
 * lies in memory on 64-bit Linux. Only the fields LTP's C library writes when
 * it creates the region are named; the peer never writes them afterwards.
 */
struct ipc_region {
	char magic[4];			/* 0: "LTPM" (LTP: int32_t magic) */
	int32_t padding;		/* 4: zero */
	int32_t lib_pid;		/* 8: context.lib_pid */
	int32_t main_pid;		/* 12: context.main_pid */
	struct timespec start_time;	/* 16: context.start_time */
	char rest_of_context[24];	/* 32: runtime, overall time, abort flag, debug flags */
	int32_t results[5];		/* 56: passed, skipped, failed, warnings, broken */
	uint32_t futexes[];		/* 76 */
};

_Static_assert(offsetof(struct ipc_region, lib_pid) == 8, "lib_pid at byte 8");
_Static_assert(offsetof(struct ipc_region, start_time) == 16, "start_time at byte 16");
_Static_assert(offsetof(struct ipc_region, results) == 56, "results at byte 56");
_Static_assert(offsetof(struct ipc_region, futexes) == 76, "futexes at byte 76");

static unsigned int *futexes;
static unsigned int max_futexes;

static void die(const char *what)
{
	fprintf(stderr, "peer: %s: %s\n", what, strerror(errno));
	exit(2);
}

static size_t layout_offset(const char *layout)
{
	if (strcmp(layout, "ltp") == 0)
		return offsetof(struct ipc_region, futexes);
	if (strcmp(layout, "seed") == 0)
		return 4;
	fprintf(stderr, "peer: unknown layout '%s': use ltp or seed\n", layout);
	exit(2);
}

static void use_futexes(char *region, const char *layout)
{
	size_t offset = layout_offset(layout);
	futexes = (unsigned int *)(region + offset);
	max_futexes = (getpagesize() - offset) / sizeof(unsigned int);
}

/* tst_reinit(): attach to an existing region */
static void attach(const char *path, const char *layout)
{
	size_t page = getpagesize();
	layout_offset(layout);
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
	use_futexes(p, layout);
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

/* setup_ipc() of LTP's C library; returns the mapped page */
static struct ipc_region *create(const char *path)
{
	size_t page = getpagesize();
	int fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
	if (fd < 0)
		die(path);
	if (fchmod(fd, 0666))
		die("fchmod");
	if (ftruncate(fd, page))
		die("ftruncate");
	struct ipc_region *ipc = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (ipc == MAP_FAILED)
		die("mmap");
	close(fd);
	memset(ipc, 0, page);
	memcpy(ipc->magic, "LTPM", 4);
	ipc->lib_pid = getpid();
	ipc->main_pid = getpid();
	if (clock_gettime(CLOCK_MONOTONIC, &ipc->start_time))
		die("clock_gettime");
	return ipc;
}

/* tst_test.sh: dd if=/dev/zero of=PATH bs=PAGE count=1, LTPM over the first 4 bytes, chmod 600 */
static int create_shell(const char *path)
{
	size_t page = getpagesize();
	char *zeros = calloc(1, page);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0666);
	if (!zeros || fd < 0)
		die(path);
	for (size_t done = 0; done < page;) {
		ssize_t n = write(fd, zeros + done, page - done);
		if (n < 0)
			die("write");
		done += n;
	}
	close(fd);
	fd = open(path, O_WRONLY);
	if (fd < 0 || pwrite(fd, "LTPM", 4, 0) != 4)
		die(path);
	close(fd);
	if (chmod(path, 0600))
		die("chmod");
	free(zeros);
	return 0;
}

/* LTP's checkpoint timeout: ms times LTP_TIMEOUT_MUL (0.099 to 10000, unset means 1) */
static unsigned int multiplied(unsigned int ms)
{
	const char *text = getenv("LTP_TIMEOUT_MUL");
	if (!text || !*text)
		return ms;
	char *end;
	double mul = strtod(text, &end);
	if (end == text || *end || !(mul >= 0.099 && mul <= 10000)) {
		fprintf(stderr, "peer: LTP_TIMEOUT_MUL must be from 0.099 to 10000, not '%s'\n", text);
		exit(2);
	}
	return ms * mul;
}

/* An LTP C test whose child is exec()'d: the child attaches through LTP_IPC_PATH */
static int parent(const char *path, const char *layout, const char *role, unsigned int id, char **cmd)
{
	int waking = strcmp(role, "wake") == 0;
	if (!waking && strcmp(role, "wait") != 0) {
		fprintf(stderr, "peer: parent: '%s' is neither wake nor wait\n", role);
		return 2;
	}
	layout_offset(layout);
	use_futexes((char *)create(path), layout);
	if (setenv("LTP_IPC_PATH", path, 1))
		die("setenv");
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		die("fork");
	if (pid == 0) {
		execvp(cmd[0], cmd);
		fprintf(stderr, "peer: exec %s: %s\n", cmd[0], strerror(errno));
		_exit(127);
	}
	unsigned int timeout = multiplied(10000);
	int failed = waking ? checkpoint_wake(id, 1, timeout) : checkpoint_wait(id, timeout);
	if (failed)
		fprintf(stderr, "peer: parent: %s on checkpoint %u: %s\n", role, id, strerror(errno));
	int status;
	if (waitpid(pid, &status, 0) < 0)
		die("waitpid");
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (WIFEXITED(status))
			fprintf(stderr, "peer: parent: child exited %d\n", WEXITSTATUS(status));
		else
			fprintf(stderr, "peer: parent: child killed by signal %d\n", WTERMSIG(status));
		failed = 1;
	}
	return failed ? 1 : 0;
}

/* The floor: the turn carried in futex word 0 itself, no retries, no sleeps */
static int floor_ping_pong(int ping, long rounds)
{
	unsigned int *word = &futexes[0];
	struct timespec timeout = { 10, 0 };
	long long *times = calloc(rounds, sizeof(*times));
	unsigned int mine = ping ? 1 : 0;

	for (long i = 0; i < rounds; i++) {
		long long start = now_ns();
		if (ping) {
			__atomic_store_n(word, 1, __ATOMIC_SEQ_CST);
			syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL);
		}
		while (__atomic_load_n(word, __ATOMIC_SEQ_CST) == mine) {
			if (syscall(SYS_futex, word, FUTEX_WAIT, mine, &timeout) == -1 && errno == ETIMEDOUT)
				return result(-1);
		}
		if (!ping) {
			__atomic_store_n(word, 0, __ATOMIC_SEQ_CST);
			syscall(SYS_futex, word, FUTEX_WAKE, 1, NULL);
		}
		times[i] = now_ns() - start;
	}
	qsort(times, rounds, sizeof(*times), cmp);
	if (ping)
		printf("%lld\n", times[rounds / 2]);
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
	if (argc == 3 && strcmp(argv[1], "create") == 0)
		return create(argv[2]) ? 0 : 2;
	if (argc == 3 && strcmp(argv[1], "create-shell") == 0)
		return create_shell(argv[2]);
	if (argc >= 7 && strcmp(argv[1], "parent") == 0)
		return parent(argv[2], argv[3], argv[4], strtoul(argv[5], NULL, 10), argv + 6);
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
	if (argc == 5 && (strcmp(argv[1], "floor-ping") == 0 || strcmp(argv[1], "floor-pong") == 0)) {
		attach(argv[2], argv[3]);
		return floor_ping_pong(strcmp(argv[1], "floor-ping") == 0, strtol(argv[4], NULL, 10));
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
