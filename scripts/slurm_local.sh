#!/usr/bin/env bash
# slurm_local.sh -- a real single-node Slurm 22.05 cluster (Debian bookworm packages) for the
# project's SLURM tests and CI, without systemd, with every file under $SLURM_LOCAL_DIR.
# Adapted from ../shared/tools/slurm_local.sh (see ../shared/SLURM_LOCAL.md for the pitfalls);
# differences: accounting (slurmdbd + MariaDB, so `sacct` and `grass status` see real job states)
# is on by default, `install` explains why it cannot install instead of failing obscurely, and
# `start` refuses to wipe a folder that is not a dedicated one.
#
#   bash slurm_local.sh install   # apt-get the packages (idempotent; measured ~5 s, ~8-10 s with accounting)
#   bash slurm_local.sh start     # write configs, start munged + [mariadb + slurmdbd] + slurmctld + slurmd
#   eval "$(bash slurm_local.sh env)"   # export SLURM_CONF for sbatch/squeue/sacct/submitit
#   bash slurm_local.sh status
#   bash slurm_local.sh stop      # scancel everything, then kill the daemons by their PID files
#
# Knobs (environment):
#   SLURM_LOCAL_DIR=/tmp/slurm_local   where config, state, logs, sockets, pid files live (wiped by start)
#   SLURM_LOCAL_ACCOUNTING=1|0         1 (default) = also run MariaDB + slurmdbd so that `sacct` works
#   SLURM_LOCAL_CPUS=$(nproc)          CPUs advertised; > real cores works (SlurmdParameters=config_overrides)
#   SLURM_LOCAL_PORT_BASE=6817         slurmctld port; slurmd = +1, slurmdbd = +2, mariadb = +3
# Must run as root (uses runuser for munge / mysql users).
set -eEuo pipefail

BASE=${SLURM_LOCAL_DIR:-/tmp/slurm_local}
ACCT=${SLURM_LOCAL_ACCOUNTING:-1}
CPUS=${SLURM_LOCAL_CPUS:-$(nproc)}
PORT=${SLURM_LOCAL_PORT_BASE:-6817}
H=$(hostname -s)
CONF=$BASE/etc/slurm.conf
MSOCK=$BASE/munge/munge.socket.2

log() { echo "[slurm_local] $*" >&2; }
on_err() {
  log "FAILED (line $1); log tails:"
  local f
  for f in "$BASE"/munge/munged.log "$BASE"/mysql/mariadb.log "$BASE"/log/*.log; do
    [ -f "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }
  done
}
trap 'on_err $LINENO' ERR

do_install() {
  local pkgs="slurmctld slurmd slurm-client munge"
  [ "$ACCT" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
  # shellcheck disable=SC2086
  if ! dpkg -s $pkgs >/dev/null 2>&1; then
    command -v apt-get >/dev/null || { log "cannot install $pkgs: no apt-get on this machine"; exit 3; }
    [ "$(id -u)" = 0 ] || { log "cannot install $pkgs: must run as root"; exit 3; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  fi
}

wait_for() {  # wait_for <seconds> <description> <command...>
  local t=$1 what=$2; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then log "timeout waiting for $what"; return 1; fi
    sleep 0.2
  done
}

# running = exists and is not a zombie (in this sandbox PID 1 reaps orphans only every few seconds)
running() { local _p _c st; { read -r _p _c st _ <"/proc/$1/stat"; } 2>/dev/null && [ "$st" != Z ]; }
pid_alive() { [ -s "$1" ] && running "$(cat "$1")"; }

write_configs() {
  local mem=$(( $(awk '/^MemTotal:/{print int($2/1024)}' /proc/meminfo) - 2048 ))
  local overrides=""
  [ "$CPUS" -gt "$(nproc)" ] && overrides="SlurmdParameters=config_overrides"
  local acct_lines="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
  if [ "$ACCT" = 1 ]; then
    acct_lines="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((PORT + 2))
# for slurmdbd connections the munge socket is taken from here, not from AuthInfo
AccountingStoragePass=${MSOCK}
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30"
  fi
  cat > "$CONF" <<EOF
ClusterName=ci
SlurmctldHost=${H}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${PORT}
SlurmdPort=$((PORT + 1))
AuthType=auth/munge
CryptoType=crypto/munge
# socket: our own munged; cred_expire: a requeued job waits this long before it may start again (default 120 s)
AuthInfo=socket=${MSOCK},cred_expire=10
StateSaveLocation=${BASE}/state
SlurmdSpoolDir=${BASE}/spool
SlurmctldPidFile=${BASE}/run/slurmctld.pid
SlurmdPidFile=${BASE}/run/slurmd.pid
SlurmctldLogFile=${BASE}/log/slurmctld.log
SlurmdLogFile=${BASE}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# default 60 s / 30 s: a requeued or newly-eligible job would wait up to that long to start
SchedulerParameters=sched_interval=2,bf_interval=2
MailProg=/bin/true
${acct_lines}
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
# finished jobs stay visible to squeue/scontrol for MinJobAge seconds
MinJobAge=600
KillWait=5
Waittime=0
${overrides}
NodeName=${H} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${H} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  if [ "$ACCT" = 1 ]; then
    cat > "$BASE/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=${MSOCK}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((PORT + 2))
SlurmUser=root
PidFile=${BASE}/run/slurmdbd.pid
LogFile=${BASE}/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$((PORT + 3))
StorageUser=slurm
StoragePass=slurmci
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$BASE/etc/slurmdbd.conf"
  fi
}

start_munge() {
  # munged insists the socket dir be world-executable (0755), the key 0400/0600
  install -d -o munge -g munge -m 0755 "$BASE/munge"
  mungekey -c -f -k "$BASE/munge/munge.key"
  chown munge:munge "$BASE/munge/munge.key"; chmod 0400 "$BASE/munge/munge.key"
  runuser -u munge -- /usr/sbin/munged --socket="$MSOCK" --key-file="$BASE/munge/munge.key" \
    --pid-file="$BASE/munge/munged.pid" --log-file="$BASE/munge/munged.log" \
    --seed-file="$BASE/munge/munged.seed"
  wait_for 10 munged bash -c "munge -n -S '$MSOCK' | unmunge -S '$MSOCK'"
}

start_mariadb() {
  local d=$BASE/mysql
  install -d -o mysql -g mysql -m 0700 "$d"
  mariadb-install-db --no-defaults --user=mysql --datadir="$d/data" --auth-root-authentication-method=socket \
    --skip-test-db --innodb-log-file-size=16M >"$BASE/log/mariadb-install.log" 2>&1
  # --no-defaults: ignore /etc/mysql/*.cnf; only our own port/socket, loopback only
  runuser -u mysql -- /usr/sbin/mariadbd --no-defaults --datadir="$d/data" --socket="$d/mysqld.sock" \
    --pid-file="$d/mariadbd.pid" --bind-address=127.0.0.1 --port=$((PORT + 3)) \
    --log-error="$d/mariadb.log" --innodb-buffer-pool-size=64M --innodb-log-file-size=16M --skip-name-resolve \
    --innodb-lock-wait-timeout=900 >/dev/null 2>&1 &
  wait_for 60 mariadb mariadb --no-defaults -S "$d/mysqld.sock" -uroot -e 'select 1'
  mariadb --no-defaults -S "$d/mysqld.sock" -uroot <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmci';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmci';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
}

start_slurmdbd() {
  SLURM_CONF=$CONF /usr/sbin/slurmdbd
  wait_for 60 slurmdbd bash -c "SLURM_CONF='$CONF' sacctmgr -n list cluster"
  SLURM_CONF=$CONF sacctmgr -i add cluster ci >/dev/null 2>&1 || true
}

check_base() {  # start wipes $BASE: refuse anything that is not a dedicated absolute folder
  case "$BASE" in
    /*/*) ;;
    *) log "SLURM_LOCAL_DIR='$BASE' must be an absolute path at least two levels deep"; exit 2 ;;
  esac
  if [ -d "$BASE" ] && [ -n "$(ls -A "$BASE" 2>/dev/null)" ] && [ ! -f "$BASE/etc/slurm.conf" ]; then
    log "SLURM_LOCAL_DIR='$BASE' is not empty and holds no slurm_local cluster; refusing to wipe it"; exit 2
  fi
}

do_start() {
  [ "$(id -u)" = 0 ] || { log "must run as root"; exit 1; }
  command -v slurmctld >/dev/null || [ -x /usr/sbin/slurmctld ] || { log "slurmctld not installed: run '$0 install'"; exit 3; }
  check_base
  do_stop >/dev/null 2>&1 || true
  rm -rf "$BASE"
  mkdir -p "$BASE"/{etc,state,spool,log,run}
  chmod 0755 "$BASE"  # munged and mariadbd run as their own users and must traverse it
  write_configs
  local ts; ts=$(date +%s%N)
  el() { echo "$(( ($(date +%s%N) - ts) / 1000000 )) ms"; }
  start_munge; log "munged up after $(el)"
  if [ "$ACCT" = 1 ]; then
    start_mariadb; log "mariadb up after $(el)"
    start_slurmdbd; log "slurmdbd up after $(el)"
  fi
  export SLURM_CONF=$CONF
  # -c / -c : cold start, ignore any saved state
  /usr/sbin/slurmctld -c -f "$CONF"
  wait_for 30 slurmctld scontrol ping; log "slurmctld up after $(el)"
  /usr/sbin/slurmd -c -f "$CONF"
  wait_for 60 "node idle" bash -c "sinfo -h -n '$H' -o %T | grep -qx idle"
  log "node idle after $(el); use: export SLURM_CONF=$CONF"
}

do_stop() {
  export SLURM_CONF=$CONF
  if pid_alive "$BASE/run/slurmctld.pid"; then
    scancel --full --quiet $(squeue -h -o %A 2>/dev/null | sort -u) 2>/dev/null || true
    wait_for 20 "jobs gone" bash -c '[ -z "$(squeue -h -t R,CG,CF -o %A)" ]' || true
  fi
  local f pid
  for f in run/slurmd.pid run/slurmctld.pid run/slurmdbd.pid mysql/mariadbd.pid munge/munged.pid; do
    f=$BASE/$f
    pid_alive "$f" || continue
    pid=$(cat "$f")
    kill "$pid"
    local end=$((SECONDS + 20))
    while running "$pid" && [ $SECONDS -lt $end ]; do sleep 0.1; done
    running "$pid" && { log "pid $pid ($f) ignored SIGTERM, sending SIGKILL"; kill -9 "$pid" || true; }
  done
  rm -f "$BASE"/run/*.pid
}

do_status() {
  export SLURM_CONF=$CONF
  local f
  for f in munge/munged.pid mysql/mariadbd.pid run/slurmdbd.pid run/slurmctld.pid run/slurmd.pid; do
    if pid_alive "$BASE/$f"; then echo "$f: running (pid $(cat "$BASE/$f"))"; else echo "$f: not running"; fi
  done
  sinfo || true
  squeue || true
}

case "${1:-}" in
  install) do_install ;;
  start) do_start ;;
  stop) do_stop ;;
  status) do_status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 {install|start|stop|status|env}" >&2; exit 2 ;;
esac
