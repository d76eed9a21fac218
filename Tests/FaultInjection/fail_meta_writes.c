// Preloaded into incidentd by ReliabilityStorageTests (LD_PRELOAD) to make LMDB's meta-page writes fail.
//
// LMDB writes each commit's meta page through a descriptor of its own, opened O_DSYNC: a write of at most a few
// hundred bytes into the first pages of data.mdb. While the file named by INCIDENTD_FAIL_META_WRITES exists,
// such a write fails with EIO, as on a failing disk; every other write goes through. Built by the test with the
// toolchain's clang: cc -shared -fPIC -o libfail_meta_writes.so fail_meta_writes.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

static int failing_meta_write(int fd, size_t count, off_t offset) {
    if (count > 512 || offset >= 65536) return 0;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || !(flags & O_DSYNC)) return 0;
    const char *flag = getenv("INCIDENTD_FAIL_META_WRITES");
    return flag != NULL && access(flag, F_OK) == 0;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (real == NULL) real = (ssize_t (*)(int, const void *, size_t, off_t))dlsym(RTLD_NEXT, "pwrite");
    if (failing_meta_write(fd, count, offset)) {
        errno = EIO;
        return -1;
    }
    return real(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    return pwrite(fd, buf, count, offset);
}
