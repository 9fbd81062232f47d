#!/usr/bin/env bash
# vcsim-world.sh - the vSphere peer of the test world: govmomi's vCenter simulator (pinned in go.mod)
# extended with ExportVm + HttpNfcLease downloads (cmd/vcsim-ext), serving vAPI REST (tags) too,
# seeded with VMs whose disks hold real, reproducible data as streamOptimized VMDKs. Listens on
# 127.0.0.1 only.
#
# Usage: tests/world/vcsim/vcsim-world.sh COMMAND [OPTIONS]
#   build      build vcsim-ext and govc into the cache (skipped when present)
#   up         build, start vcsim (unless it already runs with the same options), seed, write
#              manifest.tsv and env.sh into the state dir
#   down       stop the vcsim that up started (by PID); no stray process is left
#   status     pid, port, ready, RSS
#   env        print the path of env.sh (source it)
#   lease VM   ExportVm on VM (inventory path or name under /DC0/vm) with curl; prints VM=, LEASE=,
#              COOKIE=, THUMBPRINT= and one URL= line per disk (VM must be powered off)
#   seed-load N  add powered-off VMs /DC0/vm/load/vmi-load-1..N (1 vCPU, 256 MiB, one 1 MiB random
#              disk, one NIC) to the running world and their rows to manifest.tsv, for load tests;
#              idempotent (VMs already there are kept), 4 at a time; not part of up's seed
#   seed-guests  add a powered-off VM /DC0/vm/guests/vmi-guest-<variant> per real guest disk of
#              tests/world/guest/guest-world.sh (built and cached there first: minutes the first
#              time), as vSphere would hold it: its guestId, firmware, 1 vCPU, 512 MiB, its disk on
#              the controller and its NIC with the adapter and MAC the table names; rows added to
#              manifest.tsv; idempotent; not part of up's seed
# Options (flag, or environment variable):
#   --scale N            VCSIM_WORLD_SCALE=N        multiply every seeded disk size (default 1)
#   --big-disk SIZE      VCSIM_WORLD_BIG_DISK=SIZE  add powered-off VM vmi-big with one random disk of
#                                                   SIZE (e.g. 1G, 512M; whole MiB)
#   --chunked            VCSIM_WORLD_CHUNKED=1      serve disk downloads chunked, without length/Range
#   --session-timeout D  VCSIM_WORLD_SESSION_TIMEOUT=D  expire idle SOAP sessions (Go duration: 30s)
#   --lease-timeout D    VCSIM_WORLD_LEASE_TIMEOUT=D    expire idle export leases (Go duration)
#   --port N             VCSIM_WORLD_PORT=N         fixed port (default: a free port chosen at start)
#   --seed S             VCSIM_WORLD_SEED=S         data key prefix (default vmimport1)
#   --user U             VCSIM_WORLD_USER=U         (default administrator@vsphere.local)
#   --password P         VCSIM_WORLD_PASSWORD=P     (default Vcsim-Passw0rd)
#   --restart            VCSIM_WORLD_RESTART=1      restart and reseed even if up with the same options
# Paths: state dir ${WORLD_DIR:-<repo>/.world}/vcsim; cache
# ${VMIMPORT_CACHE:-${XDG_CACHE_HOME:-~/.cache}/vm-import}/vcsim (binaries by source hash, disk images
# by data key). Go: $GO, else /usr/local/go/bin/go, else go on PATH (needs Go >= 1.25).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../../.." && pwd))
STATE=${WORLD_DIR:-$REPO/.world}/vcsim
CACHE=${VMIMPORT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vm-import}/vcsim
LOG=$STATE/vcsim.log
SEEDLOG=$STATE/seed.log
PIDFILE=$STATE/vcsim.pid
EXEFILE=$STATE/vcsim.exe
ENVFILE=$STATE/env.sh
MANIFEST=$STATE/manifest.tsv
DC=DC0

say() { echo "vcsim-world: $*" >&2; }
# fail WHAT LOGFILE: the one clear line, then the log's tail
fail() {
  echo "vcsim-world: ERROR: vcsim peer $1; log: $2" >&2
  [ -f "$2" ] && tail -n 15 "$2" | sed 's/^/    /' >&2
  exit 1
}
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

CMD=${1:-}
[ -n "$CMD" ] || usage
shift
LEASE_VM=""
if [ "$CMD" = lease ]; then LEASE_VM=${1:-}; [ -n "$LEASE_VM" ] || usage; shift; fi
LOAD_COUNT=""
if [ "$CMD" = seed-load ]; then
  LOAD_COUNT=${1:-}
  [[ "$LOAD_COUNT" =~ ^[1-9][0-9]*$ ]] && [ "$LOAD_COUNT" -le 500 ] || { say "seed-load N: 1..500"; exit 2; }
  shift
fi

SCALE=${VCSIM_WORLD_SCALE:-1}
BIG_DISK=${VCSIM_WORLD_BIG_DISK:-}
CHUNKED=${VCSIM_WORLD_CHUNKED:-0}
SESSION_TIMEOUT=${VCSIM_WORLD_SESSION_TIMEOUT:-}
LEASE_TIMEOUT=${VCSIM_WORLD_LEASE_TIMEOUT:-}
PORT=${VCSIM_WORLD_PORT:-0}
SEED=${VCSIM_WORLD_SEED:-vmimport1}
VUSER=${VCSIM_WORLD_USER:-administrator@vsphere.local}
VPASS=${VCSIM_WORLD_PASSWORD:-Vcsim-Passw0rd}
RESTART=${VCSIM_WORLD_RESTART:-0}
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) SCALE=$2; shift ;;
    --big-disk) BIG_DISK=$2; shift ;;
    --chunked) CHUNKED=1 ;;
    --session-timeout) SESSION_TIMEOUT=$2; shift ;;
    --lease-timeout) LEASE_TIMEOUT=$2; shift ;;
    --port) PORT=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --user) VUSER=$2; shift ;;
    --password) VPASS=$2; shift ;;
    --restart) RESTART=1 ;;
    -h|--help) usage ;;
    *) say "unknown option $1"; usage ;;
  esac
  shift
done
[[ "$SCALE" =~ ^[1-9][0-9]*$ ]] || { say "--scale must be a positive integer"; exit 2; }
[[ "$PORT" =~ ^[0-9]+$ ]] || { say "--port must be a number"; exit 2; }
[[ "$SEED" =~ ^[A-Za-z0-9._-]+$ ]] || { say "--seed may use only A-Z a-z 0-9 . _ -"; exit 2; }
case "$VUSER$VPASS" in *"'"*|*'<'*|*'&'*) say "user/password must not contain ' < &"; exit 2 ;; esac

# ------------------------------------------------------------------------------------- build -----
find_go() {
  GO=${GO:-}
  if [ -z "$GO" ]; then
    if [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; else GO=$(command -v go || true); fi
  fi
  [ -n "$GO" ] && [ -x "$GO" ] || fail "cannot build: no Go toolchain (set GO=/path/to/go, Go >= 1.25)" /dev/null
  GOVER=$("$GO" env GOVERSION)
  local minor; minor=$(sed -n 's/^go1\.\([0-9]*\).*/\1/p' <<<"$GOVER")
  [ -n "$minor" ] && [ "$minor" -ge 25 ] || fail "cannot build: $GO is $GOVER, need Go >= 1.25" /dev/null
}

# BIN: cache dir of binaries for this source + toolchain
resolve_bin() {
  find_go
  local h
  h=$( (cd "$HERE" && { echo "$GOVER"; sha256sum go.mod go.sum;
        find . -name '*.go' -type f -not -path './.*' | LC_ALL=C sort | xargs sha256sum; }) | sha256sum | cut -c1-16)
  BUILD_DIR=$CACHE/build-$h
  BIN=$BUILD_DIR/bin
  GOVMOMI_VERSION=$(awk '$1 == "require" && $2 == "github.com/vmware/govmomi" {print $3} $1 == "github.com/vmware/govmomi" {print $2}' "$HERE/go.mod" | head -1)
}

build() {
  resolve_bin
  if [ -x "$BIN/vcsim-ext" ] && [ -x "$BIN/govc" ]; then
    say "vcsim-ext and govc ($GOVMOMI_VERSION, $GOVER) cached in $BIN"
    touch "$BUILD_DIR" # last use, for pruning
    return
  fi
  mkdir -p "$BUILD_DIR"
  exec 8>"$BUILD_DIR/.lock"
  flock 8 # a concurrent build of the same hash: wait for it, then reuse
  if [ -x "$BIN/vcsim-ext" ] && [ -x "$BIN/govc" ]; then exec 8>&-; return; fi
  local blog=$BUILD_DIR/build.log tmp=$BUILD_DIR/bin.tmp start=$SECONDS
  say "building vcsim-ext and govc (govmomi $GOVMOMI_VERSION, $GOVER); log: $blog"
  rm -rf "$tmp"
  if ! (cd "$HERE" && set -x && env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly \
        "$GO" build -buildvcs=false -trimpath \
          -ldflags "-X github.com/vmware/govmomi/cli/flags.BuildVersion=$GOVMOMI_VERSION" \
          -o "$tmp/" ./cmd/vcsim-ext ./cmd/govc) >"$blog" 2>&1; then
    exec 8>&-
    fail "failed to build (go build ./cmd/vcsim-ext ./cmd/govc)" "$blog"
  fi
  rm -rf "$BIN"
  mv "$tmp" "$BIN"
  exec 8>&-
  say "built in $((SECONDS - start)) s: $BIN"
  # builds of other sources unused for 14 days (each is about 85 MB)
  find "$CACHE" -mindepth 1 -maxdepth 1 -name 'build-*' -mtime +14 -exec rm -rf {} + 2>/dev/null || true
}

# ------------------------------------------------------------------------------------ process ----
# running_pid: the PID from our pid file if it is alive and runs the binary we started
running_pid() {
  [ -f "$PIDFILE" ] && [ -f "$EXEFILE" ] || return 1
  local pid exe
  pid=$(cat "$PIDFILE")
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
  [ "${exe% (deleted)}" = "$(cat "$EXEFILE")" ] || return 1
  echo "$pid"
}

# stray_pids: vcsim-ext processes of ours serving this state dir whose pid file is gone
stray_pids() {
  local d pid exe
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    case "${exe% (deleted)}" in "$CACHE"/build-*/bin/vcsim-ext) ;; *) continue ;; esac
    tr '\0' '\n' <"$d/cmdline" 2>/dev/null | grep -qxF "$STATE/url" && echo "$pid"
  done
  return 0
}

stop_vcsim() {
  local pid
  if ! [ -f "$PIDFILE" ]; then # e.g. the pid file was deleted: find it by its exact -url-file
    for pid in $(stray_pids); do
      say "stopping vcsim pid $pid (no pid file; found by its -url-file $STATE/url)"
      echo "$pid" >"$PIDFILE"
      readlink "/proc/$pid/exe" | sed 's/ (deleted)$//' >"$EXEFILE"
      stop_vcsim
    done
  fi
  if pid=$(running_pid); then
    say "stopping vcsim pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
    if [ -e "/proc/$pid" ] && running_pid >/dev/null; then
      say "vcsim pid $pid ignored SIGTERM for 5 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for _ in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
    fi
  fi
  rm -f "$PIDFILE" "$EXEFILE" "$STATE/url" "$ENVFILE"
}

url_port() { sed -n 's|^https://127\.0\.0\.1:\([0-9]*\)/sdk$|\1|p' "$STATE/url" 2>/dev/null; }

ready() { # /about answers over verified TLS
  local port; port=$(url_port)
  [ -n "$port" ] && curl -fsS -o /dev/null --max-time 3 --cacert "$STATE/tls/ca.pem" "https://127.0.0.1:$port/about" 2>/dev/null
}

make_tls() {
  local d=$STATE/tls
  [ -s "$d/ca.pem" ] && [ -s "$d/server.pem" ] && [ -s "$d/server.key" ] && return
  say "making a test CA and an RSA-2048 server certificate in $d"
  rm -rf "$d"; mkdir -p "$d"
  (cd "$d" &&
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.pem \
      -subj "/CN=vm-import vcsim test CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" &&
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout server.key -out server.csr -subj "/CN=127.0.0.1" &&
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >server.ext &&
    openssl x509 -req -sha256 -days 825 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -out server.pem -extfile server.ext) >"$d/openssl.log" 2>&1 ||
    fail "failed to start: openssl could not make the test certificates" "$d/openssl.log"
}

start_vcsim() {
  local args=(-l "127.0.0.1:$PORT" -url-file "$STATE/url" -pg 2
              -username "$VUSER" -password "$VPASS"
              -tlscert "$STATE/tls/server.pem" -tlskey "$STATE/tls/server.key")
  [ "$CHUNKED" = 1 ] && args+=(-nfc-chunked)
  [ -z "$SESSION_TIMEOUT" ] || args+=(-session-timeout "$SESSION_TIMEOUT")
  [ -z "$LEASE_TIMEOUT" ] || args+=(-nfc-lease-timeout "$LEASE_TIMEOUT")
  rm -f "$STATE/url"
  # setsid: own session, so a terminal's ^C or the caller's process group never reaches it. The
  # child keeps no other descriptor: not our flock (fd 9), nor a caller's pipe that would then
  # never see EOF.
  (
    for fd in "/proc/$BASHPID/fd/"*; do
      fd=${fd##*/}
      [ "$fd" -le 2 ] || eval "exec $fd>&-"
    done
    exec setsid "$BIN/vcsim-ext" "${args[@]}" >"$LOG" 2>&1 </dev/null
  ) &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  readlink -f "$BIN/vcsim-ext" >"$EXEFILE"
  for _ in $(seq 300); do
    [ -e "/proc/$pid" ] || fail "failed to start (vcsim-ext exited)" "$LOG"
    [ -s "$STATE/url" ] && ready && return 0
    sleep 0.1
  done
  stop_vcsim
  fail "failed to start: /about did not answer within 30 s" "$LOG"
}

# ------------------------------------------------------------------------------------- disks -----
# Disk data: random = the AES-128-CTR keystream of openssl for password <data key>, cut to size;
# sparse = 1 MiB of that keystream every 16 MiB (chunk k at offset k*16 MiB holds keystream bytes
# [k MiB, (k+1) MiB), the last one cut at the disk's end), zeros elsewhere.
stream() { { openssl enc -aes-128-ctr -pbkdf2 -nosalt -pass "pass:$1" </dev/zero 2>/dev/null || true; }; }

# boot = a BIOS boot sector that prints VMIMPORT-BOOT-OK on COM1 and halts, zeros after it:
#   xor ax,ax; mov ds,ax; cld; mov si,msg; mov dx,0x3f8
#   next: lodsb; test al,al; jz halt; out dx,al; jmp next
#   halt: cli; hlt; jmp halt
#   msg: "VMIMPORT-BOOT-OK",13,10,0 ... 0x55 0xaa at 510
boot_sector() {
  local code='\x31\xc0\x8e\xd8\xfc\xbe\x17\x7c\xba\xf8\x03\xac\x84\xc0\x74\x03\xee\xeb\xf8\xfa\xf4\xeb\xfc'
  { printf '%b' "$code"; printf 'VMIMPORT-BOOT-OK\r\n'; head -c $((510 - 23 - 18)) /dev/zero; printf '\x55\xaa'; }
}

# make_disk KEY FILL BYTES -> sets DISK_VMDK, DISK_SHA (cached by key, fill and size)
make_disk() {
  local key=$1 fill=$2 size=$3 dir=$CACHE/disks
  local base=$dir/$key-$fill-$size
  DISK_VMDK=$base.vmdk
  if [ -s "$base.vmdk" ] && [ -s "$base.sha256" ] && [ -s "$base.stamp" ] &&
     [ "$(stat -c '%s %Y' "$base.vmdk")" = "$(cat "$base.stamp")" ]; then
    DISK_SHA=$(cat "$base.sha256")
    return
  fi
  mkdir -p "$dir"
  local raw=$base.raw.$$ tmp=$base.vmdk.$$
  rm -f "$raw"
  if [ "$fill" = random ]; then
    stream "$key" | head -c "$size" >"$raw"
  elif [ "$fill" = boot ]; then
    boot_sector >"$raw"
    truncate -s "$size" "$raw"
  else
    truncate -s "$size" "$raw"
    local mib=1048576 n k off len
    n=$(( (size + 16 * mib - 1) / (16 * mib) ))
    stream "$key" | for ((k = 0; k < n; k++)); do
      off=$((k * 16 * mib)); len=$((size - off < mib ? size - off : mib))
      dd of="$raw" bs=1M count="$len" seek="$off" iflag=fullblock,count_bytes oflag=seek_bytes \
         conv=notrunc status=none
    done
  fi
  [ "$(stat -c %s "$raw")" = "$size" ] || fail "failed to seed: raw image $raw is not $size bytes" "$SEEDLOG"
  DISK_SHA=$(sha256sum <"$raw" | cut -d' ' -f1)
  qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$raw" "$tmp" >>"$SEEDLOG" 2>&1 ||
    fail "failed to seed: qemu-img convert of $raw" "$SEEDLOG"
  rm -f "$raw"
  mv "$tmp" "$base.vmdk"
  echo "$DISK_SHA" >"$base.sha256"
  stat -c '%s %Y' "$base.vmdk" >"$base.stamp" # a write through a hard link invalidates the cache
}

# size token: <N>M[+<K>K] -> bytes, N scaled by SCALE; <N>B -> N bytes, unscaled
token_bytes() {
  local t=$1 m k=0
  [[ "$t" == *B ]] && { echo "${t%B}"; return; }
  m=${t%%M*}
  [[ "$t" == *+*K ]] && { k=${t#*+}; k=${k%K}; }
  echo $(( m * SCALE * 1048576 + k * 1024 ))
}

# --------------------------------------------------------------------------------------- seed ----
# folder|name|numCPU|coresPerSocket|memoryMiB|firmware|secureBoot|power|disks|nics
#   disks: controller:size:fill[:datastore],...   (controller pvscsi|lsilogic|sata; size
#          <N>M[+<K>K]; fill random|sparse|boot; datastore seedds (default) or seedds2, not for the
#          first disk, which vm.create puts on seedds)
#   nics:  network:adapter,...        (adapter vmxnet3|e1000e|e1000)
SEED_VMS=(
  "|vmi-bios-small|1|1|1024|bios|0|off|pvscsi:8M:random|DC0_DVPG0:vmxnet3"
  "|vmi-multi|4|2|2048|bios|0|off|pvscsi:16M:random,lsilogic:33M+1K:random,sata:64M:sparse|VM Network:vmxnet3,DC0_DVPG0:e1000e,VM Network:e1000"
  "|vmi-efi-secure|2|2|2048|efi|1|off|pvscsi:24M:random,pvscsi:48M:sparse|DC0_DVPG1:vmxnet3,VM Network:e1000e"
  "team-a|vmi-dup|2|1|1024|bios|0|off|lsilogic:8M:random|VM Network:e1000"
  "team-b|vmi-dup|1|1|2048|efi|0|on|sata:8M:random|DC0_DVPG0:vmxnet3"
  "|vmi-running|8|4|4096|bios|0|on|pvscsi:16M:random,lsilogic:32M:sparse|VM Network:vmxnet3,DC0_DVPG0:e1000e,DC0_DVPG1:vmxnet3"
  "|vmi-CamelCase|1|1|1024|bios|0|off|pvscsi:4M:random|VM Network:vmxnet3"
  "|vmi-resume|1|1|1024|bios|0|off|pvscsi:6M:random,sata:2M+4K:random|VM Network:vmxnet3"
  "|vmi-bootable|1|1|256|bios|0|off|pvscsi:1M:boot|VM Network:vmxnet3"
  "|vmi-twods|2|1|1024|bios|0|off|pvscsi:4M:random,pvscsi:2M:random:seedds2|VM Network:vmxnet3,VM Network:e1000"
)

# The local directory behind a seeded datastore.
ds_dir() {
  case $1 in
    seedds) echo "$STATE/datastore" ;;
    seedds2) echo "$STATE/datastore2" ;;
    *) fail "failed to seed: unknown datastore $1" /dev/null ;;
  esac
}

govc() { "$BIN/govc" "$@" 2>>"$SEEDLOG"; }
g() { govc "$@" || fail "failed to seed: govc $*" "$SEEDLOG"; }

soap_env() { printf '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>%s</soapenv:Body></soapenv:Envelope>' "$1"; }
# soap BODY -> response on stdout (cookie jar $STATE/soap.cookies)
soap() {
  curl -sS --cacert "$STATE/tls/ca.pem" -b "$STATE/soap.cookies" -c "$STATE/soap.cookies" \
    -H 'Content-Type: text/xml; charset=utf-8' -H 'SOAPAction: urn:vim25/6.5' \
    --data-binary "$(soap_env "$1")" "https://127.0.0.1:$(url_port)/sdk"
}
soap_login() {
  rm -f "$STATE/soap.cookies"
  soap "<Login xmlns=\"urn:vim25\"><_this type=\"SessionManager\">SessionManager</_this><userName>$VUSER</userName><password>$VPASS</password></Login>" |
    grep -q LoginResponse
}

declare -A PGNAME=()
seed_vm() {
  local folder=$1 name=$2 cpus=$3 cores=$4 mem=$5 fw=$6 secure=$7 power=$8 disks=$9 nics=${10}
  local dir=/$DC/vm${folder:+/$folder} path create tmpname=""
  path=$dir/$name
  # vSphere keeps a renamed VM's files in the old folder; vcsim refuses a second VM directory of the
  # same name on a datastore, so a duplicate name is created as <name>_<n> and renamed.
  create=$name
  local n=1
  while [ -n "${USED_DIRS[$create]:-}" ]; do create=${name}_$n; n=$((n + 1)); done
  USED_DIRS[$create]=1
  [ "$create" = "$name" ] || tmpname=$create
  [ -z "$folder" ] || "$BIN/govc" folder.info "$dir" >/dev/null 2>&1 || g folder.create "$dir" >/dev/null

  local -a dspec nspec
  IFS=, read -r -a dspec <<<"$disks"
  IFS=, read -r -a nspec <<<"$nics"
  local ctl size fill ds net adapter
  IFS=: read -r ctl size fill ds <<<"${dspec[0]}"
  IFS=: read -r net adapter <<<"${nspec[0]}"
  g vm.create -on=false -folder "$dir" -pool "/$DC/host/DC0_C0/Resources" -ds seedds \
    -c "$cpus" -m "$mem" -g otherLinux64Guest -firmware "$fw" -version vmx-19 \
    -disk "$(token_bytes "$size")B" -disk.controller "$ctl" \
    -net "$net" -net.adapter "$adapter" "$create" >/dev/null
  [ -z "$tmpname" ] || g vm.change -vm "$dir/$tmpname" -name "$name"

  declare -A ctl_dev=()
  local line
  while read -r line _; do
    case "$line" in pvscsi-*) ctl_dev[pvscsi]=${ctl_dev[pvscsi]:-$line} ;;
      lsilogic-*) ctl_dev[lsilogic]=${ctl_dev[lsilogic]:-$line} ;;
      ahci-*) ctl_dev[sata]=${ctl_dev[sata]:-$line} ;; esac
  done < <(g device.ls -vm "$path")
  local k
  for ((k = 1; k < ${#dspec[@]}; k++)); do
    IFS=: read -r ctl size fill ds <<<"${dspec[$k]}"
    ds=${ds:-seedds}
    mkdir -p "$(ds_dir "$ds")/$create"
    if [ -z "${ctl_dev[$ctl]:-}" ]; then
      if [ "$ctl" = sata ]; then ctl_dev[$ctl]=$(g device.sata.add -vm "$path")
      else ctl_dev[$ctl]=$(g device.scsi.add -vm "$path" -type "$ctl"); fi
    fi
    g vm.disk.create -vm "$path" -ds "$ds" -name "$create/${create}_$k" \
      -size "$(token_bytes "$size")B" -controller "${ctl_dev[$ctl]}" >/dev/null
  done
  for ((k = 1; k < ${#nspec[@]}; k++)); do
    IFS=: read -r net adapter <<<"${nspec[$k]}"
    g vm.network.add -vm "$path" -net "$net" -net.adapter "$adapter"
  done
  local moref
  moref=$(g ls -i "$path" | sed -n 's/^VirtualMachine://p')
  if [ "$cores" != 1 ]; then # govc has no flag for numCoresPerSocket
    soap "<ReconfigVM_Task xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$moref</_this><spec><numCoresPerSocket>$cores</numCoresPerSocket></spec></ReconfigVM_Task>" |
      grep -q ReconfigVM_TaskResponse || fail "failed to seed: ReconfigVM_Task numCoresPerSocket on $path" "$SEEDLOG"
  fi
  [ "$secure" = 1 ] && g device.boot -vm "$path" -secure=true

  # disks in device order (= ExportVm's deviceUrl order), with their controller; NICs
  local info
  info=$(g device.info -json -vm "$path")
  local idx=0 file bytes ctype key
  while IFS=$'\t' read -r file bytes ctype; do
    IFS=: read -r ctl size fill ds <<<"${dspec[$idx]}"
    [ "$bytes" = "$(token_bytes "$size")" ] || fail "failed to seed: $path disk $idx has $bytes bytes" "$SEEDLOG"
    key=$SEED-${folder:+$folder.}$name-d$idx
    make_disk "$key" "$fill" "$bytes"
    local dsname=${file%%]*} rel=${file#*] } dsdir
    dsdir=$(ds_dir "${dsname#[}")
    ln -f "$DISK_VMDK" "$dsdir/$rel" 2>/dev/null || cp "$DISK_VMDK" "$dsdir/$rel"
    rm -f "$dsdir/${rel%.vmdk}-flat.vmdk" # vcsim's empty extent: the streamOptimized file is whole
    case "$ctype" in ParaVirtualSCSIController) ctype=pvscsi ;; VirtualLsiLogicController) ctype=lsilogic ;;
      VirtualAHCIController) ctype=sata ;; esac
    printf 'disk\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n' "$path" "$idx" "$bytes" "$DISK_SHA" "$file" "$key" "$fill" "$ctype" >>"$MANIFEST.tmp.disks"
    idx=$((idx + 1))
  done < <(jq -r '(.devices | map({(.key | tostring): .type}) | add) as $t
      | .devices[] | select(.type == "VirtualDisk")
      | [.backing.fileName, (.capacityInBytes // (.capacityInKB * 1024)), $t[.controllerKey | tostring]] | @tsv' <<<"$info")
  [ "$idx" = "${#dspec[@]}" ] || fail "failed to seed: $path has $idx disks, expected ${#dspec[@]}" "$SEEDLOG"
  idx=0
  while IFS=$'\t' read -r mac net type; do
    [ -z "${PGNAME[$net]:-}" ] || net=${PGNAME[$net]}
    type=${type#Virtual}; type=${type,,}
    printf 'nic\t%s\t%d\t%s\t%s\t%s\n' "$path" "$idx" "$mac" "$net" "$type" >>"$MANIFEST.tmp.nics"
    idx=$((idx + 1))
  done < <(jq -r '.devices[] | select(.macAddress != null)
      | [.macAddress, (.backing.deviceName // .backing.port.portgroupKey // ""), .type] | @tsv' <<<"$info")

  [ "$power" = on ] && g vm.power -on "$path" >/dev/null
  g vm.info -json "$path" | jq -r --arg path "$path" '.virtualMachines[0] |
      ["vm", $path, .name, .self.value, .config.hardware.numCPU, (.config.hardware.numCoresPerSocket // 1),
       .config.hardware.memoryMB, .config.firmware, .runtime.powerState, .config.instanceUuid, .config.uuid,
       (.config.bootOptions.efiSecureBootEnabled // false)] | @tsv' >>"$MANIFEST.tmp.vms"
}

seed() {
  local start=$SECONDS
  : >"$SEEDLOG"
  export GOVC_URL GOVC_USERNAME=$VUSER GOVC_PASSWORD=$VPASS GOVC_TLS_CA_CERTS=$STATE/tls/ca.pem \
    GOVC_DATACENTER=$DC GOVMOMI_HOME=$STATE/govmomi GOVC_PERSIST_SESSION=true GOVC_INSECURE=false
  GOVC_URL=$(cat "$STATE/url")
  rm -rf "$GOVMOMI_HOME"
  DS_DIR=$STATE/datastore
  rm -rf "$DS_DIR" "$STATE/datastore2"; mkdir -p "$DS_DIR" "$STATE/datastore2"
  soap_login || fail "failed to seed: SOAP Login with curl" "$LOG"
  local hosts
  mapfile -t hosts < <(g find "/$DC/host/DC0_C0" -type h)
  g datastore.create -type local -name seedds -path "$DS_DIR" "${hosts[@]}"
  g datastore.create -type local -name seedds2 -path "$STATE/datastore2" "${hosts[@]}"
  local key name
  while IFS=$'\t' read -r key name; do PGNAME[$key]=$name; done < <(
    g object.collect -json -type DistributedVirtualPortgroup / key name |
      jq -r '[.changeSet[] | {(.name): .val}] | add | [.key, .name] | @tsv')
  rm -f "$MANIFEST".tmp.*
  declare -gA USED_DIRS=()
  local spec=("${SEED_VMS[@]}")
  if [ -n "$BIG_DISK" ]; then
    local mib
    mib=$(numfmt --from=iec "${BIG_DISK%B}" 2>/dev/null) && [ $((mib % 1048576)) = 0 ] ||
      fail "bad --big-disk $BIG_DISK (whole MiB, e.g. 1G)" /dev/null
    spec+=("|vmi-big|2|1|2048|bios|0|off|pvscsi:${mib}B:random|VM Network:vmxnet3")
  fi
  local s f
  for s in "${spec[@]}"; do
    IFS='|' read -r -a f <<<"$s"
    seed_vm "${f[@]}"
  done
  {
    echo "# vcsim-world seed manifest (tab-separated). Columns by kind:"
    printf '# vm\tinventory_path\tname\tmoref\tnum_cpu\tcores_per_socket\tmemory_mib\tfirmware\tpower_state\tinstance_uuid\tbios_uuid\tsecure_boot\n'
    printf '# disk\tvm_inventory_path\tindex\tsize_bytes\tsha256_raw\tdatastore_path\tdata_key\tfill\tcontroller\n'
    printf '# nic\tvm_inventory_path\tindex\tmac\tnetwork\tadapter\n'
    cat "$MANIFEST.tmp.vms" "$MANIFEST.tmp.disks" "$MANIFEST.tmp.nics"
  } >"$MANIFEST.tmp"
  mv "$MANIFEST.tmp" "$MANIFEST"
  rm -f "$MANIFEST".tmp.*
  say "seeded ${#spec[@]} VMs in $((SECONDS - start)) s"
}

write_env() {
  local port pid thumb
  port=$(url_port); pid=$(cat "$PIDFILE")
  thumb=$(openssl x509 -in "$STATE/tls/server.pem" -noout -fingerprint -sha1 | sed 's/.*=//')
  {
    echo "# vcsim peer, written by tests/world/vcsim/vcsim-world.sh up"
    local kv
    for kv in \
      "VCSIM_SDK_URL=https://127.0.0.1:$port/sdk" "VCSIM_USERNAME=$VUSER" "VCSIM_PASSWORD=$VPASS" \
      "VCSIM_CA=$STATE/tls/ca.pem" "VCSIM_THUMBPRINT=$thumb" "VCSIM_DATACENTER=$DC" \
      "VCSIM_MANIFEST=$MANIFEST" "VCSIM_PID=$pid" "VCSIM_PORT=$port" "VCSIM_DIR=$STATE" \
      "VCSIM_DATASTORE_DIR=$STATE/datastore" "VCSIM_CHUNKED=$CHUNKED" \
      "VCSIM_SESSION_TIMEOUT=$SESSION_TIMEOUT" "VCSIM_LEASE_TIMEOUT=$LEASE_TIMEOUT" \
      "GOVC_URL=https://127.0.0.1:$port/sdk" "GOVC_USERNAME=$VUSER" "GOVC_PASSWORD=$VPASS" \
      "GOVC_TLS_CA_CERTS=$STATE/tls/ca.pem" "GOVC_DATACENTER=$DC" "GOVMOMI_HOME=$STATE/govmomi" \
      "GOVC=$BIN/govc"; do
      printf "export %s='%s'\n" "${kv%%=*}" "${kv#*=}"
    done
  } >"$ENVFILE.tmp"
  mv "$ENVFILE.tmp" "$ENVFILE"
}

fingerprint() {
  { echo "$BIN $SCALE $BIG_DISK $CHUNKED $SESSION_TIMEOUT $LEASE_TIMEOUT $PORT $SEED $VUSER $VPASS"
    printf '%s\n' "${SEED_VMS[@]}"; } | sha256sum | cut -c1-16
}

# -------------------------------------------------------------------------------------- lease ----
lease() {
  [ -f "$ENVFILE" ] || { say "not up (no $ENVFILE)"; exit 1; }
  local p=$LEASE_VM r vm lease
  # shellcheck disable=SC1090
  . "$ENVFILE" # the credentials up used
  VUSER=$VCSIM_USERNAME VPASS=$VCSIM_PASSWORD
  [[ "$p" == /* ]] || p=/$DC/vm/$p
  soap_login || { say "login failed"; exit 1; }
  r=$(soap "<FindByInventoryPath xmlns=\"urn:vim25\"><_this type=\"SearchIndex\">SearchIndex</_this><inventoryPath>${p#/}</inventoryPath></FindByInventoryPath>")
  vm=$(grep -o '<returnval type="VirtualMachine">[^<]*' <<<"$r" | sed 's/.*>//') || true
  [ -n "$vm" ] || { say "VM $p not found"; exit 1; }
  r=$(soap "<ExportVm xmlns=\"urn:vim25\"><_this type=\"VirtualMachine\">$vm</_this></ExportVm>")
  lease=$(grep -o '<returnval type="HttpNfcLease">[^<]*' <<<"$r" | sed 's/.*>//') || true
  [ -n "$lease" ] || { say "ExportVm $p failed: $(grep -o '<faultstring>[^<]*' <<<"$r" | sed 's/.*>//') $(grep -o 'xsi:type="[^"]*"' <<<"$r" | head -1)"; exit 1; }
  r=$(soap "<RetrieveProperties xmlns=\"urn:vim25\"><_this type=\"PropertyCollector\">propertyCollector</_this><specSet><propSet><type>HttpNfcLease</type><pathSet>info</pathSet></propSet><objectSet><obj type=\"HttpNfcLease\">$lease</obj></objectSet></specSet></RetrieveProperties>")
  echo "VM=$vm"
  echo "LEASE=$lease"
  echo "COOKIE=$(awk '$6 == "vmware_soap_session" {print $7}' "$STATE/soap.cookies")"
  grep -o '<sslThumbprint>[^<]*' <<<"$r" | head -1 | sed 's/<sslThumbprint>/THUMBPRINT=/'
  grep -o '<url>[^<]*</url>' <<<"$r" | sed 's|<url>\(.*\)</url>|URL=\1|'
}

# --------------------------------------------------------------------------------- seed-load ----
# Load VMs live in folder /DC0/vm/load; their disks are 1 MiB of keystream of their own data key,
# so that two imports crossing their disks would be seen. A VM is seeded when the manifest has no
# row for it; 4 seed jobs run at once, each with its own part files, merged into the manifest.
LOAD_JOBS=4
seed_load() {
  [ -f "$ENVFILE" ] && [ -s "$MANIFEST" ] && running_pid >/dev/null ||
    { say "not up (no $ENVFILE or manifest): run up first"; exit 1; }
  local start=$SECONDS
  # shellcheck disable=SC1090
  . "$ENVFILE" # the credentials and seed up used
  VUSER=$VCSIM_USERNAME VPASS=$VCSIM_PASSWORD
  BIN=$(dirname "$GOVC") # the govc of the running world, whatever the sources say now
  export GOVC_URL=$VCSIM_SDK_URL GOVC_USERNAME=$VUSER GOVC_PASSWORD=$VPASS \
    GOVC_TLS_CA_CERTS=$STATE/tls/ca.pem GOVC_DATACENTER=$DC GOVMOMI_HOME=$STATE/govmomi \
    GOVC_PERSIST_SESSION=true GOVC_INSECURE=false
  DS_DIR=$STATE/datastore
  declare -gA USED_DIRS=()
  local -a todo=()
  local i
  for ((i = 1; i <= LOAD_COUNT; i++)); do
    awk -F'\t' -v p="/$DC/vm/load/vmi-load-$i" '$1 == "vm" && $2 == p {found = 1} END {exit !found}' \
      "$MANIFEST" || todo+=("$i")
  done
  if [ ${#todo[@]} = 0 ]; then
    say "seed-load: the $LOAD_COUNT load VMs are there already"
    return
  fi
  "$BIN/govc" folder.info "/$DC/vm/load" >/dev/null 2>&1 || g folder.create "/$DC/vm/load" >/dev/null
  # a VM left by an interrupted seed-load (in vcsim, not in the manifest) is made again
  local -A want=()
  for i in "${todo[@]}"; do want["/$DC/vm/load/vmi-load-$i"]=1; done
  local vm
  while read -r vm; do
    [ -z "${want[$vm]:-}" ] || g vm.destroy "$vm"
  done < <(g find "/$DC/vm/load" -type m)
  local job parts=$STATE/load-parts
  rm -rf "$parts"; mkdir -p "$parts"
  local -a pids=()
  for ((job = 0; job < LOAD_JOBS; job++)); do
    (
      MANIFEST=$parts/$job # seed_vm appends to $MANIFEST.tmp.{vms,disks,nics}
      local k
      for ((k = job; k < ${#todo[@]}; k += LOAD_JOBS)); do
        seed_vm load "vmi-load-${todo[$k]}" 1 1 256 bios 0 off pvscsi:1M:random "VM Network:vmxnet3"
      done
    ) &
    pids+=($!)
  done
  local rc=0 pid
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  [ "$rc" = 0 ] || fail "failed to seed the load VMs" "$SEEDLOG"
  local kind
  {
    cat "$MANIFEST"
    for kind in vms disks nics; do cat "$parts"/*.tmp."$kind" 2>/dev/null || true; done
  } >"$MANIFEST.tmp"
  mv "$MANIFEST.tmp" "$MANIFEST"
  rm -rf "$parts"
  say "seed-load: seeded ${#todo[@]} load VMs (of $LOAD_COUNT) in $((SECONDS - start)) s"
}

# ------------------------------------------------------------------------------- seed-guests ----
# Real guests (tests/world/guest/guest-world.sh): one VM per variant in /DC0/vm/guests, its disk
# the guest's streamOptimized VMDK (hard-linked from the guest cache), its NIC with the MAC the
# guest's network configuration matches.
seed_guests() {
  [ -f "$ENVFILE" ] && [ -s "$MANIFEST" ] && running_pid >/dev/null ||
    { say "not up (no $ENVFILE or manifest): run up first"; exit 1; }
  local start=$SECONDS table
  table=$("$REPO/tests/world/guest/guest-world.sh" build) || fail "failed to build the guests" /dev/null
  # shellcheck disable=SC1090
  . "$ENVFILE"
  VUSER=$VCSIM_USERNAME VPASS=$VCSIM_PASSWORD
  BIN=$(dirname "$GOVC")
  export GOVC_URL=$VCSIM_SDK_URL GOVC_USERNAME=$VUSER GOVC_PASSWORD=$VPASS \
    GOVC_TLS_CA_CERTS=$STATE/tls/ca.pem GOVC_DATACENTER=$DC GOVMOMI_HOME=$STATE/govmomi \
    GOVC_PERSIST_SESSION=true GOVC_INSECURE=false
  DS_DIR=$STATE/datastore
  local dir=/$DC/vm/guests n=0
  "$BIN/govc" folder.info "$dir" >/dev/null 2>&1 || g folder.create "$dir" >/dev/null
  local variant fw ptable drivers mac model bus guest_id ctl adapter distro raw vmdk sha bytes
  while IFS=$'\t' read -r variant fw ptable drivers mac model bus guest_id ctl adapter distro raw vmdk sha bytes; do
    [ -n "$variant" ] && [ "${variant:0:1}" != "#" ] || continue
    local name=vmi-guest-$variant path
    path=$dir/$name
    if awk -F'\t' -v p="$path" '$1 == "vm" && $2 == p {found = 1} END {exit !found}' "$MANIFEST"; then
      continue
    fi
    # a VM left by an interrupted seed-guests (in vcsim, not in the manifest) is made again
    local moref
    while read -r moref; do
      [ -z "$moref" ] || g object.destroy "$moref"
    done < <("$BIN/govc" find -i "$dir" -type m -name "$name" 2>/dev/null)
    rm -rf "${DS_DIR:?}/$name"
    g vm.create -on=false -folder "$dir" -pool "/$DC/host/DC0_C0/Resources" -ds seedds \
      -c 1 -m 512 -g "$guest_id" -firmware "$fw" -version vmx-19 \
      -disk "${bytes}B" -disk.controller "$ctl" \
      -net "VM Network" -net.adapter "$adapter" -net.address "$mac" "$name" >/dev/null
    local info file got ctype rel
    info=$(g device.info -json -vm "$path")
    IFS=$'\t' read -r file got ctype < <(jq -r '(.devices | map({(.key | tostring): .type}) | add) as $t
        | .devices[] | select(.type == "VirtualDisk")
        | [.backing.fileName, (.capacityInBytes // (.capacityInKB * 1024)), $t[.controllerKey | tostring]] | @tsv' <<<"$info")
    [ "$got" = "$bytes" ] || fail "failed to seed: $path disk has $got bytes, the guest $bytes" "$SEEDLOG"
    rel=${file#\[seedds\] }
    ln -f "$vmdk" "$DS_DIR/$rel" 2>/dev/null || cp "$vmdk" "$DS_DIR/$rel"
    rm -f "$DS_DIR/${rel%.vmdk}-flat.vmdk"
    case "$ctype" in ParaVirtualSCSIController) ctype=pvscsi ;; VirtualAHCIController) ctype=sata ;; esac
    local got_mac
    got_mac=$(jq -r '.devices[] | select(.macAddress != null) | .macAddress' <<<"$info" | head -1)
    [ "$got_mac" = "$mac" ] || fail "failed to seed: $path NIC has MAC $got_mac, the guest needs $mac" "$SEEDLOG"
    {
      printf 'disk\t%s\t0\t%s\t%s\t%s\tguest-%s\tguest\t%s\n' "$path" "$bytes" "$sha" "$file" "$variant" "$ctype" >>"$MANIFEST.tmp.disks"
      printf 'nic\t%s\t0\t%s\tVM Network\t%s\n' "$path" "$mac" "$adapter" >>"$MANIFEST.tmp.nics"
      g vm.info -json "$path" | jq -r --arg path "$path" '.virtualMachines[0] |
          ["vm", $path, .name, .self.value, .config.hardware.numCPU, (.config.hardware.numCoresPerSocket // 1),
           .config.hardware.memoryMB, .config.firmware, .runtime.powerState, .config.instanceUuid, .config.uuid,
           (.config.bootOptions.efiSecureBootEnabled // false)] | @tsv' >>"$MANIFEST.tmp.vms"
    }
    n=$((n + 1))
  done <<<"$table"
  local kind
  {
    cat "$MANIFEST"
    for kind in vms disks nics; do cat "$MANIFEST.tmp.$kind" 2>/dev/null || true; done
  } >"$MANIFEST.tmp"
  rm -f "$MANIFEST".tmp.vms "$MANIFEST".tmp.disks "$MANIFEST".tmp.nics
  mv "$MANIFEST.tmp" "$MANIFEST"
  say "seed-guests: seeded $n guest VMs in $((SECONDS - start)) s"
  printf '%s\n' "$table"
}

# ----------------------------------------------------------------------------------- commands ----
mkdir -p "$STATE"
case "$CMD" in
  build)
    build
    echo "VCSIM_EXT=$BIN/vcsim-ext"
    echo "GOVC=$BIN/govc"
    ;;
  up)
    exec 9>"$STATE/.lock"
    flock 9
    build
    fp=$(fingerprint)
    if [ "$RESTART" != 1 ] && pid=$(running_pid) && ready && [ -s "$ENVFILE" ] && [ -s "$MANIFEST" ] &&
       [ "$(cat "$STATE/fingerprint" 2>/dev/null)" = "$fp" ]; then
      say "already up: pid $pid, $(cat "$STATE/url") (--restart to reseed)"
      echo "$ENVFILE"
      exit 0
    fi
    start=$SECONDS
    stop_vcsim
    rm -f "$STATE/fingerprint"
    make_tls
    start_vcsim
    trap 'stop_vcsim' EXIT # a failed seed leaves nothing running
    seed
    write_env
    echo "$fp" >"$STATE/fingerprint"
    trap - EXIT
    say "up in $((SECONDS - start)) s: pid $(cat "$PIDFILE"), $(cat "$STATE/url"); source $ENVFILE"
    echo "$ENVFILE"
    ;;
  down)
    exec 9>"$STATE/.lock"
    flock 9
    stop_vcsim
    rm -f "$STATE/fingerprint"
    say "down"
    ;;
  status)
    if pid=$(running_pid); then
      rss=$(awk '/^VmRSS:/ {printf "%.1f MiB", $2 / 1024}' "/proc/$pid/status")
      if ready; then r=yes; else r=no; fi
      echo "vcsim: pid=$pid port=$(url_port) ready=$r rss=$rss url=$(cat "$STATE/url" 2>/dev/null) dir=$STATE"
      [ "$r" = yes ]
    else
      echo "vcsim: not running (dir=$STATE)"
      exit 1
    fi
    ;;
  env)
    [ -f "$ENVFILE" ] || { say "not up (no $ENVFILE)"; exit 1; }
    echo "$ENVFILE"
    ;;
  lease)
    resolve_bin
    lease
    ;;
  seed-load)
    exec 9>"$STATE/.lock"
    flock 9
    seed_load
    ;;
  seed-guests)
    exec 9>"$STATE/.lock"
    flock 9
    seed_guests
    ;;
  *) usage ;;
esac
