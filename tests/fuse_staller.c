/*
 * A FUSE file system that never answers a read, and a process stuck on it:
 * the trap a /proc scanner falls into if it reads a futex_waitv vector from
 * a file's page. Run as root in a private mount namespace:
 *
 *   unshare -m --propagation private fuse_staller MOUNTDIR PATH OFFSET
 *   unshare -m --propagation private fuse_staller --file FILE
 *
 * Mounts MOUNTDIR (one file, "file", of one page) from /dev/fuse and serves
 * it from a child process, answering everything but READ; the child exits
 * when its standard input closes (or at EOF of it), which aborts the
 * connection and frees the stuck process: a server thread of the stuck
 * process itself could never exit, its files being held by the fault. A thread waits
 * for real with FUTEX_WAIT on the word at OFFSET of PATH (so the kernel
 * counts a waiter there and the scanner looks at this process); the main
 * thread calls futex_waitv with its vector in the FUSE file's page, and stays
 * blocked in that call while the kernel faults the page in. Prints "ready"
 * once the READ request has arrived; exits 2 when it cannot be set up.
 *
 * With --file it mounts a file system whose root is a regular file on FILE
 * (as fusermount may let a user do on a file they own) and answers nothing
 * but INIT: whoever stats or opens FILE in that mount namespace waits for
 * the daemon. Prints "ready" once mounted, then sleeps until killed.
 *
 *   unshare -m --propagation private fuse_staller --flush MOUNTDIR
 *
 * With --flush it answers everything but FLUSH, opens MOUNTDIR/file with
 * O_CLOEXEC and execs /bin/true: the exec closes the file, FLUSH is never
 * answered, and the process (this one, its pid unchanged) stays in exec
 * holding the lock that every read of its /proc/PID/{syscall, stat, maps}
 * and every open of its maps and mem take. Prints "ready" once the FLUSH
 * has arrived. Closing its standard input ends the server; the exec then
 * completes and /bin/true exits.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int dev;
static uint32_t *word;
/* the root is a file nobody gets an answer about */
static int file_mode;
/* everything is answered but FLUSH */
static int flush_mode;

static void reply(uint64_t unique, int error, const void *body, size_t size)
{
	char buf[sizeof(struct fuse_out_header) + 256];
	struct fuse_out_header *out = (struct fuse_out_header *)buf;
	out->unique = unique;
	out->error = error;
	out->len = sizeof(*out) + (error ? 0 : size);
	if (!error)
		memcpy(buf + sizeof(*out), body, size);
	if (write(dev, buf, out->len) < 0)
		perror("fuse_staller: reply");
}

static void attr_of(uint64_t node, struct fuse_attr *attr)
{
	memset(attr, 0, sizeof(*attr));
	attr->ino = node;
	attr->nlink = 1;
	attr->mode = node == FUSE_ROOT_ID ? S_IFDIR | 0755 : S_IFREG | 0644;
	attr->size = node == FUSE_ROOT_ID ? 0 : 4096;
	attr->blocks = 8;
	attr->blksize = 4096;
}

static void serve(void)
{
	static char buf[FUSE_MIN_READ_BUFFER + 1048576];
	struct pollfd fds[2] = { { .fd = dev, .events = POLLIN }, { .fd = 0, .events = POLLIN } };
	for (;;) {
		if (poll(fds, 2, -1) < 0 && errno != EINTR)
			_exit(2);
		if (fds[1].revents)
			_exit(0);
		if (!(fds[0].revents & POLLIN))
			continue;
		ssize_t n = read(dev, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < (ssize_t)sizeof(struct fuse_in_header))
			_exit(0);
		struct fuse_in_header *in = (struct fuse_in_header *)buf;
		void *arg = buf + sizeof(*in);
		if (file_mode && in->opcode != FUSE_INIT)
			continue;
		switch (in->opcode) {
		case FUSE_INIT: {
			struct fuse_init_in *init = arg;
			struct fuse_init_out out = { .major = FUSE_KERNEL_VERSION, .minor = FUSE_KERNEL_MINOR_VERSION,
						     .max_readahead = init->max_readahead, .max_write = 4096 };
			reply(in->unique, 0, &out, sizeof(out));
			break;
		}
		case FUSE_LOOKUP: {
			struct fuse_entry_out out = { .nodeid = 2, .entry_valid = 3600, .attr_valid = 3600 };
			if (strcmp(arg, "file")) {
				reply(in->unique, -ENOENT, NULL, 0);
				break;
			}
			attr_of(2, &out.attr);
			reply(in->unique, 0, &out, sizeof(out));
			break;
		}
		case FUSE_GETATTR: {
			struct fuse_attr_out out = { .attr_valid = 3600 };
			attr_of(in->nodeid, &out.attr);
			reply(in->unique, 0, &out, sizeof(out));
			break;
		}
		case FUSE_OPEN: {
			struct fuse_open_out out = { 0 };
			reply(in->unique, 0, &out, sizeof(out));
			break;
		}
		case FUSE_FLUSH:
			if (!flush_mode) {
				reply(in->unique, -ENOSYS, NULL, 0);
				break;
			}
			/* the trap: never answered */
			printf("ready\n");
			fflush(stdout);
			break;
		case FUSE_READ:
			if (flush_mode) {
				reply(in->unique, -EIO, NULL, 0);
				break;
			}
			/* the trap: never answered */
			printf("ready\n");
			fflush(stdout);
			break;
		case FUSE_FORGET:
		case FUSE_BATCH_FORGET:
		case FUSE_INTERRUPT:
			break;
		default:
			reply(in->unique, -ENOSYS, NULL, 0);
		}
	}
}

static void *wait_word(void *unused)
{
	(void)unused;
	for (;;)
		syscall(SYS_futex, word, FUTEX_WAIT, *word, NULL, NULL, 0);
	return NULL;
}

int main(int argc, char **argv)
{
	char options[128], path[4096];
	pthread_t waiter;
	file_mode = argc == 3 && !strcmp(argv[1], "--file");
	flush_mode = argc == 3 && !strcmp(argv[1], "--flush");
	if (argc != 4 && !file_mode && !flush_mode)
		return 2;
	if (file_mode || flush_mode)
		argv++;
	dev = open("/dev/fuse", O_RDWR | O_CLOEXEC);
	if (dev < 0) {
		perror("fuse_staller: /dev/fuse");
		return 2;
	}
	snprintf(options, sizeof(options), "fd=%d,rootmode=%o,user_id=0,group_id=0", dev,
		 file_mode ? S_IFREG : S_IFDIR);
	if (mount("staller", argv[1], "fuse", MS_NOSUID | MS_NODEV, options)) {
		perror("fuse_staller: mount");
		return 2;
	}
	fflush(stdout);
	pid_t server = fork();
	if (server == 0)
		serve();
	close(dev);
	if (server < 0)
		return 2;
	close(0);
	if (flush_mode) {
		snprintf(path, sizeof(path), "%s/file", argv[1]);
		if (open(path, O_RDONLY | O_CLOEXEC) < 0) {
			perror("fuse_staller: the FUSE file");
			return 2;
		}
		execl("/bin/true", "true", (char *)NULL);
		perror("fuse_staller: exec /bin/true");
		return 2;
	}
	if (file_mode) {
		printf("ready\n");
		fflush(stdout);
		for (;;)
			pause();
	}
	int fd = open(argv[2], O_RDONLY);
	char *page = fd < 0 ? MAP_FAILED : mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
	if (page == MAP_FAILED)
		return 2;
	word = (uint32_t *)(page + atoi(argv[3]));
	pthread_create(&waiter, NULL, wait_word, NULL);
	snprintf(path, sizeof(path), "%s/file", argv[1]);
	int trap = open(path, O_RDONLY);
	void *vector = trap < 0 ? MAP_FAILED : mmap(NULL, 4096, PROT_READ, MAP_SHARED, trap, 0);
	if (vector == MAP_FAILED) {
		perror("fuse_staller: the FUSE file");
		return 2;
	}
	syscall(SYS_futex_waitv, vector, 1, 0, NULL, 0);
	return 2;
}
