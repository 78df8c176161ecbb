/*
 * The other side of the races in sandbox_test.ts. Each mode ends by itself
 * after SECONDS, so that nothing outlives a failed test for long.
 *
 *   sandbox_race swap A B SECONDS
 *       Exchanges the names A and B (renameat2 RENAME_EXCHANGE) in a tight
 *       loop: what an attacker does to code that checks a path and then
 *       opens it. Prints how many exchanges it made (an even number leaves
 *       A and B where they were; SIGTERM stops it).
 *
 *   sandbox_race writer DIR COUNT SECONDS
 *       For i from 0 to COUNT-1: waits until DIR/f<i> exists, then writes
 *       8192 bytes of 'x' at its start, after a short delay that varies
 *       with i (so that some writes land in the middle of whatever another
 *       process does to the fresh file). Prints how many files it wrote.
 *
 *   sandbox_race move INSIDE OUTSIDE SECONDS
 *       Makes the folder INSIDE, and after a short pause of varying length
 *       moves it to OUTSIDE/g<i> (rename), again and again: an attacker's
 *       folder within the allowed folder, taken out of it between a check
 *       and a create. Right after each move the folder gets the
 *       set-group-ID bit, under the folder's own lock as every create in
 *       it: a file created in it after that takes the folder's group, so a
 *       file of that group was created while its folder was outside, and
 *       one of another group while it was inside (the instant between the
 *       move and the mode change counts as inside). Prints how many
 *       folders it moved out.
 *
 *   sandbox_race descend DIR NAME LEVELS [COMMAND ARG...]
 *       Goes LEVELS folders named NAME down from DIR, one relative step at a
 *       time and making each that is missing, then runs COMMAND there. Its
 *       path may be far longer than PATH_MAX: no path that long is ever
 *       passed to the kernel, and shells cannot be trusted to do the same.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

#define WRITE_SIZE 8192

/* SIGTERM ends a mode early, still printing its count. */
static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int exchange(const char *a, const char *b)
{
	return syscall(SYS_renameat2, AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE);
}

static int swap(const char *a, const char *b, double seconds)
{
	double end = now() + seconds;
	long n = 0;

	while (!stop && now() < end) {
		for (int i = 0; i < 100; i++, n++) {
			if (exchange(a, b)) {
				perror("renameat2");
				return 2;
			}
		}
	}
	printf("%ld\n", n);
	return 0;
}

static void spin_us(double us)
{
	double end = now() + us / 1e6;

	while (now() < end)
		;
}

static int move(const char *inside, const char *outside, double seconds)
{
	char path[4096];
	double end = now() + seconds;
	long n = 0;

	for (; !stop && now() < end; n++) {
		int fd;

		if (mkdir(inside, 0755) || (fd = open(inside, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
			perror(inside);
			return 2;
		}
		spin_us((n * 37) % 100);
		snprintf(path, sizeof(path), "%s/g%ld", outside, n);
		if (rename(inside, path) || fchmod(fd, 02755)) {
			perror(path);
			return 2;
		}
		close(fd);
	}
	printf("%ld\n", n);
	return 0;
}

static int writer(const char *dir, long count, double seconds)
{
	static char data[WRITE_SIZE];
	char path[4096];
	double end = now() + seconds;
	long i;

	memset(data, 'x', sizeof(data));
	for (i = 0; i < count; i++) {
		int fd;

		snprintf(path, sizeof(path), "%s/f%ld", dir, i);
		while ((fd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
			if (errno != ENOENT) {
				perror(path);
				return 2;
			}
			if (stop || now() > end)
				goto done;
			sched_yield();
		}
		spin_us((i * 37) % 200);
		if (pwrite(fd, data, sizeof(data), 0) != sizeof(data)) {
			perror(path);
			return 2;
		}
		close(fd);
	}
done:
	printf("%ld\n", i);
	return 0;
}

static int descend(const char *dir, const char *name, long levels, char *command[])
{
	if (chdir(dir)) {
		perror(dir);
		return 2;
	}
	for (long i = 0; i < levels; i++) {
		if (mkdir(name, 0700) && errno != EEXIST) {
			perror("mkdir");
			return 2;
		}
		if (chdir(name)) {
			perror("chdir");
			return 2;
		}
	}
	if (!command[0])
		return 0;
	execvp(command[0], command);
	perror(command[0]);
	return 2;
}

int main(int argc, char *argv[])
{
	signal(SIGTERM, on_term);
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 5 && !strcmp(argv[1], "swap"))
		return swap(argv[2], argv[3], atof(argv[4]));
	if (argc == 5 && !strcmp(argv[1], "writer"))
		return writer(argv[2], atol(argv[3]), atof(argv[4]));
	if (argc == 5 && !strcmp(argv[1], "move"))
		return move(argv[2], argv[3], atof(argv[4]));
	if (argc >= 5 && !strcmp(argv[1], "descend"))
		return descend(argv[2], argv[3], atol(argv[4]), argv + 5);
	fprintf(stderr, "usage: %s swap A B SECONDS | writer DIR COUNT SECONDS | move INSIDE OUTSIDE SECONDS | "
		"descend DIR NAME LEVELS [COMMAND...]\n",
		argv[0]);
	return 1;
}
