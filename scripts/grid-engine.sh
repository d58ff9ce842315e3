#!/usr/bin/env bash
# grid-engine.sh: a real single-host Son of Grid Engine (Debian 12 packages) for gridpipe.
# Durations measured on the project's machine kind (2 cores; more when the host is busy):
#
#   bash scripts/grid-engine.sh setup   install (apt), configure and start qmaster + execd.
#                                       Idempotent: a re-run only fixes what differs.
#                                       ~12 s from scratch (incl. ~20 MB download), ~1.5 s when
#                                       all is already there, ~4 s when only the daemons are down.
#   bash scripts/grid-engine.sh start   start qmaster then execd if they are not running and wait
#                                       until q_1day@HOST and q_gpu@HOST are usable (~3 s; no-op if up).
#   bash scripts/grid-engine.sh stop    qconf -ke HOST, then qconf -km, waiting on the pids
#                                       (~9-13 s: qmaster's shutdown is slow; no-op if stopped).
#   bash scripts/grid-engine.sh status  which daemons run, then `qstat -f`;
#                                       exit 0 only when both queues are usable.
#   bash scripts/grid-engine.sh smoke   4 `qsub -sync y` jobs: q_1day (-l io_big=TRUE) and
#                                       q_gpu (-l gpu=1), each as sgeuser and as root (~5 s; each
#                                       bounded by `timeout` SMOKE_TIMEOUT s, default 60).
#
# Must run as root on Debian 12 (works without systemd as PID 1). What it sets up:
#   - packages gridengine-master, gridengine-exec, gridengine-client (debconf-preseeded, cell
#     "default", this host as master); SGE_ROOT=/var/lib/gridengine, SGE_CELL=default;
#   - host_aliases "HOST localhost": the host name resolves to 127.0.0.1, whose reverse name is
#     localhost, which commlib would otherwise reject;
#   - user sgeuser (uid >= 1000) to run jobs as a normal user; root may submit too (min_uid/min_gid 0);
#   - fast scheduling (schedule_interval 0:0:1, flush_submit_sec 1, flush_finish_sec 1) and
#     accounting flushed every second (qacct sees a job about 1 s after it ends);
#   - complexes gpu (consumable INT) and io_big (BOOL; the host has io_big=TRUE);
#   - queues q_1day and q_gpu (2 slots each, h_rt 24:00:00, /bin/bash, unix_behavior,
#     tmpdir /tmp); q_gpu offers gpu=2.
# Every failure prints what failed and exits non-zero.
set -Eeuo pipefail

export SGE_ROOT=/var/lib/gridengine
export SGE_CELL=default
export PATH="/usr/bin:/usr/sbin:/bin:/sbin${PATH:+:$PATH}"
export DEBIAN_FRONTEND=noninteractive

PROG=grid-engine.sh
PACKAGES=(gridengine-master gridengine-exec gridengine-client)
COMMON="$SGE_ROOT/$SGE_CELL/common"
QMASTER_PIDFILE=/var/spool/gridengine/qmaster/qmaster.pid   # written by sge_qmaster itself
EXECD_PIDFILE=/run/gridengine/execd.pid
POLICY_RC_D=/usr/sbin/policy-rc.d
QUEUES=(q_1day q_gpu)
JOB_USER=sgeuser
SMOKE_TIMEOUT=${SMOKE_TIMEOUT:-60}
HOST=$(hostname -s)

say() { echo "[$PROG] $*"; }
die() {
    echo "[$PROG] ERROR: $*" >&2
    exit 1
}
trap 'rc=$?; echo "[$PROG] ERROR: command failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2' ERR

TMPD=""
OUR_POLICY_RC_D=0
cleanup() {
    if [ "$OUR_POLICY_RC_D" = 1 ]; then
        rm -f "$POLICY_RC_D"
    fi
    if [ -n "$TMPD" ]; then
        rm -rf "$TMPD"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need_root() {
    [ "$(id -u)" = 0 ] || die "'$1' must run as root (it manages system daemons)"
}

lock() {
    mkdir -p /run/lock
    exec 9>/run/lock/gridpipe-grid-engine.lock
    flock -w 300 9 || die "another $PROG is still running (lock /run/lock/gridpipe-grid-engine.lock)"
}

scratch() {
    if [ -z "$TMPD" ]; then
        TMPD=$(mktemp -d /tmp/grid-engine.XXXXXX)
    fi
}

# ---------------------------------------------------------------- daemon state

# pid_of NAME PIDFILE: print the pid of the running daemon NAME, or nothing.
pid_of() {
    local name=$1 pidfile=$2 pid
    if [ -r "$pidfile" ]; then
        pid=$(tr -dc '0-9' <"$pidfile")
        if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
            echo "$pid"
            return 0
        fi
    fi
    # pid file missing or stale: look for the process by its exact name.
    pgrep -x "$name" 2>/dev/null | head -n 1 || true
}
qmaster_pid() { pid_of sge_qmaster "$QMASTER_PIDFILE"; }
execd_pid() { pid_of sge_execd "$EXECD_PIDFILE"; }
execd_running() { [ -n "$(execd_pid)" ]; }

installed() {
    local p st
    for p in "${PACKAGES[@]}"; do
        st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [ "$st" = "install ok installed" ] || return 1
    done
    command -v qconf >/dev/null && command -v qsub >/dev/null && command -v qstat >/dev/null
}

need_installed() {
    installed || die "Grid Engine packages are not installed: run 'bash scripts/grid-engine.sh setup'"
    [ -f "$COMMON/bootstrap" ] || die "cell $SGE_CELL is not initialised ($COMMON/bootstrap missing): run setup"
}

qmaster_answers() { timeout 10 qconf -sh >/dev/null 2>&1; }

# usable_queues: print the queue instances (of QUEUES on HOST) whose state column is empty.
usable_queues() {
    local out q
    out=$(timeout 15 qstat -f 2>/dev/null) || return 0
    for q in "${QUEUES[@]}"; do
        # usable line: "q@host  BIP  0/0/2  0.10  lx-amd64" (5 fields; a 6th is a state such as au, E, d)
        awk -v qi="$q@$HOST" '$1 == qi && NF == 5 { print qi }' <<<"$out"
    done
}
all_queues_usable() { [ "$(usable_queues | wc -l)" -eq "${#QUEUES[@]}" ]; }

# wait_for WHAT SECONDS COMMAND...: poll COMMAND until it succeeds, bounded in time.
wait_for() {
    local what=$1 secs=$2 deadline
    shift 2
    deadline=$((SECONDS + secs))
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        sleep 0.3
    done
}

# stop_pid PID GRACE TERM_WAIT NAME: wait GRACE s for an orderly exit, then TERM
# (waiting TERM_WAIT s), then KILL; dies naming NAME if the process survives.
stop_pid() {
    local pid=$1 grace=$2 term_wait=$3 name=$4
    wait_gone "$pid" "$grace" && return 0
    kill "$pid" 2>/dev/null || true
    wait_gone "$pid" "$term_wait" && return 0
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || die "$name (pid $pid) does not stop"
}

# wait_gone PID SECONDS
wait_gone() {
    local pid=$1 secs=$2 deadline
    deadline=$((SECONDS + secs))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            return 1
        fi
        sleep 0.2
    done
}

start_qmaster() {
    if [ -n "$(qmaster_pid)" ]; then
        return 0
    fi
    say "starting sge_qmaster"
    /etc/init.d/gridengine-master start >/dev/null || die "/etc/init.d/gridengine-master start failed"
    wait_for qmaster 30 qmaster_answers ||
        die "sge_qmaster does not answer 'qconf -sh' after 30 s (see /var/spool/gridengine/qmaster/messages)"
    say "sge_qmaster up (pid $(qmaster_pid))"
}

start_execd() {
    if [ -n "$(execd_pid)" ]; then
        return 0
    fi
    say "starting sge_execd"
    /etc/init.d/gridengine-exec start >/dev/null || die "/etc/init.d/gridengine-exec start failed"
    wait_for execd 10 execd_running ||
        die "sge_execd did not start (see /var/spool/gridengine/execd/*/messages)"
}

wait_queues() {
    if ! wait_for queues 30 all_queues_usable; then
        timeout 15 qstat -f >&2 || true
        die "queues ${QUEUES[*]} on $HOST are not usable after 30 s (qstat -f above; execd log in /var/spool/gridengine/execd/*/messages)"
    fi
    say "queues usable: ${QUEUES[*]} on $HOST"
}

stop_execd() {
    local pid
    pid=$(execd_pid)
    [ -n "$pid" ] || return 0
    say "stopping sge_execd (pid $pid)"
    local secs=0
    if [ -n "$(qmaster_pid)" ]; then
        if timeout 20 qconf -ke "$HOST" >/dev/null 2>&1; then
            secs=15
        else
            say "qconf -ke $HOST failed; killing pid $pid"
        fi
    fi
    stop_pid "$pid" "$secs" 10 sge_execd
}

stop_qmaster() {
    local pid
    pid=$(qmaster_pid)
    [ -n "$pid" ] || return 0
    say "stopping sge_qmaster (pid $pid; takes ~11 s)"
    local secs=0
    if timeout 20 qconf -km >/dev/null 2>&1; then
        secs=45
    else
        say "qconf -km failed; killing pid $pid"
    fi
    stop_pid "$pid" "$secs" 15 sge_qmaster
}

# ---------------------------------------------------------------- setup steps

ensure_host_resolves() {
    if ! getent hosts "$HOST" >/dev/null; then
        say "host name $HOST does not resolve: adding '127.0.0.1 $HOST' to /etc/hosts"
        echo "127.0.0.1 $HOST" >>/etc/hosts
    fi
}

installable() {
    local p cand
    for p in "${PACKAGES[@]}"; do
        cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ { print $2 }')
        [ -n "$cand" ] && [ "$cand" != "(none)" ] || return 1
    done
}

install_packages() {
    if installed; then
        say "packages installed ($(dpkg-query -W -f='${Version}' gridengine-master))"
        return 0
    fi
    say "installing ${PACKAGES[*]}"
    local p
    for p in gridengine-common "${PACKAGES[@]}"; do
        printf '%s shared/gridengineconfig boolean true\n%s shared/gridenginecell string %s\n%s shared/gridenginemaster string %s\n' \
            "$p" "$p" "$SGE_CELL" "$p" "$HOST"
    done | debconf-set-selections || die "debconf-set-selections (gridengine answers) failed"
    echo "exim4-config exim4/dc_eximconfig_configtype select local delivery only; not on a network" |
        debconf-set-selections || die "debconf-set-selections (exim4 answer) failed"

    # Keep postinst from starting daemons (a qmaster started before host_aliases exists would
    # register as "localhost"); the image may already ship a policy-rc.d that does this.
    if [ ! -e "$POLICY_RC_D" ]; then
        printf '#!/bin/sh\n# temporary, from gridpipe scripts/grid-engine.sh\nexit 101\n' >"$POLICY_RC_D"
        chmod 755 "$POLICY_RC_D"
        OUR_POLICY_RC_D=1
    fi
    if ! installable; then
        say "packages not installable yet: apt-get update"
        apt-get update -q >/dev/null || die "apt-get update failed"
    fi
    local apt=(apt-get install -y -q --no-install-recommends "${PACKAGES[@]}")
    if ! "${apt[@]}" >"$TMPD/apt.log" 2>&1; then
        say "apt-get install failed; apt-get update and one retry"
        apt-get update -q >/dev/null || die "apt-get update failed"
        if ! "${apt[@]}" >"$TMPD/apt.log" 2>&1; then
            tail -n 30 "$TMPD/apt.log" >&2
            die "apt-get install ${PACKAGES[*]} failed (log above)"
        fi
    fi
    if [ "$OUR_POLICY_RC_D" = 1 ]; then
        rm -f "$POLICY_RC_D"
        OUR_POLICY_RC_D=0
    fi
    installed || die "packages still not installed after apt-get install"
    say "packages installed ($(dpkg-query -W -f='${Version}' gridengine-master))"
}

# Returns 0 when a file was changed.
ensure_host_files() {
    [ -f "$COMMON/bootstrap" ] ||
        die "cell $SGE_CELL not initialised by the package ($COMMON/bootstrap missing; debconf shared/gridengineconfig false?)"
    local changed=1
    if [ "$(cat "$COMMON/host_aliases" 2>/dev/null)" != "$HOST localhost" ]; then
        echo "$HOST localhost" >"$COMMON/host_aliases"
        say "wrote $COMMON/host_aliases ('$HOST localhost')"
        changed=0
    fi
    if [ "$(cat "$COMMON/act_qmaster" 2>/dev/null)" != "$HOST" ]; then
        echo "$HOST" >"$COMMON/act_qmaster"
        say "wrote $COMMON/act_qmaster ('$HOST')"
        changed=0
    fi
    return "$changed"
}

ensure_user() {
    if ! id "$JOB_USER" >/dev/null 2>&1; then
        useradd -m -s /bin/bash -K UID_MIN=1000 "$JOB_USER" || die "useradd $JOB_USER failed"
        say "created user $JOB_USER (uid $(id -u "$JOB_USER"))"
    fi
    [ "$(id -u "$JOB_USER")" -ge 1000 ] ||
        say "warning: $JOB_USER has uid $(id -u "$JOB_USER") < 1000 (min_uid is 0, so jobs still run)"
}

# qc ARGS...: run qconf quietly (it reports success on stderr); on failure show its output and die.
qc() {
    local out
    if out=$(timeout 20 qconf "$@" 2>&1); then
        return 0
    fi
    echo "$out" >&2
    die "qconf $* failed"
}

# qconf_apply WHAT SHOW_CMD MODIFY_OPT FILE: run `qconf MODIFY_OPT FILE` unless the output of
# SHOW_CMD already has FILE's lines (whitespace-normalised, comments ignored, any order).
# Returns 0 when applied.
norm() { grep -v '^#' | awk 'NF { $1 = $1; print }'; }
qconf_apply() {
    local what=$1 show=$2 opt=$3 file=$4 current
    current=$(eval "$show" 2>/dev/null | norm | LC_ALL=C sort || true)
    if [ "$current" = "$(norm <"$file" | LC_ALL=C sort)" ]; then
        return 1
    fi
    qc "$opt" "$file"
    say "applied $what"
}

# has_lines CURRENT FILE: every "key value..." line of FILE appears (normalised) in CURRENT.
has_lines() {
    ! norm <"$2" | grep -vxF -f <(printf '%s\n' "$1" | norm) >/dev/null
}

# add_or_modify WHAT SHOW_CMD ADD_OPT MOD_OPT FILE: -A when SHOW_CMD fails (no such object),
# -M when it differs from FILE (gotcha: -A fails once the object exists), nothing when equal.
add_or_modify() {
    local what=$1 show=$2 add=$3 mod=$4 file=$5 current
    if current=$(eval "$show" 2>/dev/null); then
        if has_lines "$current" "$file"; then
            return 0
        fi
        qc "$mod" "$file"
        say "updated $what"
    else
        qc "$add" "$file"
        say "added $what"
    fi
}

# Returns 0 when the global configuration was changed.
configure_global() {
    timeout 20 qconf -sconf global >"$TMPD/global.cur" || die "qconf -sconf global failed"
    sed -e 's/^min_uid .*/min_uid                      0/' \
        -e 's/^min_gid .*/min_gid                      0/' \
        -e 's/flush_time=[0-9:]*/flush_time=00:00:01/' "$TMPD/global.cur" >"$TMPD/global"
    grep -q '^min_uid  *0$' "$TMPD/global" && grep -q 'flush_time=00:00:01' "$TMPD/global" ||
        die "unexpected 'qconf -sconf global' output (no min_uid / flush_time line)"
    qconf_apply "global config (min_uid 0, min_gid 0, accounting flush_time 1 s)" \
        "cat $TMPD/global.cur" -Mconf "$TMPD/global"
}

configure_cluster() {
    local list
    # scheduler: dispatch within ~0.2 s of a submit or a job end
    timeout 20 qconf -ssconf >"$TMPD/sched.cur" || die "qconf -ssconf failed"
    sed -e 's/^schedule_interval .*/schedule_interval                 0:0:1/' \
        -e 's/^flush_submit_sec .*/flush_submit_sec                  1/' \
        -e 's/^flush_finish_sec .*/flush_finish_sec                  1/' "$TMPD/sched.cur" >"$TMPD/sched"
    qconf_apply "scheduler config (schedule_interval 0:0:1, flush_submit_sec 1, flush_finish_sec 1)" \
        "cat $TMPD/sched.cur" -Msconf "$TMPD/sched" || true

    # admin and submit host
    list=$(timeout 20 qconf -sh 2>/dev/null || true)
    if ! grep -qxF "$HOST" <<<"$list"; then
        qc -ah "$HOST"
        say "added admin host $HOST"
    fi
    list=$(timeout 20 qconf -ss 2>/dev/null || true)
    if ! grep -qxF "$HOST" <<<"$list"; then
        qc -as "$HOST"
        say "added submit host $HOST"
    fi

    # complexes: gpu (consumable INT, default 0), io_big (BOOL, FALSE unless offered)
    timeout 20 qconf -sc >"$TMPD/complex.cur" || die "qconf -sc failed"
    {
        grep -v '^#' "$TMPD/complex.cur" | grep -vE '^(gpu|io_big)[[:space:]]' || true
        echo "gpu    gpu    INT  <= YES YES 0     0"
        echo "io_big io_big BOOL == YES NO  FALSE 0"
    } >"$TMPD/complex"
    qconf_apply "complexes gpu (consumable INT) and io_big (BOOL)" \
        "cat $TMPD/complex.cur" -Mc "$TMPD/complex" || true

    # host group
    printf 'group_name @allhosts\nhostlist %s\n' "$HOST" >"$TMPD/allhosts"
    add_or_modify "host group @allhosts" "timeout 20 qconf -shgrp @allhosts" -Ahgrp -Mhgrp "$TMPD/allhosts"

    # execution host offering io_big
    cat >"$TMPD/exechost" <<EOF
hostname              $HOST
load_scaling          NONE
complex_values        io_big=TRUE
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
EOF
    add_or_modify "exec host $HOST (complex_values io_big=TRUE)" "timeout 20 qconf -se $HOST" -Ae -Me "$TMPD/exechost"

    # queues
    write_queue q_1day NONE >"$TMPD/q_1day"
    write_queue q_gpu gpu=2 >"$TMPD/q_gpu"
    add_or_modify "queue q_1day" "timeout 20 qconf -sq q_1day" -Aq -Mq "$TMPD/q_1day"
    add_or_modify "queue q_gpu (gpu=2)" "timeout 20 qconf -sq q_gpu" -Aq -Mq "$TMPD/q_gpu"
}

# write_queue NAME COMPLEX_VALUES: a full queue definition (qconf -sq format).
# load_thresholds NONE: the queues must not go into alarm state when the host is busy (builds, tests).
write_queue() {
    cat <<EOF
qname                 $1
hostlist              @allhosts
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               NONE
rerun                 FALSE
slots                 2
tmpdir                /tmp
shell                 /bin/bash
prolog                NONE
epilog                NONE
shell_start_mode      unix_behavior
starter_method        NONE
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        $2
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  24:00:00
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
EOF
}

# ---------------------------------------------------------------- commands

cmd_setup() {
    need_root setup
    lock
    scratch
    local t0=$SECONDS
    say "setup: single-host Grid Engine on $HOST (SGE_ROOT=$SGE_ROOT, SGE_CELL=$SGE_CELL)"
    ensure_host_resolves
    install_packages
    if ensure_host_files && [ -n "$(qmaster_pid)" ]; then
        say "host files changed while qmaster runs: restarting the daemons"
        stop_execd
        stop_qmaster
    fi
    ensure_user
    start_qmaster
    # The global config must be in place before execd starts: execd caches it (else jobs
    # of root end in Eqw with "gid of user root (0) less than minimum allowed").
    if configure_global && [ -n "$(execd_pid)" ]; then
        say "global config changed while execd runs: restarting execd"
        stop_execd
    fi
    configure_cluster
    start_execd
    wait_queues
    say "setup done in $((SECONDS - t0)) s"
}

cmd_start() {
    need_root start
    need_installed
    lock
    local t0=$SECONDS
    if [ -n "$(qmaster_pid)" ] && [ -n "$(execd_pid)" ] && all_queues_usable; then
        say "already running (qmaster pid $(qmaster_pid), execd pid $(execd_pid)); queues usable"
        return 0
    fi
    [ "$(cat "$COMMON/act_qmaster" 2>/dev/null)" = "$HOST" ] && [ -f "$COMMON/host_aliases" ] ||
        die "$COMMON/act_qmaster or host_aliases is not set up for $HOST: run setup"
    start_qmaster
    start_execd
    wait_queues
    say "started in $((SECONDS - t0)) s"
}

cmd_stop() {
    need_root stop
    lock
    local t0=$SECONDS
    if [ -z "$(qmaster_pid)" ] && [ -z "$(execd_pid)" ]; then
        say "already stopped"
        return 0
    fi
    stop_execd
    stop_qmaster
    say "stopped in $((SECONDS - t0)) s"
}

cmd_status() {
    local qp ep rc=0
    qp=$(qmaster_pid)
    ep=$(execd_pid)
    if [ -n "$qp" ]; then echo "sge_qmaster: running (pid $qp)"; else echo "sge_qmaster: not running"; fi
    if [ -n "$ep" ]; then echo "sge_execd:   running (pid $ep)"; else echo "sge_execd:   not running"; fi
    if ! command -v qstat >/dev/null; then
        echo "queues: qstat not installed (run setup)"
        return 1
    fi
    if [ -n "$qp" ]; then
        echo "--- qstat -f"
        timeout 15 qstat -f || echo "(qstat -f failed)"
        echo "---"
    fi
    local usable
    usable=$(usable_queues | tr '\n' ' ')
    if all_queues_usable; then
        echo "queues: usable: $usable"
    else
        echo "queues: NOT all usable (want ${QUEUES[*]} on $HOST; usable: ${usable:-none})"
        rc=1
    fi
    return "$rc"
}

# smoke_job USER QUEUE RESOURCES: submit one job with qsub -sync y; it checks its own queue and user.
smoke_job() {
    local user=$1 queue=$2 res=$3 out rc id
    local script="#!/bin/bash
test \"\$QUEUE\" = $queue || { echo \"ran in queue \$QUEUE, not $queue\" >&2; exit 3; }
test \"\$(id -un)\" = $user || { echo \"ran as \$(id -un), not $user\" >&2; exit 4; }
exit 0"
    local qsub=(timeout "$SMOKE_TIMEOUT" qsub -sync y -q "$queue" -l "$res" -N "smoke_$queue" -o /dev/null -e /dev/null)
    local t0=$SECONDS
    if [ "$user" = root ]; then
        if out=$(cd / && "${qsub[@]}" <<<"$script" 2>&1); then rc=0; else rc=$?; fi
    else
        if out=$(cd / && runuser -u "$user" -- env PATH="$PATH" SGE_ROOT="$SGE_ROOT" SGE_CELL="$SGE_CELL" \
            "${qsub[@]}" <<<"$script" 2>&1); then rc=0; else rc=$?; fi
    fi
    if [ "$rc" = 0 ]; then
        say "smoke: $queue -l $res as $user: ok ($((SECONDS - t0)) s)"
        return 0
    fi
    echo "$out" >&2
    id=$(sed -n 's/^Your job \([0-9][0-9]*\).*/\1/p' <<<"$out" | head -n 1)
    if [ "$rc" = 124 ]; then
        echo "[$PROG] job ${id:-?} did not finish within $SMOKE_TIMEOUT s" >&2
    fi
    if [ -n "$id" ]; then
        timeout 15 qstat -j "$id" 2>/dev/null | grep -E 'error reason|scheduling info|cannot run' >&2 || true
        timeout 15 qdel "$id" >/dev/null 2>&1 || true
    fi
    die "smoke job in $queue as $user (-l $res) failed (exit $rc)"
}

cmd_smoke() {
    need_root smoke
    need_installed
    id "$JOB_USER" >/dev/null 2>&1 || die "user $JOB_USER missing: run setup"
    all_queues_usable || die "queues ${QUEUES[*]} are not usable: run 'bash scripts/grid-engine.sh start' (or setup)"
    local t0=$SECONDS u
    for u in "$JOB_USER" root; do
        smoke_job "$u" q_1day io_big=TRUE
        smoke_job "$u" q_gpu gpu=1
    done
    say "smoke passed in $((SECONDS - t0)) s"
}

usage() {
    echo "usage: bash scripts/grid-engine.sh setup|start|stop|status|smoke" >&2
    exit 2
}

[ $# -eq 1 ] || usage
case $1 in
setup) cmd_setup ;;
start) cmd_start ;;
stop) cmd_stop ;;
status) if cmd_status; then exit 0; else exit 1; fi ;;
smoke) cmd_smoke ;;
*) usage ;;
esac
