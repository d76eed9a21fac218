#pragma once
#include <stdint.h>
#include <sys/types.h>

/// Layout-compatible with Linux's `struct ucred`, which Swift cannot see without _GNU_SOURCE.
struct incidentd_ucred {
    int32_t pid;
    uint32_t uid;
    uint32_t gid;
};

/// SO_PEERCRED, for `getsockopt` on a Unix-domain socket.
int incidentd_so_peercred(void);

/// SO_PEERGROUPS (Linux 4.13), for `getsockopt` on a Unix-domain socket; -1 where the headers lack it.
int incidentd_so_peergroups(void);

/// Reads the peer's credentials of a connected Unix-domain socket. Returns 0, or -1 with errno set.
int incidentd_peer_credentials(int fd, struct incidentd_ucred *out);

/// Sends `state` (e.g. "READY=1") to $NOTIFY_SOCKET. Returns 1 if sent, 0 if NOTIFY_SOCKET is unset, -1 on error.
int incidentd_sd_notify(const char *state);

/// Gives the C heap's free memory back to the system (`malloc_trim(0)`): glibc otherwise keeps what a burst freed in
/// the middle of its heap for good. Returns 1 if memory was released, 0 if not (or elsewhere than glibc).
int incidentd_trim_heap(void);
