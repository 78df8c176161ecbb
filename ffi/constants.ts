/**
 * Every kernel constant the project uses, named as the kernel's headers name
 * them: open flags, errnos, futex operations, struct offsets and syscall
 * numbers. Those that differ between x86_64 and aarch64 are chosen here, once,
 * from `Deno.build.arch` (x86_64's where the platform is neither: the loader
 * refuses that platform before any is used).
 * @module
 */

const AARCH64 = Deno.build.arch === "aarch64";

// <fcntl.h>
export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;
export const F_GETFD = 1;
export const FD_CLOEXEC = 1;
export const SEEK_SET = 0;

// <sys/file.h>, <poll.h>, <sys/eventfd.h>: the resident agent's channel
export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const LOCK_UN = 8;
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
/** struct pollfd { int fd; short events; short revents; } */
export const POLLFD_SIZE = 8;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const O_RDONLY = 0o0;
export const O_WRONLY = 0o1;
export const O_RDWR = 0o2;
export const O_CREAT = 0o100;
export const O_EXCL = 0o200;
export const O_NOCTTY = 0o400;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const O_NOATIME = 0o1000000;
export const O_PATH = 0o10000000;
export const O_NOFOLLOW = AARCH64 ? 0o100000 : 0o400000;
export const O_DIRECTORY = AARCH64 ? 0o40000 : 0o200000;

// <linux/openat2.h>
export const RESOLVE_NO_XDEV = 0x01;
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_NO_SYMLINKS = 0x04;
export const RESOLVE_BENEATH = 0x08;

// <sys/mman.h>
export const PROT_READ = 0x1;
export const PROT_WRITE = 0x2;
export const MAP_SHARED = 0x1;
export const MAP_POPULATE = 0x8000;

// <linux/futex.h>
export const FUTEX_WAIT = 0;
export const FUTEX_WAKE = 1;
export const FUTEX_CMP_REQUEUE = 4;
export const FUTEX_WAIT_BITSET = 9;
export const FUTEX_PRIVATE_FLAG = 128;
export const FUTEX_CLOCK_REALTIME = 256;
export const FUTEX2_SIZE_U32 = 0x02;
/** futex_waitv's flag for a word only its own process uses. */
export const FUTEX2_PRIVATE = 128;
/** The most entries one futex_waitv call takes. */
export const FUTEX_WAITV_MAX = 128;
/** `struct futex_waitv { u64 val; u64 uaddr; u32 flags; u32 __reserved; }` */
export const FUTEX_WAITV_SIZE = 24;
export const FUTEX_WAITV_UADDR = 8;
export const FUTEX_WAITV_FLAGS = 16;

// <time.h>
export const CLOCK_MONOTONIC = 1;

// <limits.h>
export const INT_MAX = 0x7fffffff;
export const PATH_MAX = 4096;

// include/linux/sched.h: the flag of a kernel thread, /proc/PID/stat's ninth field
export const PF_KTHREAD = 0x00200000;

// <errno.h>
export const EPERM = 1;
export const ENOENT = 2;
export const ESRCH = 3;
export const EINTR = 4;
export const EAGAIN = 11;
export const EACCES = 13;
export const EFAULT = 14;
export const EEXIST = 17;
export const EXDEV = 18;
export const ENOTDIR = 20;
export const EISDIR = 21;
export const ENFILE = 23;
export const EMFILE = 24;
export const ENOSPC = 28;
export const EROFS = 30;
export const ENAMETOOLONG = 36;
export const ENOSYS = 38;
export const ELOOP = 40;
export const EOPNOTSUPP = 95;
export const ETIMEDOUT = 110;
export const ECANCELED = 125;

// <sys/stat.h>: the file type bits of st_mode
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_ISVTX = 0o1000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

// <dirent.h>: d_type
export const DT_UNKNOWN = 0;
export const DT_REG = 8;

/** `struct linux_dirent64 { u64 d_ino; s64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }` */
export const DIRENT64_RECLEN = 16;
export const DIRENT64_TYPE = 18;
export const DIRENT64_NAME = 19;

/**
 * Offsets in `struct stat`: x86_64 has its own layout, with a 64-bit
 * st_nlink after st_ino; aarch64 the generic one, with a 32-bit st_nlink
 * after st_mode.
 */
export const STAT_OFFSETS = {
  x86_64: { st_dev: 0, st_ino: 8, st_nlink: 16, st_mode: 24, st_uid: 28, st_size: 48, st_ctime: 104 },
  aarch64: { st_dev: 0, st_ino: 8, st_mode: 16, st_nlink: 20, st_uid: 24, st_size: 48, st_ctime: 104 },
} as const;
/** This machine's `struct stat` offsets. */
export const STAT = AARCH64 ? STAT_OFFSETS.aarch64 : STAT_OFFSETS.x86_64;
/** Whether st_nlink is 64 bits wide here (x86_64) rather than 32 (aarch64). */
export const STAT_NLINK_64 = !AARCH64;
/** Room for a `struct stat` on either architecture (144 and 128 bytes). */
export const STAT_SIZE = 256;

/** prctl(2): set the calling thread's name (its `comm`, at most 15 bytes). */
export const PR_SET_NAME = 15;

/** io_uring(7): the futex waits of the resident agent (Linux 6.7 and later). */
export const IORING_OP_NOP = 0;
export const IORING_OP_ASYNC_CANCEL = 14;
export const IORING_OP_LINK_TIMEOUT = 15;
export const IORING_OP_FUTEX_WAIT = 51;
export const IOSQE_IO_LINK = 0x4;
export const IORING_SETUP_CQSIZE = 0x8;
export const IORING_SETUP_CLAMP = 0x10;
export const IORING_FEAT_SINGLE_MMAP = 0x1;
export const IORING_FEAT_NODROP = 0x2;
export const IORING_FEAT_EXT_ARG = 0x100;
export const IORING_ENTER_GETEVENTS = 0x1;
export const IORING_ENTER_EXT_ARG = 0x8;
export const IORING_TIMEOUT_ABS = 0x1;
export const IORING_OFF_SQ_RING = 0;
export const IORING_OFF_SQES = 0x10000000;
export const FUTEX_BITSET_MATCH_ANY = 0xffffffff;
/** `struct io_uring_params`: its size, and offsets of the fields read (sq_off at 40, cq_off at 80). */
export const IO_URING_PARAMS = {
  size: 120,
  sq_entries: 0,
  cq_entries: 4,
  flags: 8,
  features: 20,
  sq_head: 40,
  sq_tail: 44,
  sq_ring_mask: 48,
  sq_array: 64,
  cq_head: 80,
  cq_tail: 84,
  cq_ring_mask: 88,
  cq_cqes: 100,
} as const;
/** `struct io_uring_sqe` (64 bytes): offsets of the fields written. */
export const IO_URING_SQE = {
  size: 64,
  opcode: 0,
  flags: 1,
  fd: 4,
  addr2: 8,
  addr: 16,
  len: 24,
  op_flags: 28,
  user_data: 32,
  addr3: 48,
} as const;
/** `struct io_uring_cqe { u64 user_data; s32 res; u32 flags; }` */
export const IO_URING_CQE = { size: 16, user_data: 0, res: 8 } as const;
/** `struct io_uring_getevents_arg { u64 sigmask; u32 sigmask_sz; u32 pad; u64 ts; }` */
export const IO_URING_GETEVENTS_ARG = { size: 24, ts: 16 } as const;

/** Syscall numbers of the calls made, per architecture (aarch64 has no open or stat). */
export const SYSCALLS = {
  x86_64: {
    pread64: 17,
    pwrite64: 18,
    close: 3,
    fstat: 5,
    mmap: 9,
    munmap: 11,
    sched_yield: 24,
    nanosleep: 35,
    ftruncate: 77,
    geteuid: 107,
    prctl: 157,
    futex: 202,
    openat: 257,
    newfstatat: 262,
    unlinkat: 263,
    readlinkat: 267,
    getdents64: 217,
    clock_gettime: 228,
    fallocate: 285,
    openat2: 437,
    futex_waitv: 449,
    read: 0,
    write: 1,
    lseek: 8,
    kill: 62,
    fcntl: 72,
    flock: 73,
    chdir: 80,
    fchmod: 91,
    mkdirat: 258,
    mknodat: 259,
    ppoll: 271,
    eventfd2: 290,
    dup3: 292,
    renameat2: 316,
    io_uring_setup: 425,
    io_uring_enter: 426,
  },
  aarch64: {
    pread64: 67,
    pwrite64: 68,
    close: 57,
    fstat: 80,
    mmap: 222,
    munmap: 215,
    sched_yield: 124,
    nanosleep: 101,
    ftruncate: 46,
    geteuid: 175,
    prctl: 167,
    futex: 98,
    openat: 56,
    newfstatat: 79,
    unlinkat: 35,
    readlinkat: 78,
    getdents64: 61,
    clock_gettime: 113,
    fallocate: 47,
    openat2: 437,
    futex_waitv: 449,
    read: 63,
    write: 64,
    lseek: 62,
    kill: 129,
    fcntl: 25,
    flock: 32,
    chdir: 49,
    fchmod: 52,
    mkdirat: 34,
    mknodat: 33,
    ppoll: 73,
    eventfd2: 19,
    dup3: 24,
    renameat2: 276,
    io_uring_setup: 425,
    io_uring_enter: 426,
  },
} as const;

/** The name of a syscall this project makes. */
export type SyscallName = keyof typeof SYSCALLS.x86_64;

/** This machine's syscall numbers. */
export const NR: Readonly<Record<SyscallName, number>> = AARCH64 ? SYSCALLS.aarch64 : SYSCALLS.x86_64;
