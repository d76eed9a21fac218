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

/// Makes a crash report by the Swift runtime end the process. The runtime's crash handler (for SIGQUIT, SIGABRT,
/// SIGBUS, SIGFPE, SIGILL, SIGSEGV and SIGTRAP) writes its report and returns, expecting the faulting instruction
/// to fault again; a signal sent by another process (`kill -ABRT`, as systemd's watchdog sends) does not recur, and
/// the process went on running. Each handler found installed is wrapped so that, once it returns, the signal is
/// raised again with its default action (a core dump, or the end). Signals with no handler are left alone
/// (`SWIFT_BACKTRACE=enable=no`). Call once, early in `main`. Returns 0, or -1 with errno set.
int incidentd_end_after_crash_report(void);

/// Relays SIGUSR1 and SIGUSR2 to the process as the real-time signals ``incidentd_user_signal_relay`` names, which
/// the daemon blocks and takes with `sigwait`, so that it can log them. The two themselves stay unblocked and
/// handled in every thread: the Swift runtime suspends threads with SIGUSR1 (SIGUSR2 where it is blocked) while it
/// writes a crash report, and a thread that blocked both, or a `sigwait` that took them, kept it waiting 30 s and
/// left those threads out of the report. Returns 0, or -1 with errno set.
int incidentd_relay_user_signals(void);

/// The real-time signal SIGUSR1 (or SIGUSR2) is relayed as by ``incidentd_relay_user_signals``.
int incidentd_user_signal_relay(int signum);
