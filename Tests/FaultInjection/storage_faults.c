// Preloaded into incidentd by the integration tests (LD_PRELOAD) to make its storage misbehave on cue.
//
// - While the file named by INCIDENTD_FAIL_META_WRITES exists, LMDB's meta-page writes fail with EIO, as on a
//   failing disk. LMDB writes each commit's meta page through a descriptor of its own, opened O_DSYNC: a write
//   of at most a few hundred bytes into the first pages of data.mdb. Every other write goes through.
// - While the file named by INCIDENTD_STALL_SYNCS exists, fdatasync waits (checking every millisecond), as on
//   a disk that stopped answering.
//
// Built by the tests with the toolchain's clang: clang -shared -fPIC -o libstorage_faults.so storage_faults.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

static int flag_set(const char *variable) {
    const char *flag = getenv(variable);
    return flag != NULL && access(flag, F_OK) == 0;
}

static int failing_meta_write(int fd, size_t count, off_t offset) {
    if (count > 512 || offset >= 65536) return 0;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || !(flags & O_DSYNC)) return 0;
    return flag_set("INCIDENTD_FAIL_META_WRITES");
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

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    while (flag_set("INCIDENTD_STALL_SYNCS")) usleep(1000);
    return real(fd);
}
