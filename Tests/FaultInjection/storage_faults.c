// Preloaded into incidentd by the integration tests (LD_PRELOAD) to make its storage misbehave on cue.
//
// - While the file named by INCIDENTD_FAIL_META_WRITES exists, LMDB's meta-page writes fail with EIO, as on a
//   failing disk. LMDB writes each commit's meta page through a descriptor of its own, opened O_DSYNC: a write
//   of at most a few hundred bytes into the first pages of data.mdb. Every other write goes through.
// - While the file named by INCIDENTD_STALL_SYNCS exists, fdatasync waits (checking every millisecond), as on
//   a disk that stopped answering; while the one named by INCIDENTD_STALL_FSYNCS exists, fsync does (a backup's
//   copy is synced with it, LMDB's commits never are).
// - With INCIDENTD_POWER_CUT and INCIDENTD_POWER_CUT_IMAGE set, the power fails on cue: see "A power cut" below.
// - When the file named by INCIDENTD_COMMIT_MAP_FULL exists, the next mdb_txn_commit removes it, aborts the
//   transaction and returns MDB_MAP_FULL, as LMDB's commit does when writing the named databases' roots or the
//   free list needs a page past the end of the map: nothing of the transaction is stored. While the file named by
//   INCIDENTD_HOLD_COMMITS exists, mdb_txn_commit waits after that check (checking every millisecond), having made
//   the file of that name with ".held" added, so that a test knows a commit is under way and appends queue
//   behind it.
//
// Built by the tests with the toolchain's clang: clang -shared -fPIC -o libstorage_faults.so storage_faults.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
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

// ---------------------------------------------------------------------------------------------------------------
// A power cut. With INCIDENTD_POWER_CUT set (the name of a flag file) and INCIDENTD_POWER_CUT_IMAGE (the name of
// an image file), every write to data.mdb is tracked from the moment the file is opened. A write is durable once
// a sync of the file has returned (fdatasync or fsync on any descriptor of it), or when it returns itself on a
// descriptor opened O_DSYNC (LMDB's meta page); until then the disk may hold any of its 512-byte sectors, each
// old or new, whatever the order the writes were made in. Each sync and each O_DSYNC write is a durability point.
//
// Once the flag file exists, holding "N SEED", the N-th durability point from there (the one that finds it is the
// first) never happens: the image receives what the disk could hold at that instant (the file as written, with
// each sector written since the last sync put back as it was or kept, by a pseudo-random draw from SEED, and the
// O_DSYNC write under way kept or not by the same draw), one line on stderr says so, and the process kills
// itself with SIGKILL. A client can then have had an answer only for what was durable before that point, and
// the image is what a restart after the power came back would find.
//
// The tracking assumes what LMDB does: data.mdb is written in whole pages with pwrite, or lseek and writev, and
// an O_DSYNC write never covers bytes written since the last sync.

enum { TRACKED_FDS = 65536, SECTOR = 512 };

/// A write since the last sync: where it went, and the bytes it replaced (zeros past the file's end then).
struct unsynced_write {
    off_t offset;
    size_t length;
    unsigned char *before;
};

static pthread_mutex_t power_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char tracked[TRACKED_FDS]; // 0: not data.mdb; 1: data.mdb; 2: data.mdb opened O_DSYNC
static struct unsynced_write *unsynced;
static size_t unsynced_count, unsynced_capacity;
static long durability_points, armed_at = -1, cut_at = -1;
static uint64_t draw_state;

static int power_cut_enabled(void) {
    static int enabled = -1;
    if (enabled < 0) enabled = getenv("INCIDENTD_POWER_CUT") != NULL && getenv("INCIDENTD_POWER_CUT_IMAGE") != NULL;
    return enabled;
}

static int is_data_file(const char *path) {
    size_t length = strlen(path);
    return length >= 8 && strcmp(path + length - 8, "data.mdb") == 0 && (length == 8 || path[length - 9] == '/');
}

static int is_tracked(int fd) { return power_cut_enabled() && fd >= 0 && fd < TRACKED_FDS && tracked[fd] != 0; }

static uint64_t draw(void) {
    draw_state ^= draw_state << 13;
    draw_state ^= draw_state >> 7;
    draw_state ^= draw_state << 17;
    return draw_state;
}

static off_t file_size(int fd) {
    struct stat status;
    return fstat(fd, &status) == 0 ? status.st_size : 0;
}

static void *next_symbol(const char *name) { return dlsym(RTLD_NEXT, name); }

static ssize_t real_pread(int fd, void *buf, size_t count, off_t offset) {
    static ssize_t (*real)(int, void *, size_t, off_t);
    if (real == NULL) real = (ssize_t (*)(int, void *, size_t, off_t))next_symbol("pread");
    return real(fd, buf, count, offset);
}

static ssize_t real_pwrite(int fd, const void *buf, size_t count, off_t offset) {
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (real == NULL) real = (ssize_t (*)(int, const void *, size_t, off_t))next_symbol("pwrite");
    return real(fd, buf, count, offset);
}

/// Notes what a write of `length` bytes at `offset` of data.mdb is about to replace.
static void remember_before_write(int fd, off_t offset, size_t length) {
    if (unsynced_count == unsynced_capacity) {
        unsynced_capacity = unsynced_capacity ? 2 * unsynced_capacity : 64;
        unsynced = realloc(unsynced, unsynced_capacity * sizeof *unsynced);
        if (unsynced == NULL) abort();
    }
    struct unsynced_write *w = &unsynced[unsynced_count++];
    w->offset = offset;
    w->length = length;
    w->before = calloc(length ? length : 1, 1);
    if (w->before == NULL) abort();
    off_t size = file_size(fd);
    if (offset < size) {
        size_t existing = (size_t)(size - offset) < length ? (size_t)(size - offset) : length;
        if (real_pread(fd, w->before, existing, offset) < 0) abort();
    }
}

static void forget_unsynced(void) {
    for (size_t i = 0; i < unsynced_count; i++) free(unsynced[i].before);
    unsynced_count = 0;
}

/// Counts a durability point; returns 1 when it is the one the power fails at.
static int power_fails_now(void) {
    durability_points++;
    if (cut_at < 0) {
        FILE *flag = fopen(getenv("INCIDENTD_POWER_CUT"), "r");
        if (flag == NULL) return 0;
        long n = 0;
        unsigned long long seed = 0;
        if (fscanf(flag, "%ld %llu", &n, &seed) != 2 || n < 1) abort();
        fclose(flag);
        armed_at = durability_points;
        cut_at = durability_points + n - 1;
        draw_state = seed * 0x9E3779B97F4A7C15ull + 1;
    }
    return durability_points == cut_at;
}

/// Writes the image the disk holds at this instant, with `pending` (an O_DSYNC write under way, or NULL) kept or
/// not, then kills the process.
static void cut_power(int fd, const void *pending, size_t pending_length, off_t pending_offset) {
    const char *path = getenv("INCIDENTD_POWER_CUT_IMAGE");
    int image = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    // The meta page's descriptor is write-only: read the file through one of its own.
    char self[64];
    snprintf(self, sizeof self, "/proc/self/fd/%d", fd);
    int source = open(self, O_RDONLY | O_CLOEXEC);
    if (image < 0 || source < 0) abort();
    off_t size = file_size(fd);
    unsigned char buffer[1 << 16];
    for (off_t at = 0; at < size;) {
        ssize_t n = real_pread(source, buffer, sizeof buffer, at);
        if (n <= 0) abort();
        if (real_pwrite(image, buffer, (size_t)n, at) != n) abort();
        at += n;
    }
    close(source);
    if (ftruncate(image, size) != 0) abort();
    long sectors = 0, lost = 0;
    for (size_t i = unsynced_count; i-- > 0;) {
        const struct unsynced_write *w = &unsynced[i];
        for (size_t at = 0; at < w->length; at += SECTOR) {
            sectors++;
            if (draw() & 1) continue;
            lost++;
            size_t length = w->length - at < SECTOR ? w->length - at : SECTOR;
            if (real_pwrite(image, w->before + at, length, w->offset + (off_t)at) != (ssize_t)length) abort();
        }
    }
    int kept = 0;
    if (pending != NULL && (draw() & 1)) {
        kept = 1;
        if (real_pwrite(image, pending, pending_length, pending_offset) != (ssize_t)pending_length) abort();
    }
    close(image);
    fprintf(stderr, "storage_faults: power cut at durability point %ld (number %ld since the flag): %ld of %ld unsynced sectors lost%s\n",
        durability_points, durability_points - armed_at + 1, lost, sectors, pending == NULL ? "" : kept ? ", the O_DSYNC write kept" : ", the O_DSYNC write lost");
    fflush(stderr);
    kill(getpid(), SIGKILL);
    for (;;) pause();
}

static int open_tracked(const char *real_name, const char *path, int flags, mode_t mode) {
    int (*real)(const char *, int, ...) = (int (*)(const char *, int, ...))next_symbol(real_name);
    int fd = real(path, flags, mode);
    if (fd >= 0 && fd < TRACKED_FDS && power_cut_enabled()) {
        tracked[fd] = !is_data_file(path) ? 0 : (flags & O_DSYNC) == O_DSYNC ? 2 : 1;
    }
    return fd;
}

// open and open64 alike: the mode is there only when the flags create a file.
#define TRACKING_OPEN(name)                                           \
    int name(const char *path, int flags, ...) {                      \
        mode_t mode = 0;                                              \
        if (flags & (O_CREAT | O_TMPFILE)) {                          \
            va_list arguments;                                        \
            va_start(arguments, flags);                               \
            mode = (mode_t)va_arg(arguments, int);                    \
            va_end(arguments);                                        \
        }                                                             \
        return open_tracked(#name, path, flags, mode);                \
    }

TRACKING_OPEN(open)
TRACKING_OPEN(open64)

int close(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))next_symbol("close");
    if (fd >= 0 && fd < TRACKED_FDS) tracked[fd] = 0;
    return real(fd);
}

/// A write of data.mdb: remembered until the next sync, or, on an O_DSYNC descriptor, a durability point of its own.
static ssize_t tracked_pwrite(int fd, const void *bytes, size_t count, off_t offset) {
    pthread_mutex_lock(&power_lock);
    if (tracked[fd] == 2) {
        if (power_fails_now()) cut_power(fd, bytes, count, offset);
    } else {
        remember_before_write(fd, offset, count);
    }
    ssize_t written = real_pwrite(fd, bytes, count, offset);
    pthread_mutex_unlock(&power_lock);
    return written;
}

/// A vectored write of data.mdb, made as one pwrite of its bytes gathered: the same bytes at the same place.
static ssize_t tracked_pwritev(int fd, const struct iovec *iov, int count, off_t offset) {
    size_t length = 0;
    for (int i = 0; i < count; i++) length += iov[i].iov_len;
    unsigned char *bytes = malloc(length ? length : 1);
    if (bytes == NULL) abort();
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        memcpy(bytes + at, iov[i].iov_base, iov[i].iov_len);
        at += iov[i].iov_len;
    }
    ssize_t written = tracked_pwrite(fd, bytes, length, offset);
    free(bytes);
    return written;
}

ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset) {
    if (failing_meta_write(fd, count, offset)) {
        errno = EIO;
        return -1;
    }
    return is_tracked(fd) ? tracked_pwrite(fd, buf, count, offset) : real_pwrite(fd, buf, count, offset);
}

ssize_t pwrite64(int fd, const void *buf, size_t count, off_t offset) {
    return pwrite(fd, buf, count, offset);
}

// write and writev at the descriptor's offset: the same write there, followed by the move of the offset.
ssize_t write(int fd, const void *buf, size_t count) {
    static ssize_t (*real)(int, const void *, size_t);
    if (real == NULL) real = (ssize_t (*)(int, const void *, size_t))next_symbol("write");
    if (!is_tracked(fd)) return real(fd, buf, count);
    off_t offset = lseek(fd, 0, SEEK_CUR);
    ssize_t written = tracked_pwrite(fd, buf, count, offset);
    if (written > 0) lseek(fd, offset + written, SEEK_SET);
    return written;
}

ssize_t pwritev(int fd, const struct iovec *iov, int count, off_t offset) {
    static ssize_t (*real)(int, const struct iovec *, int, off_t);
    if (real == NULL) real = (ssize_t (*)(int, const struct iovec *, int, off_t))next_symbol("pwritev");
    return is_tracked(fd) ? tracked_pwritev(fd, iov, count, offset) : real(fd, iov, count, offset);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int count, off_t offset) {
    return pwritev(fd, iov, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int count) {
    static ssize_t (*real)(int, const struct iovec *, int);
    if (real == NULL) real = (ssize_t (*)(int, const struct iovec *, int))next_symbol("writev");
    if (!is_tracked(fd)) return real(fd, iov, count);
    off_t offset = lseek(fd, 0, SEEK_CUR);
    ssize_t written = tracked_pwritev(fd, iov, count, offset);
    if (written > 0) lseek(fd, offset + written, SEEK_SET);
    return written;
}

/// A sync of data.mdb: a durability point, after which every write made so far is on the disk.
static int tracked_sync(int fd, int (*real)(int)) {
    if (!is_tracked(fd)) return real(fd);
    pthread_mutex_lock(&power_lock);
    if (power_fails_now()) cut_power(fd, NULL, 0, 0);
    int result = real(fd);
    if (result == 0) forget_unsynced();
    pthread_mutex_unlock(&power_lock);
    return result;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))next_symbol("fdatasync");
    while (flag_set("INCIDENTD_STALL_SYNCS")) usleep(1000);
    return tracked_sync(fd, real);
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = (int (*)(int))next_symbol("fsync");
    while (flag_set("INCIDENTD_STALL_FSYNCS")) usleep(1000);
    return tracked_sync(fd, real);
}

// ---------------------------------------------------------------------------------------------------------------
// A commit that finds the map full. mdb_txn_commit puts each changed named database's root into the main database
// and saves the free list before it writes any page; either may need a new page, and when none is left below the
// map's end it fails with MDB_MAP_FULL, after aborting the transaction (mdb.c, `fail:` in mdb_txn_commit).

typedef struct MDB_txn MDB_txn;
enum { MDB_MAP_FULL = -30792 };

int mdb_txn_commit(MDB_txn *txn) {
    static int (*real)(MDB_txn *);
    static void (*abort_txn)(MDB_txn *);
    if (real == NULL) real = (int (*)(MDB_txn *))next_symbol("mdb_txn_commit");
    if (abort_txn == NULL) abort_txn = (void (*)(MDB_txn *))next_symbol("mdb_txn_abort");
    const char *flag = getenv("INCIDENTD_COMMIT_MAP_FULL");
    if (flag != NULL && abort_txn != NULL && unlink(flag) == 0) {
        abort_txn(txn);
        return MDB_MAP_FULL;
    }
    const char *hold = getenv("INCIDENTD_HOLD_COMMITS");
    if (hold != NULL && access(hold, F_OK) == 0) {
        char held[4096];
        if (snprintf(held, sizeof held, "%s.held", hold) < (int)sizeof held) {
            int fd = open(held, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
            if (fd >= 0) close(fd);
        }
        while (access(hold, F_OK) == 0) usleep(1000);
    }
    return real(txn);
}
