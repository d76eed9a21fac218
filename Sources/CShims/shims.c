#include "CShims.h"
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#ifdef __linux__
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/stat.h>
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

int incidentd_listen_backlog(int fd) {
#ifdef __linux__
    struct stat info;
    if (fstat(fd, &info) != 0) return -1;
    int diag = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (diag < 0) return -1;
    // One socket, by its inode (what fstat says of a socket descriptor), with its queue lengths: for a listening
    // socket, those waiting to be accepted and the most that may (sk_max_ack_backlog).
    struct {
        struct nlmsghdr header;
        struct unix_diag_req request;
    } message = {
        .header = {.nlmsg_len = sizeof message, .nlmsg_type = SOCK_DIAG_BY_FAMILY, .nlmsg_flags = NLM_F_REQUEST},
        .request = {
            .sdiag_family = AF_UNIX,
            .udiag_states = ~0U,
            .udiag_ino = (__u32)info.st_ino,
            .udiag_show = UDIAG_SHOW_RQLEN,
            .udiag_cookie = {INET_DIAG_NOCOOKIE, INET_DIAG_NOCOOKIE},
        },
    };
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    long answer[1024];
    ssize_t length = -1;
    if (sendto(diag, &message, sizeof message, 0, (struct sockaddr *)&kernel, sizeof kernel) == (ssize_t)sizeof message) {
        length = recv(diag, answer, sizeof answer, 0);
    }
    int code = errno;
    close(diag);
    if (length < 0) {
        errno = code;
        return -1;
    }
    size_t left = (size_t)length;
    for (struct nlmsghdr *header = (struct nlmsghdr *)answer; NLMSG_OK(header, left); header = NLMSG_NEXT(header, left)) {
        if (header->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *error = NLMSG_DATA(header);
            errno = error->error < 0 ? -error->error : EPROTO;
            return -1;
        }
        if (header->nlmsg_type != SOCK_DIAG_BY_FAMILY || header->nlmsg_len < NLMSG_LENGTH(sizeof(struct unix_diag_msg))) continue;
        const struct unix_diag_msg *socket_info = NLMSG_DATA(header);
        // 10 is TCP_LISTEN, the state of a listening Unix stream socket.
        if (socket_info->udiag_ino != (__u32)info.st_ino || socket_info->udiag_state != 10) break;
        int rest = (int)(header->nlmsg_len - NLMSG_LENGTH(sizeof *socket_info));
        for (struct rtattr *attribute = (struct rtattr *)(socket_info + 1); RTA_OK(attribute, rest);
             attribute = RTA_NEXT(attribute, rest)) {
            if (attribute->rta_type == UNIX_DIAG_RQLEN && RTA_PAYLOAD(attribute) >= sizeof(struct unix_diag_rqlen)) {
                const struct unix_diag_rqlen *queues = RTA_DATA(attribute);
                return queues->udiag_wqueue > 0x7fffffff ? 0x7fffffff : (int)queues->udiag_wqueue;
            }
        }
    }
    errno = EINVAL;
    return -1;
#else
    (void)fd;
    errno = ENOSYS;
    return -1;
#endif
}
