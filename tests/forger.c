/*
 * An attacker of the /proc scanner: a process whose syscall records lie, or
 * whose maps are huge. Names itself COMM (any bytes but NUL, 15 at most),
 * maps PATH shared, then blocks until killed:
 *
 *   forger MODE PATH OFFSET COMM
 *     real        a real FUTEX_WAIT on the word at OFFSET: the kernel counts it
 *     futex       looks blocked in FUTEX_WAIT on that word (a seccomp
 *                 user-notification nobody answers): the kernel counts nothing
 *     waitv-wild  looks blocked in futex_waitv with its vector at 0x8000000000000000
 *     waitv-file  looks blocked in futex_waitv with its vector in PATH's page:
 *                 a file's page, which the scanner must not read
 *     many-maps   maps a memfd with a 240-byte name 60,000 times, then a real
 *                 FUTEX_WAIT on a word of the memfd (not of PATH): maps of ~18 MB
 *
 * Prints "ready" once set up; exits 2 when it cannot be.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef FUTEX2_SIZE_U32
#define FUTEX2_SIZE_U32 0x02
#endif

/* every later call numbered nr, from this thread, waits for an answer that never comes */
static int forge(long nr)
{
	struct sock_filter filter[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	/* the listener stays open and unread: the call blocks until the process is killed */
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
}

static void ready(void)
{
	printf("ready\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	if (argc != 5)
		return 2;
	const char *mode = argv[1];
	prctl(PR_SET_NAME, argv[4]);
	int fd = open(argv[2], O_RDONLY);
	char *page = fd < 0 ? MAP_FAILED : mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	if (page == MAP_FAILED)
		return 2;
	uint32_t *word = (uint32_t *)(page + atoi(argv[3]));
	if (!strcmp(mode, "real")) {
		ready();
		for (;;)
			syscall(SYS_futex, word, FUTEX_WAIT, *word, NULL, NULL, 0);
	}
	if (!strcmp(mode, "futex")) {
		if (forge(SYS_futex) < 0)
			return 2;
		ready();
		syscall(SYS_futex, word, FUTEX_WAIT, *word, NULL, NULL, 0);
		return 2;
	}
	if (!strcmp(mode, "waitv-wild") || !strcmp(mode, "waitv-file")) {
		int file = !strcmp(mode, "waitv-file");
		if (forge(SYS_futex_waitv) < 0)
			return 2;
		ready();
		syscall(SYS_futex_waitv, file ? (void *)page : (void *)0x8000000000000000UL, 1, 0, NULL, 0);
		return 2;
	}
	if (!strcmp(mode, "many-maps")) {
		char name[241];
		memset(name, 'm', sizeof(name) - 1);
		name[sizeof(name) - 1] = 0;
		int mfd = memfd_create(name, 0);
		if (mfd < 0 || ftruncate(mfd, 4096))
			return 2;
		/* mapped first, so above the rest: maps must be read past all of them to find it */
		uint32_t *own = mmap(NULL, 4096, PROT_READ, MAP_SHARED, mfd, 0);
		if (own == MAP_FAILED)
			return 2;
		/* the same offset again and again: neighbours cannot merge */
		for (int i = 0; i < 60000; i++) {
			if (mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, mfd, 0) == MAP_FAILED)
				return 2;
		}
		ready();
		for (;;)
			syscall(SYS_futex, own, FUTEX_WAIT, 0, NULL, NULL, 0);
	}
	return 2;
}
