/*
 * The other side of tests/confinement_test.ts. Each mode ends by itself
 * after SECONDS (SIGTERM ends it early), printing its count.
 *
 *   confinement cycle INSIDE OUTSIDE SECONDS
 *       Renames the folder INSIDE to OUTSIDE and back, again and again, as
 *       fast as it can: another user's folder within the allowed folder,
 *       out of it for half of every instant. Prints how many times it moved
 *       the folder out.
 *
 *   confinement lease FILE SECONDS
 *       Takes a write lease on FILE (fcntl F_SETLEASE F_WRLCK; as its owner),
 *       prints "leased", and holds it without ever giving it up: an open of
 *       FILE by another process must break the lease, and with O_NONBLOCK
 *       fails with EAGAIN.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
	(void)sig;
	stop = 1;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cycle(const char *inside, const char *outside, double seconds)
{
	double end = now() + seconds;
	long moves = 0;

	while (!stop && now() < end) {
		if (rename(inside, outside) == 0) {
			moves++;
			rename(outside, inside);
		}
	}
	printf("%ld\n", moves);
	return 0;
}

static int lease(const char *path, double seconds)
{
	int fd = open(path, O_RDWR);

	if (fd < 0 || fcntl(fd, F_SETLEASE, F_WRLCK) < 0) {
		perror(path);
		return 1;
	}
	printf("leased\n");
	fflush(stdout);
	while (!stop && seconds > 0) {
		usleep(10000);
		seconds -= 0.01;
	}
	printf("0\n");
	return 0;
}

int main(int argc, char *argv[])
{
	signal(SIGTERM, on_term);
	/* a lease break is announced with SIGIO, whose default ends the process */
	signal(SIGIO, SIG_IGN);
	if (argc == 5 && !strcmp(argv[1], "cycle"))
		return cycle(argv[2], argv[3], atof(argv[4]));
	if (argc == 4 && !strcmp(argv[1], "lease"))
		return lease(argv[2], atof(argv[3]));
	fprintf(stderr, "usage: confinement cycle INSIDE OUTSIDE SECONDS | lease FILE SECONDS\n");
	return 2;
}
