#!/usr/bin/env bash
# Runs incidentd under a real systemd, with the shipped units, sysusers.d, tmpfiles.d and hardening, and uses it as
# its users would. Run by `make systemd-check` (which builds the binaries with --static-swift-stdlib first); by hand:
#
#   Tests/Systemd/boot-check.sh BIN_DIR      # BIN_DIR holds incidentd and incidentctl
#
# As root, on a Debian host with debootstrap, systemd-nspawn (systemd-container) and nsenter. It boots a Debian
# bookworm container (debootstrap --variant=minbase, cached in .build/systemd-check/rootfs; the first run needs the
# network), stages what `make install` installs (DESTDIR, INSTALL_FROM=BIN_DIR) and copies it into the container's
# root, runs the checks below inside it, and powers it off. Each check prints
# PASS or FAIL; the exit status is 1 if any failed. The container's journal is left in
# .build/systemd-check/journal.txt, and after a failure its root in .build/systemd-check/machine.
#
# Inside the container the same file runs with --inside: it installs, then checks socket activation, READY and the
# status text, the roles of the README's operations section (readers, reporters, admins, a user outside the socket's
# group), verify and backup, the journal's form, that no system call of the daemon's is filtered (nice values),
# a clean stop and a restart that keeps every event, the watchdog while idle and while appending, SIGKILL while
# appending and a restart that holds every acknowledged append, `systemd-analyze security`, and a log made again from
# its events (`incidentd --recover-from`) and put in place as README.md says.
#
# IDLE_SECONDS and LOAD_SECONDS (65 each: longer than WatchdogSec=30s twice over) shorten the watchdog checks.
set -uo pipefail

STAGE_IN=/mnt/incidentd-check   # where the staged files appear inside the container
SUITE=bookworm
PACKAGES=systemd,systemd-sysv,dbus,liblmdb0,libstdc++6   # what the binaries need besides libc: see `ldd`

# --- inside the container --------------------------------------------------------------------------------------------

inside() {
    export SYSTEMD_PAGER=cat SYSTEMD_COLORS=0 LC_ALL=C.UTF-8
    local failures=0 passes=0
    pass() { passes=$((passes + 1)); echo "PASS: $*"; }
    fail() { failures=$((failures + 1)); echo "FAIL: $*"; }
    check() {  # check "what" command...: passes when the command succeeds
        local what=$1; shift
        if "$@"; then pass "$what"; else fail "$what"; fi
    }
    field() { grep -o "\"$1\":[^,}]*" | head -1 | cut -d: -f2- | tr -d '"'; }
    show() { systemctl show incidentd.service -p "$1" --value; }
    as() { local user=$1; shift; runuser -u "$user" -- "$@"; }
    # N events with eventIds made from their numbers, so that a range can be sent again and recognised.
    events() {
        local i
        for ((i = $1; i <= $2; i++)); do
            printf '{"eventId":"00000000-0000-4000-8000-%012d","type":"incident-reported","incident":"systemd-check-%d","occurredAt":"2022-03-05","precision":"day","sources":[{"name":"boot-check","verification":"unverified"}],"data":{"city":"Berdyansk","kind":"demonstration","participants":{"low":%d,"high":%d}}}\n' "$i" "$i" "$i" "$i"
        done
    }
    position() { incidentctl status | field position; }
    journal_since() { journalctl -u incidentd.service --no-pager -o cat --since "@$1" "${@:2}"; }

    echo "== install: the tree make install staged on the host, then the next steps it prints"
    cp -a "$STAGE_IN/root/." /
    systemd-sysusers /usr/local/lib/sysusers.d/incidentd.conf
    systemd-tmpfiles --create /usr/local/lib/tmpfiles.d/incidentd.conf
    systemctl daemon-reload
    systemctl enable --now incidentd.socket
    [ "$(show FragmentPath)" = /usr/local/lib/systemd/system/incidentd.service ] \
        && pass "systemd loads incidentd.service from where make install put it (/usr/local/lib/systemd/system)" \
        || fail "systemd loads incidentd.service from /usr/local/lib/systemd/system (FragmentPath=$(show FragmentPath))"
    check "the binaries find every library they need (ldd)" \
        bash -c '! ldd /usr/local/bin/incidentd /usr/local/bin/incidentctl | grep -q "not found"'
    check "systemd-sysusers made the user incidentd and the groups incidentd-clients, -readers, -reporters" \
        bash -c 'getent passwd incidentd >/dev/null && getent group incidentd-clients incidentd-readers incidentd-reporters >/dev/null' 
    check "incidentd.socket is listening" systemctl is-active --quiet incidentd.socket
    local socket_mode
    socket_mode=$(stat -c '%a %U %G' /run/incidentd/incidentd.sock 2>&1)
    [ "$socket_mode" = "660 incidentd incidentd-clients" ] && pass "the socket is 0660 incidentd:incidentd-clients" \
        || fail "the socket is 0660 incidentd:incidentd-clients (it is: $socket_mode)"
    check "incidentd.service is not running before the first connection" \
        bash -c '! systemctl is-active --quiet incidentd.service'

    # The users of README's operations section.
    useradd -m -G incidentd-clients,incidentd-readers alice        # a reader
    useradd -m -G incidentd-clients,incidentd-reporters rob        # a reporter
    useradd -m -G incidentd-readers eve                            # a role, but not the socket's group
    useradd -m -G incidentd-clients nora                           # the socket's group, but no role
    cd /tmp || exit 1

    echo "== socket activation and readiness"
    local start out rc
    start=$(date +%s)
    out=$(as alice incidentctl status 2>&1); rc=$?
    [ $rc -eq 0 ] && [ "$(echo "$out" | field position)" = 0 ] && pass "a reader's first connection is answered: incidentctl status" \
        || fail "a reader's first connection is answered: incidentctl status (exit $rc: $out)"
    [ "$(show ActiveState)/$(show SubState)" = active/running ] && pass "the first connection started incidentd.service: active (running)" \
        || fail "the first connection started incidentd.service (it is $(show ActiveState)/$(show SubState))"
    # Type=notify: active only after READY=1, and the status text is the daemon's.
    case "$(show StatusText)" in
    "serving at position 0") pass "READY=1 and STATUS= reached systemd: status text \"serving at position 0\"" ;;
    *) fail "READY=1 and STATUS= reached systemd (status text: \"$(show StatusText)\")" ;;
    esac
    systemctl status incidentd.service --no-pager --lines=0 | sed 's/^/    /'
    local pid
    pid=$(show MainPID)
    [ "$(show User)" = incidentd ] && [ "$(stat -c %U "/proc/$pid")" = incidentd ] \
        && pass "the daemon runs as the sysusers user incidentd" || fail "the daemon runs as incidentd"

    echo "== the threads' scheduling: nothing the daemon asks of the kernel is filtered out"
    # The writer and the intake ask for nice 5 (setpriority); SystemCallFilter= once turned that into EPERM.
    local threads
    threads=$(for t in /proc/"$pid"/task/*; do echo "$(cat "$t/comm") $(awk '{print $19}' "$t/stat")"; done)
    echo "$threads" | grep -qx 'incidentd-write 5' && pass "the writer thread runs at nice 5 (setpriority allowed)" \
        || fail "the writer thread runs at nice 5: $(echo "$threads" | grep write)"
    echo "$threads" | grep -qx 'incidentd-intak 5' && pass "the intake thread runs at nice 5" \
        || fail "the intake thread runs at nice 5: $(echo "$threads" | grep intak)"

    echo "== roles"
    out=$(as alice incidentctl cities 2>&1); rc=$?
    [ $rc -eq 0 ] && [ "$out" = "[]" ] && pass "a reader runs incidentctl cities on the empty log" || fail "reader: cities (exit $rc: $out)"
    cp /usr/local/share/doc/incidentd/examples/article.jsonl /home/rob/ && chown rob: /home/rob/article.jsonl
    out=$(as rob incidentctl append /home/rob/article.jsonl 2>&1); rc=$?
    [ $rc -eq 0 ] && [ "$(echo "$out" | field new)" = 8 ] && pass "a reporter appends examples/article.jsonl: 8 new events" \
        || fail "reporter: append article.jsonl (exit $rc: $out)"
    out=$(as alice incidentctl cities --format table 2>&1); rc=$?
    [ $rc -eq 0 ] && echo "$out" | grep -q '^kupiansk' && echo "$out" | grep -q '^melitopol' \
        && pass "the reader sees the article's cities" || fail "reader: cities after the append (exit $rc: $out)"
    echo "$out" | sed 's/^/    /'
    out=$(as alice incidentctl append /home/rob/article.jsonl 2>&1); rc=$?
    [ $rc -eq 1 ] && echo "$out" | grep -q permission_denied && pass "a reader may not append: exit 1, permission_denied" \
        || fail "a reader may not append (exit $rc: $out)"
    out=$(as eve incidentctl status 2>&1); rc=$?
    [ $rc -eq 3 ] && echo "$out" | grep -q 'Permission denied' && echo "$out" | grep -q incidentd-clients \
        && pass "a user outside incidentd-clients is refused by the socket: exit 3, naming the group" \
        || fail "a user outside incidentd-clients is refused (exit $rc: $out)"
    out=$(as nora incidentctl status 2>&1); rc=$?
    [ $rc -eq 1 ] && echo "$out" | grep -q permission_denied && pass "a member of incidentd-clients without a role gets permission_denied" \
        || fail "a member of incidentd-clients without a role (exit $rc: $out)"

    echo "== admin: verify and backup"
    out=$(incidentctl verify 2>&1); rc=$?
    [ $rc -eq 0 ] && [ "$(echo "$out" | field intact)" = true ] && [ "$(echo "$out" | field checked)" = 8 ] \
        && pass "an admin (root) verifies the chain: 8 events, intact" || fail "verify (exit $rc: $out)"
    systemctl enable --now incidentd-verify.timer
    check "incidentd-verify.timer is waiting for its day" systemctl is-active --quiet incidentd-verify.timer
    systemctl start incidentd-verify.service
    journalctl --sync 2>/dev/null
    [ "$(systemctl show incidentd-verify.service -p Result --value)" = success ] \
        && journalctl -u incidentd-verify.service --no-pager -o cat | grep -q "intact: 8 events" \
        && pass "incidentd-verify.service, as user incidentd, verifies the log and says so in its journal" \
        || fail "incidentd-verify.service: Result=$(systemctl show incidentd-verify.service -p Result --value) $(journalctl -u incidentd-verify.service --no-pager -o cat | tail -3)"
    out=$(incidentctl backup /var/lib/incidentd/backups/boot-check 2>&1); rc=$?
    [ $rc -eq 0 ] && [ "$(echo "$out" | field intact)" = true ] && pass "an admin backs up into /var/lib/incidentd/backups/boot-check" \
        || fail "backup into the state directory's backups folder (exit $rc: $out)"
    local mode
    mode=$(stat -c '%a %U' /var/lib/incidentd/backups/boot-check/data.mdb 2>&1)
    [ "$mode" = "600 incidentd" ] && pass "the backup's data.mdb is 0600, owned by incidentd" || fail "the backup's data.mdb is 0600 incidentd ($mode)"
    out=$(incidentctl replay --data-dir /var/lib/incidentd/backups/boot-check 2>&1); rc=$?
    [ $rc -eq 0 ] && echo "$out" | grep -q kupiansk && pass "the backup is a data directory: incidentctl replay reads it" \
        || fail "replay of the backup (exit $rc: $out)"
    # Elsewhere the daemon may not write (ProtectSystem=strict), nor in its private /tmp and /var/tmp, where a backup
    # would be seen by no one and go when the daemon stops.
    local dest
    for dest in /srv/boot-check /tmp/boot-check /var/tmp/boot-check; do
        out=$(incidentctl backup $dest 2>&1); rc=$?
        [ $rc -eq 1 ] && echo "$out" | grep -q read-only && pass "a backup into $dest is refused as read-only" \
            || fail "a backup into $dest is refused as read-only (exit $rc: $out)"
    done
    echo "    $out"

    echo "== the journal"
    local journal
    journal=$(journal_since "$start")
    echo "$journal" | sed 's/^/    /'
    echo "$journal" | grep -q '^serving ' && pass "journalctl -u incidentd shows the daemon's log lines" || fail "the journal holds 'serving'"
    ! echo "$journal" | grep -qE '^<[0-7]>' && pass "no raw <N> priority prefixes reach the messages" || fail "raw <N> prefixes in the journal"
    journalctl -u incidentd.service --since "@$start" -p notice..notice -o cat --no-pager | grep -q '^serving ' \
        && pass "'serving' is logged at priority notice" || fail "'serving' is logged at priority notice"
    echo "$journal" | grep -q '^backup written by=root' && pass "the backup is in the journal, with who asked for it" \
        || fail "the backup is in the journal"
    ! echo "$journal" | grep -q 'errno=1$' && pass "no 'errno=1' (EPERM) from libdispatch: its setpriority is not filtered" \
        || fail "libdispatch was refused setpriority (errno=1: SystemCallFilter)"
    ! journalctl --no-pager -o cat --since "@$start" | grep -qE 'SIGSYS|status=31/SYS' \
        && pass "no process was killed by SIGSYS" || fail "a process was killed by SIGSYS"

    echo "== systemctl stop, and a restart that keeps every event"
    local before head_before after head_after
    before=$(incidentctl status); head_before=$(echo "$before" | field headHash); before=$(echo "$before" | field position)
    systemctl stop incidentd.service 2>/dev/null
    [ "$(show Result)" = success ] && [ "$(show ExecMainCode)" = 1 ] && [ "$(show ExecMainStatus)" = 0 ] \
        && pass "systemctl stop: the daemon exited with status 0 (Result=success)" \
        || fail "systemctl stop: Result=$(show Result) ExecMainCode=$(show ExecMainCode) ExecMainStatus=$(show ExecMainStatus)"
    journal_since "$start" | grep -q "^stopped position=$before" && pass "it logged 'stopped position=$before'" \
        || fail "it logged 'stopped position=$before'"
    after=$(as alice incidentctl status); head_after=$(echo "$after" | field headHash); after=$(echo "$after" | field position)
    [ "$after" = "$before" ] && [ "$head_after" = "$head_before" ] && pass "the next connection starts it again on the same log: position $after" \
        || fail "restart kept the log (position $before -> $after, head $head_before -> $head_after)"

    echo "== the watchdog"
    local watchdog restarts
    watchdog=$(show WatchdogUSec)
    pid=$(show MainPID); restarts=$(show NRestarts)
    echo "    WatchdogUSec=$watchdog; idle for ${IDLE_SECONDS}s"
    sleep "$IDLE_SECONDS"
    [ "$(show MainPID)" = "$pid" ] && [ "$(show NRestarts)" = "$restarts" ] \
        && pass "idle for ${IDLE_SECONDS}s under WatchdogSec=$watchdog: same process, no restart" \
        || fail "idle: MainPID $pid -> $(show MainPID), NRestarts $restarts -> $(show NRestarts)"
    echo "    appending for ${LOAD_SECONDS}s"
    local next=1 acked=0 batch=1000 end=$((SECONDS + LOAD_SECONDS)) refused=0 map_before map_after
    before=$(position); map_before=$(incidentctl status | field mapSize)
    while [ $SECONDS -lt $end ]; do
        if events $next $((next + batch - 1)) | as rob incidentctl append - >/dev/null 2>&1; then
            acked=$((acked + batch))
        else
            refused=$((refused + 1))
        fi
        next=$((next + batch))
        sleep 0.2
    done
    after=$(position); map_after=$(incidentctl status | field mapSize)
    echo "    the map: $map_before bytes before, $map_after after"
    [ "$(show MainPID)" = "$pid" ] && [ "$(show NRestarts)" = "$restarts" ] && [ $refused -eq 0 ] \
        && pass "appending for ${LOAD_SECONDS}s ($acked events): same process, no restart, nothing refused" \
        || fail "appending: MainPID $pid -> $(show MainPID), NRestarts $restarts -> $(show NRestarts), $refused batches refused"
    [ $((after - before)) -eq $acked ] && pass "every acknowledged event is in the log (position $before -> $after)" \
        || fail "position $before -> $after for $acked acknowledged events"
    ! journal_since "$start" | grep -qi watchdog && ! journalctl --no-pager -o cat --since "@$start" | grep -qi 'watchdog timeout' \
        && pass "nothing about the watchdog in the journal" || fail "the journal mentions the watchdog: $(journalctl --no-pager -o cat --since "@$start" | grep -i watchdog | head -3)"

    echo "== SIGKILL while appending"
    local killed_at acked_ranges=() from
    pid=$(show MainPID); restarts=$(show NRestarts)
    end=$((SECONDS + 8)); killed_at=$((SECONDS + 3)); local killed=no
    while [ $SECONDS -lt $end ]; do
        from=$next
        if events $from $((from + 49)) | as rob incidentctl append - >/dev/null 2>&1; then acked_ranges+=("$from"); fi
        next=$((next + 50))
        if [ $killed = no ] && [ $SECONDS -ge $killed_at ]; then
            systemctl kill -s KILL incidentd.service; killed=yes
        fi
    done
    # Restart=on-failure: a new process, within a deadline (the socket holds connections meanwhile).
    for ((i = 0; i < 100; i++)); do
        [ "$(show MainPID)" != "$pid" ] && [ "$(show MainPID)" != 0 ] && [ "$(show ActiveState)" = active ] && break
        sleep 0.1
    done
    out=$(as alice incidentctl status 2>&1); rc=$?
    [ $rc -eq 0 ] && pass "after systemctl kill -s KILL a new connection is answered" || fail "after SIGKILL: status (exit $rc: $out)"
    [ "$(show MainPID)" != "$pid" ] && [ "$(show ActiveState)" = active ] \
        && pass "a new process serves (NRestarts $restarts -> $(show NRestarts), Restart=on-failure)" \
        || fail "after SIGKILL: MainPID $pid -> $(show MainPID), $(show ActiveState)"
    journalctl -u incidentd.service --no-pager -o cat --since "@$start" | grep -q 'status=9/KILL' \
        && pass "the journal says it was killed (status=9/KILL)" || fail "the journal says status=9/KILL"
    local stored=0 new=0 total=0
    for from in "${acked_ranges[@]}"; do
        out=$(events "$from" $((from + 49)) | as rob incidentctl append - 2>&1)
        stored=$((stored + $(echo "$out" | field alreadyStored))); new=$((new + $(echo "$out" | field new))); total=$((total + 50))
    done
    [ $total -gt 0 ] && [ $stored -eq $total ] && [ $new -eq 0 ] \
        && pass "all $total events acknowledged around the kill were stored: sent again, all are already stored" \
        || fail "acknowledged events lost: of $total sent again, $stored already stored, $new new"
    out=$(incidentctl verify 2>&1)
    [ "$(echo "$out" | field intact)" = true ] && pass "the chain is intact after the kill: $(echo "$out" | field checked) events" \
        || fail "verify after the kill: $out"

    echo "== systemd-analyze security"
    # The figures of the shipped hardening (SystemdTests.units holds the offline ones to the same).
    local unit most exposure
    for unit in incidentd.service:0.5 incidentd-verify.service:0.4; do
        most=${unit#*:}; unit=${unit%:*}
        out=$(systemd-analyze security "$unit" --no-pager 2>&1)
        echo "$out" | grep -E '✗|Overall' | sed 's/^/    /'
        exposure=$(echo "$out" | sed -n "s/.*Overall exposure level for $unit: \([0-9.]*\).*/\1/p")
        awk -v e="$exposure" -v m="$most" 'BEGIN { exit !(e != "" && e <= m) }' && pass "$unit: exposure $exposure (at most $most)" \
            || fail "$unit: exposure '$exposure' (at most $most)"
    done

    echo "== a log made again from its events (incidentd --recover-from), as README.md says"
    before=$(incidentctl status); head_before=$(echo "$before" | field headHash); before=$(echo "$before" | field position)
    systemctl stop incidentd.socket incidentd.service
    out=$(runuser -u incidentd -- incidentd --config /etc/incidentd/incidentd.toml \
        --recover-from /var/lib/incidentd --data-dir /var/lib/incidentd/recovered 2>&1); rc=$?
    [ $rc -eq 0 ] && echo "$out" | grep -q "^recovered $before events" \
        && pass "incidentd --recover-from, as user incidentd, made a log of all $before events" \
        || fail "incidentd --recover-from (exit $rc: $out)"
    mv /var/lib/incidentd/data.mdb /var/lib/incidentd/data.mdb.damaged
    mv /var/lib/incidentd/recovered/data.mdb /var/lib/incidentd/data.mdb
    systemctl start incidentd.socket
    out=$(incidentctl verify 2>&1)
    [ "$(echo "$out" | field intact)" = true ] && [ "$(echo "$out" | field headHash)" = "$head_before" ] \
        && [ "$(echo "$out" | field checked)" = "$before" ] \
        && pass "the daemon, started by the socket, serves the recovered log: the same $before events and head hash, intact" \
        || fail "verify of the recovered log (head before $head_before at $before): $out"

    echo "== final stop"
    systemctl stop incidentd.service 2>/dev/null
    [ "$(show Result)" = success ] && [ "$(show ExecMainStatus)" = 0 ] && pass "it stops with status 0" \
        || fail "final stop: Result=$(show Result) ExecMainStatus=$(show ExecMainStatus)"

    echo "systemd-check: $passes passed, $failures failed"
    [ $failures -eq 0 ]
}

if [ "${1:-}" = --inside ]; then
    IDLE_SECONDS=${IDLE_SECONDS:-65} LOAD_SECONDS=${LOAD_SECONDS:-65} inside
    exit
fi

# --- on the host -----------------------------------------------------------------------------------------------------

REPO=$(cd "$(dirname "$0")/../.." && pwd)
BIN_DIR=${1:?usage: $0 BIN_DIR (holding incidentd and incidentctl built with --static-swift-stdlib)}
WORK=${SYSTEMD_CHECK_DIR:-$REPO/.build/systemd-check}
ROOTFS=$WORK/rootfs
MACHINE=$WORK/machine
STAGE=$WORK/stage

say() { echo "systemd-check: $*"; }
die() { say "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (debootstrap, systemd-nspawn)"
for tool in debootstrap systemd-nspawn nsenter make; do command -v $tool >/dev/null || die "$tool is missing"; done
for bin in incidentd incidentctl; do [ -x "$BIN_DIR/$bin" ] || die "no $BIN_DIR/$bin"; done
mkdir -p "$WORK"
exec 9>"$WORK/.lock"
flock -n 9 || die "another run holds $WORK/.lock"

# The debootstrap'd root, made once per package list and kept; each run boots a copy of it.
if [ "$(cat "$ROOTFS/.boot-check-packages" 2>/dev/null)" != "$SUITE $PACKAGES" ]; then
    say "debootstrap $SUITE ($PACKAGES) into $ROOTFS"
    rm -rf "$ROOTFS" "$ROOTFS.tmp"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOTFS.tmp" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -5 "$WORK/debootstrap.log"; die "debootstrap failed (log in $WORK/debootstrap.log)"; }
    echo "$SUITE $PACKAGES" >"$ROOTFS.tmp/.boot-check-packages"
    mv "$ROOTFS.tmp" "$ROOTFS"
fi
rm -rf "$MACHINE" "$STAGE"
cp -a "$ROOTFS" "$MACHINE"
mkdir -p "$STAGE/root"
make -C "$REPO" --no-print-directory install DESTDIR="$STAGE/root" INSTALL_FROM="$BIN_DIR" || die "make install into $STAGE/root failed"
cp "$REPO/Tests/Systemd/boot-check.sh" "$STAGE/"

say "booting $SUITE with systemd (systemd-nspawn)"
systemd-nspawn -D "$MACHINE" --boot --console=passive --register=no --keep-unit --private-network \
    --machine=incidentd-check --bind-ro="$STAGE:$STAGE_IN" >"$WORK/nspawn.log" 2>&1 &
NSPAWN=$!
CONTAINER=""
in_container() { nsenter -t "$CONTAINER" -a env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
power_off() {
    if [ -n "$CONTAINER" ] && kill -0 "$NSPAWN" 2>/dev/null; then
        in_container journalctl --no-pager -o short-precise >"$WORK/journal.txt" 2>&1
        # SIGRTMIN+4 asks systemd to power off when systemctl cannot (a container still booting).
        in_container systemctl poweroff 2>/dev/null || kill -s SIGRTMIN+4 "$CONTAINER"
    fi
    local i
    for ((i = 0; i < 60; i++)); do kill -0 "$NSPAWN" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$NSPAWN" 2>/dev/null; then
        say "the container did not power off in 30 s; killing systemd-nspawn ($NSPAWN)"
        kill "$NSPAWN"; sleep 2; kill -9 "$NSPAWN" 2>/dev/null
    fi
    wait "$NSPAWN" 2>/dev/null
    say "container powered off"
}
trap power_off EXIT
trap 'exit 130' INT TERM

for ((i = 0; i < 100; i++)); do
    CONTAINER=$(pgrep -P "$NSPAWN" -x systemd | head -1)
    [ -n "$CONTAINER" ] && break
    kill -0 "$NSPAWN" 2>/dev/null || { cat "$WORK/nspawn.log"; die "systemd-nspawn exited"; }
    sleep 0.2
done
[ -n "$CONTAINER" ] || die "no systemd in the container after 20 s (log in $WORK/nspawn.log)"
for ((i = 0; i < 100; i++)); do in_container test -S /run/systemd/private && break; sleep 0.2; done
state=$(in_container timeout 60 systemctl is-system-running --wait 2>&1)
[ "$state" = running ] || { in_container systemctl --failed --no-pager; die "the container's systemd is '$state'"; }
say "container booted (systemd pid $CONTAINER on the host): $state"

in_container env IDLE_SECONDS="${IDLE_SECONDS:-65}" LOAD_SECONDS="${LOAD_SECONDS:-65}" \
    bash "$STAGE_IN/boot-check.sh" --inside
status=$?
power_off
trap - EXIT
if [ $status -eq 0 ]; then
    rm -rf "$MACHINE" "$STAGE"
else
    say "FAILED; the container's root is kept in $MACHINE, its journal in $WORK/journal.txt"
fi
exit $status
