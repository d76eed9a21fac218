#!/usr/bin/env python3
"""Measures what incidentd holds for clients that ask for large answers and never read them.

Starts the given incidentd on a temporary socket and data directory, stores EVENTS events of about 9 KB, then
opens CONNECTIONS connections that each send READS `read`s of the whole log (8 MiB answers) and read nothing.
Prints the daemon's resident memory (VmRSS) as it goes, and `status` from another connection, and whether that
connection is still answered. Stops the daemon at the end.

    tools/unread-answers.py .build/debug/incidentd [--connections 200] [--seconds 20] [-- incidentd flags...]
"""

import argparse
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def rss(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def call(path, request, timeout=30):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall((json.dumps(request) + "\n").encode())
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    s.close()
    return json.loads(data)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("incidentd")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--reads", type=int, default=4)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("flags", nargs="*")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="unread-answers-")
    sock = root + "/s"
    log = open(root + "/log", "w")
    daemon = subprocess.Popen(
        [args.incidentd, "--data-dir", root + "/data", "--socket", sock] + args.flags, stdout=log, stderr=log)
    try:
        deadline = time.time() + 30
        while not os.path.exists(sock):
            if time.time() > deadline or daemon.poll() is not None:
                sys.exit("incidentd did not start: " + open(root + "/log").read())
            time.sleep(0.05)
        description = "d" * 9000
        for part in range(args.events // 50):
            events = [{"type": "incident-reported", "incident": f"big-{part}-{i}", "occurredAt": "2022-03-01",
                       "precision": "day", "sources": [{"name": "test", "verification": "unverified"}],
                       "data": {"city": "Kupiansk", "kind": "demonstration", "description": description}}
                      for i in range(50)]
            answer = call(sock, {"id": 1, "op": "append", "events": events})
            assert answer["ok"], answer
        print(f"stored {args.events} events; daemon RSS {rss(daemon.pid) >> 20} MiB", flush=True)

        hogs = []
        for n in range(args.connections):
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            lines = "".join(json.dumps({"id": i, "op": "read", "limit": 10000}) + "\n" for i in range(args.reads))
            s.sendall(lines.encode())
            hogs.append(s)
        started = time.time()
        peak = 0
        while time.time() - started < args.seconds:
            now = rss(daemon.pid)
            peak = max(peak, now)
            try:
                t = time.time()
                status = call(sock, {"id": 2, "op": "status"}, timeout=5)
                extra = {k: v for k, v in status.items() if k in ("connections", "unwrittenAnswerBytes")}
                answered = f"status in {1000 * (time.time() - t):.0f} ms {extra}"
            except Exception as error:
                answered = f"status failed: {error}"
            print(f"{time.time() - started:5.1f} s: RSS {now >> 20} MiB (peak {peak >> 20} MiB); {answered}",
                  flush=True)
            time.sleep(1)
        # POLLRDHUP: the daemon closed its side, whatever is still unread here.
        poller = select.poll()
        for s in hogs:
            poller.register(s, 0x2000)
        closed = {fd for fd, _ in poller.poll(0)}
        open_hogs = sum(1 for s in hogs if s.fileno() not in closed)
        print(f"peak RSS {peak >> 20} MiB; {open_hogs} of {len(hogs)} non-reading connections still open")
        for s in hogs:
            s.close()
    finally:
        daemon.terminate()
        daemon.wait()
        log.close()
        lines = open(root + "/log").read().splitlines()
        print("daemon log (last lines):\n  " + "\n  ".join(lines[-6:]))
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
