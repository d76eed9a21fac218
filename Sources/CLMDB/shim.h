#include <lmdb.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

/// O_DIRECT, which Swift's Glibc module leaves out (glibc defines it only under _GNU_SOURCE); 0 where unknown.
/// The LMDB wrapper sets it on the file of a copy, as mdb_env_copy2 does, so that a backup does not fill the page
/// cache.
static inline int lmdb_shim_o_direct(void) {
#if defined(O_DIRECT)
    return O_DIRECT;
#elif defined(__O_DIRECT)
    return __O_DIRECT;
#else
    return 0;
#endif
}

/// Linux's fallocate(2) with mode 0, which Swift's Glibc module leaves out (glibc declares it only under
/// _GNU_SOURCE): allocates the blocks of bytes [offset, offset + length) of the file `fd`, making it that long if it
/// is shorter. Returns 0, or the errno; EOPNOTSUPP where the file system (or the platform) cannot. Never emulated by
/// writing zeros, as glibc's posix_fallocate does then: another process may be writing the same bytes of the file
/// through a map of it (LMDB's lock.mdb).
static inline int lmdb_shim_fallocate(int fd, long long offset, long long length) {
#if defined(__linux__) && defined(SYS_fallocate) && defined(__LP64__)
    return syscall(SYS_fallocate, fd, 0, (long)offset, (long)length) == 0 ? 0 : errno;
#else
    (void)fd; (void)offset; (void)length;
    return EOPNOTSUPP;
#endif
}
