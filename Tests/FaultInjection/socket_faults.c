// Preloaded into incidentd by the integration tests (LD_PRELOAD) to act, on cue, where another thread or another
// user could act while the daemon makes its socket.
//
// - With INCIDENTD_CREATE_DURING_BIND set (a path), every bind of a Unix socket first creates that file with mode
//   0666, as another thread of the daemon could at that moment: its mode shows the umask the process had then.
// - With INCIDENTD_SWAP_PATH and INCIDENTD_SWAP_TARGET set, a bind of a Unix socket at INCIDENTD_SWAP_PATH, or a
//   mkdir of that path, is followed at once by putting a symbolic link to INCIDENTD_SWAP_TARGET in its place, as a
//   user who may write the directory could.
// - With INCIDENTD_FAIL_PEERCRED set (to anything), every getsockopt of SO_PEERCRED fails with EINVAL, as one on a
//   socket that has no peer would.
//
// Built by the tests with the toolchain's clang: clang -shared -fPIC -o libsocket_faults.so socket_faults.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int is_swap_path(const char *path) {
    const char *swap = getenv("INCIDENTD_SWAP_PATH");
    return swap != NULL && getenv("INCIDENTD_SWAP_TARGET") != NULL && strcmp(swap, path) == 0;
}

int bind(int fd, const struct sockaddr *address, socklen_t length) {
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (real == NULL) real = (int (*)(int, const struct sockaddr *, socklen_t))dlsym(RTLD_NEXT, "bind");
    if (address == NULL || address->sa_family != AF_UNIX) return real(fd, address, length);
    const char *witness = getenv("INCIDENTD_CREATE_DURING_BIND");
    if (witness != NULL) {
        int made = open(witness, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (made >= 0) close(made);
    }
    int result = real(fd, address, length);
    const struct sockaddr_un *unix_address = (const struct sockaddr_un *)address;
    if (result == 0 && is_swap_path(unix_address->sun_path)) {
        unlink(unix_address->sun_path);
        symlink(getenv("INCIDENTD_SWAP_TARGET"), unix_address->sun_path);
    }
    return result;
}

int mkdir(const char *path, mode_t mode) {
    static int (*real)(const char *, mode_t);
    if (real == NULL) real = (int (*)(const char *, mode_t))dlsym(RTLD_NEXT, "mkdir");
    int result = real(path, mode);
    if (result == 0 && is_swap_path(path)) {
        rmdir(path);
        symlink(getenv("INCIDENTD_SWAP_TARGET"), path);
    }
    return result;
}

int getsockopt(int fd, int level, int name, void *value, socklen_t *length) {
    static int (*real)(int, int, int, void *, socklen_t *);
    if (real == NULL) real = (int (*)(int, int, int, void *, socklen_t *))dlsym(RTLD_NEXT, "getsockopt");
    if (level == SOL_SOCKET && name == SO_PEERCRED && getenv("INCIDENTD_FAIL_PEERCRED") != NULL) {
        errno = EINVAL;
        return -1;
    }
    return real(fd, level, name, value, length);
}
