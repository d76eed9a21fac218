#include "CShims.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

_Static_assert(sizeof(struct incidentd_ucred) == sizeof(struct ucred), "ucred layout");

int incidentd_so_peercred(void) { return SO_PEERCRED; }

int incidentd_so_peergroups(void) {
#ifdef SO_PEERGROUPS
    return SO_PEERGROUPS;
#else
    return -1;
#endif
}

int incidentd_peer_credentials(int fd, struct incidentd_ucred *out) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    out->pid = cred.pid;
    out->uid = cred.uid;
    out->gid = cred.gid;
    return 0;
}

int incidentd_sd_notify(const char *state) {
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0') return 0;
    size_t len = strlen(path);
    struct sockaddr_un addr;
    if (len >= sizeof(addr.sun_path)) { errno = ENAMETOOLONG; return -1; }
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, len);
    if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';  /* abstract namespace */
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    socklen_t addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
    ssize_t sent = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&addr, addrlen);
    int saved = errno;
    close(fd);
    errno = saved;
    return sent < 0 ? -1 : 1;
}

int incidentd_trim_heap(void) {
#ifdef __GLIBC__
    return malloc_trim(0);
#else
    return 0;
#endif
}

/* The handlers the Swift runtime installed for the signals it reports crashes on, by signal number. */
static struct sigaction crash_reporters[NSIG];

static void report_then_end(int signum, siginfo_t *info, void *context) {
    const struct sigaction *reporter = &crash_reporters[signum];
    if (reporter->sa_flags & SA_SIGINFO) {
        reporter->sa_sigaction(signum, info, context);
    } else {
        reporter->sa_handler(signum);
    }
    signal(signum, SIG_DFL);
    sigset_t only;
    sigemptyset(&only);
    sigaddset(&only, signum);
    pthread_sigmask(SIG_UNBLOCK, &only, NULL);
    raise(signum);
}

int incidentd_end_after_crash_report(void) {
    static const int reported[] = {SIGQUIT, SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGSEGV, SIGTRAP};
    for (size_t i = 0; i < sizeof(reported) / sizeof(reported[0]); i++) {
        int signum = reported[i];
        struct sigaction current;
        if (sigaction(signum, NULL, &current) != 0) return -1;
        int handled = (current.sa_flags & SA_SIGINFO)
            ? current.sa_sigaction != NULL
            : current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN;
        if (!handled || (current.sa_flags & SA_SIGINFO && current.sa_sigaction == report_then_end)) continue;
        crash_reporters[signum] = current;
        struct sigaction wrapped = current;
        wrapped.sa_flags |= SA_SIGINFO;
        wrapped.sa_sigaction = report_then_end;
        if (sigaction(signum, &wrapped, NULL) != 0) return -1;
    }
    return 0;
}

int incidentd_user_signal_relay(int signum) { return signum == SIGUSR2 ? SIGRTMIN + 2 : SIGRTMIN + 1; }

static void relay_user_signal(int signum) {
    int saved = errno;
    kill(getpid(), incidentd_user_signal_relay(signum));
    errno = saved;
}

int incidentd_relay_user_signals(void) {
    struct sigaction relay;
    memset(&relay, 0, sizeof(relay));
    relay.sa_handler = relay_user_signal;
    sigemptyset(&relay.sa_mask);
    relay.sa_flags = SA_RESTART;
    if (sigaction(SIGUSR1, &relay, NULL) != 0 || sigaction(SIGUSR2, &relay, NULL) != 0) return -1;
    sigset_t user;
    sigemptyset(&user);
    sigaddset(&user, SIGUSR1);
    sigaddset(&user, SIGUSR2);
    return pthread_sigmask(SIG_UNBLOCK, &user, NULL) == 0 ? 0 : -1;
}
