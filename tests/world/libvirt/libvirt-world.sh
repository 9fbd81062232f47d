#!/usr/bin/env bash
# libvirt-world.sh - the libvirt peer of the test world: libvirtd from Debian's packages (qemu
# driver, TCG: no /dev/kvm needed) listening only on 127.0.0.1 with TLS (a test CA, client
# certificates required) and SASL (SCRAM-SHA-256, a user of our own sasldb), a dir storage pool in
# the world's folder, and domains seeded with real disk data (qcow2 and raw, 1-3 disks and NICs,
# BIOS and EFI, running and shut off, a qcow2 with a backing chain, a LUN).
#
# libvirtd as root uses machine-wide paths (/etc/libvirt, /run, /var/lib/libvirt, ...): here it runs
# in a mount namespace of its own (unshare --mount, private propagation) where each of those paths
# is a bind mount of a folder under $STATE, so nothing outside the world's folder is written. It
# defines no network (no NAT, no bridge): running guests have qemu's user-mode NIC only; shut-off
# guests name networks and bridges that do not exist (libvirt checks them only at start).
#
# The ssh transport: an sshd of its own (Debian's openssh-server) on 127.0.0.1, a free port, with
# its own host key and one authorized client key (root, key only), started inside libvirtd's mount
# namespace so that the commands libvirt runs over ssh (virt-ssh-helper, or nc -U) reach the
# world's /run/libvirt/libvirt-sock. The client key and a known_hosts line are in $STATE/ssh.
#
# Usage: tests/world/libvirt/libvirt-world.sh up|down|status|env
#   up      start libvirtd (unless it runs), seed, write env.sh and manifest.tsv into the state dir
#   down    destroy the domains, stop sshd, libvirtd and every qemu it started (by PID); the
#           namespace and its mounts end with them
#   seed-guests  define a shut-off domain vmi-lv-guest-<variant> for the real guest disks of
#           tests/world/guest/guest-world.sh (built and cached there first: minutes the first
#           time) with virtio drivers: bios-virtio (its disk converted to a qcow2 volume) and
#           efi-virtio (raw, OVMF), 1 vCPU, 512 MiB, a virtio NIC on network lv-guests with the
#           MAC the guest's network configuration matches; rows added to manifest.tsv;
#           idempotent; not part of up's seed (the boot test's fixture libvirt-guests)
#   status  pid, port, domains, RSS
#   env     print the path of env.sh
# Paths: state dir ${WORLD_DIR:-<repo>/.world}/libvirt. Needs root (libvirtd's qemu driver).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(git -C "$HERE" rev-parse --show-toplevel 2>/dev/null || (cd "$HERE/../../.." && pwd))
STATE=${WORLD_DIR:-$REPO/.world}/libvirt
PIDFILE=$STATE/libvirtd.pid
ENVFILE=$STATE/env.sh
MANIFEST=$STATE/manifest.tsv
LOG=$STATE/log/libvirtd.log
LVUSER=vmimport
LVPASS=Libvirt-Passw0rd
POOL=vmimport-pool

say() { echo "libvirt-world: $*" >&2; }
fail() {
  echo "libvirt-world: ERROR: libvirt peer $1; log: $2" >&2
  [ -f "$2" ] && tail -n 20 "$2" | sed 's/^/    /' >&2
  [ "$CMD" != up ] || stop_all  # a failed up leaves nothing running
  exit 1
}
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

running_pid() {
  local pid
  pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -e "/proc/$pid" ] && grep -q libvirtd "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

port() { cat "$STATE/port" 2>/dev/null; }
uri() { echo "qemu+tls://127.0.0.1:$(port)/system?pkipath=$STATE/client"; }
# virsh over TLS + SASL, credentials from the world's auth file (LIBVIRT_AUTH_FILE)
vsh() { LIBVIRT_AUTH_FILE=$STATE/auth.conf virsh -q -c "$(uri)" "$@"; }

pick_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

make_tls() {
  local d=$STATE/tls
  if [ ! -s "$d/ca.pem" ] || [ ! -s "$d/client/clientcert.pem" ]; then
  rm -rf "$d"; mkdir -p "$d/client"
  (cd "$d" &&
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 -keyout ca.key -out ca.pem \
      -subj "/CN=vm-import libvirt test CA" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" &&
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout server.key -out server.csr -subj "/CN=127.0.0.1" &&
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >server.ext &&
    openssl x509 -req -sha256 -days 825 -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -out server.pem -extfile server.ext &&
    openssl req -newkey rsa:2048 -nodes -sha256 -keyout client/clientkey.pem -out client.csr \
      -subj "/O=vm-import/CN=vm-import-controller" &&
    printf '%s\n' "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth" >client.ext &&
    openssl x509 -req -sha256 -days 825 -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -out client/clientcert.pem -extfile client.ext &&
    cp ca.pem client/cacert.pem) >"$d/openssl.log" 2>&1 ||
    fail "failed to start: openssl could not make the test certificates" "$d/openssl.log"
  fi
  rm -rf "$STATE/client"
  mkdir -p "$STATE/client"
  cp "$d/client/"* "$STATE/client/"
  chmod 600 "$STATE/client/clientkey.pem"
}

write_config() {
  mkdir -p "$STATE"/{etc,run,var,log,pool,sasl}
  cat >"$STATE/libvirtd.conf" <<EOF
# written by libvirt-world.sh: TLS + SASL on 127.0.0.1 only; nothing else listens
listen_tls = 1
listen_tcp = 0
listen_addr = "127.0.0.1"
tls_port = "$(port)"
auth_tls = "sasl"
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_group = "root"
key_file = "$STATE/tls/server.key"
cert_file = "$STATE/tls/server.pem"
ca_file = "$STATE/tls/ca.pem"
tls_no_verify_certificate = 0
sasl_allowed_username_list = ["$LVUSER", "$LVUSER@*"]
log_outputs = "3:file:$LOG"
keepalive_interval = 5
EOF
  # The qemu driver as a container allows it: root, no cgroups, no per-VM namespaces, no
  # security driver, no virtlogd.
  cat >"$STATE/etc/qemu.conf" <<EOF
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
EOF
  cat >"$STATE/sasl/libvirt.conf" <<EOF
mech_list: scram-sha-256
sasldb_path: $STATE/sasl/passwd.db
EOF
  rm -f "$STATE/sasl/passwd.db"
  echo "$LVPASS" | saslpasswd2 -p -a libvirt -f "$STATE/sasl/passwd.db" "$LVUSER"
  cat >"$STATE/auth.conf" <<EOF
[credentials-world]
authname=$LVUSER
password=$LVPASS

[auth-libvirt-127.0.0.1]
credentials=world
EOF
  chmod 600 "$STATE/auth.conf"
}

start_libvirtd() {
  mkdir -p "$STATE/log"
  : >"$LOG"
  # The mount namespace: each machine-wide path libvirtd (and its qemu children) use is a bind
  # mount of our folder. /run, /var/lib, /var/log and /var/cache as a whole (inside the namespace
  # only), so that no /run/libvirt, /var/lib/libvirt, ... is made on the machine: the package does
  # not ship those folders.
  mkdir -p "$STATE/var/lib/libvirt" "$STATE/var/log/libvirt" "$STATE/var/cache/libvirt"
  # Debian's libvirtd looks its default qemu user up before it reads qemu.conf (user = "root"):
  # the namespace's /etc/passwd and /etc/group name it, the machine's are not changed.
  cp /etc/passwd "$STATE/passwd"
  cp /etc/group "$STATE/group"
  getent passwd libvirt-qemu >/dev/null ||
    echo "libvirt-qemu:x:64055:64055:vm-import test world:/nonexistent:/usr/sbin/nologin" >>"$STATE/passwd"
  getent group libvirt-qemu >/dev/null || echo "libvirt-qemu:x:64055:" >>"$STATE/group"
  getent group kvm >/dev/null || echo "kvm:x:64056:" >>"$STATE/group"
  local binds=("$STATE/etc:/etc/libvirt" "$STATE/run:/run" "$STATE/var/lib:/var/lib"
               "$STATE/var/log:/var/log" "$STATE/var/cache:/var/cache"
               "$STATE/passwd:/etc/passwd" "$STATE/group:/etc/group")
  local script="set -e"
  for b in "${binds[@]}"; do
    local src=${b%%:*} dst=${b#*:}
    [ -e "$dst" ] || { say "$dst does not exist: install libvirt-daemon first"; exit 1; }
    script+="; mount --bind '$src' '$dst'"
  done
  script+="; export SASL_CONF_PATH='$STATE/sasl'"
  script+="; exec libvirtd -f '$STATE/libvirtd.conf' --listen"
  (
    for fd in "/proc/$BASHPID/fd/"*; do
      fd=${fd##*/}
      [ "$fd" -le 2 ] || eval "exec $fd>&-"
    done
    exec setsid unshare --mount --propagation private -- bash -c "$script" \
      >"$STATE/log/libvirtd.stdout" 2>&1 </dev/null
  ) &
  local pid=$!
  echo "$pid" >"$PIDFILE"
  for _ in $(seq 300); do
    [ -e "/proc/$pid" ] || fail "failed to start (libvirtd exited)" "$STATE/log/libvirtd.stdout"
    if vsh version >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.2
  done
  fail "failed to start: no TLS+SASL connection within 60 s" "$LOG"
}

SSHD_PIDFILE=$STATE/run/sshd-world.pid  # /run/sshd-world.pid inside the namespace

sshd_pid() {
  local pid
  pid=$(cat "$SSHD_PIDFILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -e "/proc/$pid" ] && grep -q '^sshd' "/proc/$pid/comm" 2>/dev/null || return 1
  echo "$pid"
}

start_sshd() {
  [ -x /usr/sbin/sshd ] || "$REPO/tools/install-deps.sh" --quiet
  [ -x /usr/sbin/sshd ] || { say "no /usr/sbin/sshd: install openssh-server"; exit 1; }
  local d=$STATE/ssh lvpid
  lvpid=$(running_pid) || fail "libvirtd is not running" "$LOG"
  mkdir -p "$d" "$STATE/run/sshd"
  chmod 755 "$STATE/run/sshd"
  [ -s "$d/host_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C vm-import-world-host -f "$d/host_ed25519"
  [ -s "$d/client_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C vm-import-test -f "$d/client_ed25519"
  [ -s "$d/other_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C not-authorized -f "$d/other_ed25519"
  cp "$d/client_ed25519.pub" "$d/authorized_keys"
  chmod 600 "$d/authorized_keys" "$d/host_ed25519" "$d/client_ed25519" "$d/other_ed25519"
  pick_port >"$STATE/ssh_port"
  local port; port=$(cat "$STATE/ssh_port")
  echo "[127.0.0.1]:$port $(cut -d' ' -f1,2 "$d/host_ed25519.pub")" >"$d/known_hosts"
  cat >"$d/sshd_config" <<EOF
# written by libvirt-world.sh: 127.0.0.1 only, one key, root (libvirtd's unix socket)
Port $port
ListenAddress 127.0.0.1
HostKey $d/host_ed25519
AuthorizedKeysFile $d/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile /run/sshd-world.pid
LogLevel VERBOSE
EOF
  rm -f "$SSHD_PIDFILE"
  # Inside libvirtd's mount namespace (its /run holds the world's libvirt-sock).
  nsenter --mount="/proc/$lvpid/ns/mnt" -- /usr/sbin/sshd -f "$d/sshd_config" \
    -E "$STATE/log/sshd.log" </dev/null >/dev/null 2>&1 9>&- ||
    fail "sshd did not start" "$STATE/log/sshd.log"
  for _ in $(seq 50); do
    sshd_pid >/dev/null && return 0
    sleep 0.1
  done
  fail "sshd wrote no pid file" "$STATE/log/sshd.log"
}

# Disk data: the AES-128-CTR keystream of openssl for password <key>, cut to size.
stream() { { openssl enc -aes-128-ctr -pbkdf2 -nosalt -pass "pass:$1" </dev/zero 2>/dev/null || true; }; }
# raw_file KEY BYTES PATH: random data
raw_file() { stream "$1" | head -c "$2" >"$3"; }

# vol NAME FORMAT KEY BYTES: a volume of the pool holding BYTES of data KEY (qcow2: converted
# from that raw data); prints the sha256 of the raw disk
vol() {
  local name=$1 fmt=$2 key=$3 bytes=$4 p=$STATE/pool
  raw_file "$key" "$bytes" "$STATE/tmp.raw"
  local sha; sha=$(sha256sum "$STATE/tmp.raw" | cut -d' ' -f1)
  if [ "$fmt" = qcow2 ]; then
    qemu-img convert -q -f raw -O qcow2 "$STATE/tmp.raw" "$p/$name"
    rm -f "$STATE/tmp.raw"
  else
    mv "$STATE/tmp.raw" "$p/$name"
  fi
  echo "$sha"
}

disk_xml() { # DEV BUS FILE FORMAT [BOOTORDER]
  local boot=""
  [ -z "${5:-}" ] || boot="<boot order='$5'/>"
  echo "<disk type='file' device='disk'><driver name='qemu' type='$4'/><source file='$STATE/pool/$3'/><target dev='$1' bus='$2'/>$boot</disk>"
}

define() { # NAME XML-FILE
  vsh define "$2" >/dev/null
}

seed() {
  vsh pool-define-as "$POOL" dir --target "$STATE/pool" >/dev/null
  vsh pool-start "$POOL" >/dev/null
  : >"$MANIFEST.tmp"
  local s1 s2 s3 d
  # vmi-lv-multi: running, BIOS, 2 disks (qcow2 virtio boot, raw sata of an odd size), 2 user NICs
  s1=$(vol multi-boot.qcow2 qcow2 lv-multi-boot $((8 * 1048576)))
  s2=$(vol multi-data.raw raw lv-multi-data $((3 * 1048576 + 4096)))
  cat >"$STATE/dom.xml" <<EOF
<domain type='qemu'>
  <name>vmi-lv-multi</name><uuid>5a1e0001-0000-4000-8000-000000000001</uuid>
  <memory unit='MiB'>16</memory><vcpu>2</vcpu>
  <cpu><topology sockets='1' dies='1' cores='2' threads='1'/></cpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    $(disk_xml vda virtio multi-boot.qcow2 qcow2 1)
    $(disk_xml sda sata multi-data.raw raw)
    <interface type='user'><mac address='52:54:00:a0:00:01'/><model type='virtio'/><rom enabled='no'/></interface>
    <interface type='user'><mac address='52:54:00:a0:00:02'/><model type='e1000'/><rom enabled='no'/></interface>
    <video><model type='none'/></video><memballoon model='none'/>
  </devices>
</domain>
EOF
  define vmi-lv-multi "$STATE/dom.xml"
  printf 'vm\tvmi-lv-multi\t5a1e0001-0000-4000-8000-000000000001\trunning\tbios\n' >>"$MANIFEST.tmp"
  printf 'disk\tvmi-lv-multi\t0\t%s\t%s\n' "$s1" multi-boot.qcow2 >>"$MANIFEST.tmp"
  printf 'disk\tvmi-lv-multi\t1\t%s\t%s\n' "$s2" multi-data.raw >>"$MANIFEST.tmp"

  # vmi-lv-efi: shut off, EFI + secure boot + TPM, 3 disks, 3 NICs on networks and a bridge
  s1=$(vol efi-boot.raw raw lv-efi-boot $((6 * 1048576)))
  s2=$(vol efi-data1.qcow2 qcow2 lv-efi-data1 $((2 * 1048576)))
  s3=$(vol efi-data2.raw raw lv-efi-data2 $((1048576 + 512)))
  cat >"$STATE/dom.xml" <<EOF
<domain type='qemu'>
  <name>vmi-lv-efi</name><uuid>5a1e0002-0000-4000-8000-000000000002</uuid>
  <memory unit='KiB'>2097152</memory><currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu>4</vcpu>
  <cpu><topology sockets='2' dies='1' cores='2' threads='1'/></cpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <loader readonly='yes' secure='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.ms.fd</loader>
    <nvram>$STATE/var/lib/libvirt/vmi-lv-efi_VARS.fd</nvram>
  </os>
  <features><acpi/><smm state='on'/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    $(disk_xml sda scsi efi-boot.raw raw 1)
    $(disk_xml vdb virtio efi-data1.qcow2 qcow2)
    $(disk_xml vdc virtio efi-data2.raw raw)
    <controller type='scsi' model='virtio-scsi'/>
    <interface type='network'><mac address='52:54:00:b0:00:01'/><source network='lv-prod'/><model type='virtio'/></interface>
    <interface type='network'><mac address='52:54:00:b0:00:02'/><source network='lv-backup'/><model type='e1000e'/></interface>
    <interface type='bridge'><mac address='52:54:00:b0:00:03'/><source bridge='br-lv0'/><model type='rtl8139'/></interface>
    <tpm model='tpm-crb'><backend type='passthrough'><device path='/dev/tpm0'/></backend></tpm>
  </devices>
</domain>
EOF
  define vmi-lv-efi "$STATE/dom.xml"
  printf 'vm\tvmi-lv-efi\t5a1e0002-0000-4000-8000-000000000002\tshutoff\tefi\n' >>"$MANIFEST.tmp"
  printf 'disk\tvmi-lv-efi\t0\t%s\t%s\n' "$s1" efi-boot.raw >>"$MANIFEST.tmp"
  printf 'disk\tvmi-lv-efi\t1\t%s\t%s\n' "$s2" efi-data1.qcow2 >>"$MANIFEST.tmp"
  printf 'disk\tvmi-lv-efi\t2\t%s\t%s\n' "$s3" efi-data2.raw >>"$MANIFEST.tmp"

  # vmi-lv-one: running, BIOS, one raw disk, one user NIC (the quick cancel, the kill mid-stream:
  # its disk is the largest)
  s1=$(vol one.raw raw lv-one $((24 * 1048576)))
  cat >"$STATE/dom.xml" <<EOF
<domain type='qemu'>
  <name>vmi-lv-one</name><uuid>5a1e0003-0000-4000-8000-000000000003</uuid>
  <memory unit='MiB'>16</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    $(disk_xml vda virtio one.raw raw)
    <interface type='user'><mac address='52:54:00:c0:00:01'/><model type='virtio'/><rom enabled='no'/></interface>
    <video><model type='none'/></video><memballoon model='none'/>
  </devices>
</domain>
EOF
  define vmi-lv-one "$STATE/dom.xml"
  printf 'vm\tvmi-lv-one\t5a1e0003-0000-4000-8000-000000000003\trunning\tbios\n' >>"$MANIFEST.tmp"
  printf 'disk\tvmi-lv-one\t0\t%s\t%s\n' "$s1" one.raw >>"$MANIFEST.tmp"

  # vmi-lv-chain: shut off, a qcow2 overlay on a qcow2 base (refused: not flattened)
  s1=$(vol chain-base.qcow2 qcow2 lv-chain $((1048576)))
  qemu-img create -q -f qcow2 -F qcow2 -b "$STATE/pool/chain-base.qcow2" "$STATE/pool/chain-top.qcow2"
  # vmi-lv-lun: shut off, a raw LUN (refused: not a volume libvirt can stream)
  s2=$(vol lun-ok.raw raw lv-lun $((1048576)))
  for n in chain lun; do
    local disks
    if [ $n = chain ]; then
      disks=$(disk_xml vda virtio chain-top.qcow2 qcow2)
    else
      disks="$(disk_xml vda virtio lun-ok.raw raw)<disk type='block' device='lun'><driver name='qemu' type='raw'/><source dev='/dev/vmimport-no-such-lun'/><target dev='sdb' bus='scsi'/></disk>"
    fi
    cat >"$STATE/dom.xml" <<EOF
<domain type='qemu'>
  <name>vmi-lv-$n</name>
  <memory unit='MiB'>64</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>$disks<interface type='network'><mac address='52:54:00:d0:00:0$([ $n = chain ] && echo 1 || echo 2)'/><source network='lv-prod'/></interface></devices>
</domain>
EOF
    define "vmi-lv-$n" "$STATE/dom.xml"
  done
  rm -f "$STATE/dom.xml"
  vsh pool-refresh "$POOL" >/dev/null
  for d in vmi-lv-multi vmi-lv-one; do
    vsh start "$d" >/dev/null || fail "could not start domain $d" "$STATE/var/log/libvirt/qemu/$d.log"
  done
  mv "$MANIFEST.tmp" "$MANIFEST"
}

# Every qemu the namespace's libvirtd started: its pidfiles (they live in our /run).
qemu_pids() {
  local f pid
  for f in "$STATE"/run/libvirt/qemu/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null) || continue
    [ -n "$pid" ] && [ -e "/proc/$pid" ] && grep -q '^qemu-system' "/proc/$pid/comm" 2>/dev/null &&
      grep -q "$STATE" "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
  done
  true
}

stop_all() {
  local pid
  if pid=$(running_pid); then
    for d in $(vsh list --name 2>/dev/null); do
      vsh destroy "$d" >/dev/null 2>&1 || true
    done
  fi
  for q in $(qemu_pids); do kill -9 "$q" 2>/dev/null || true; done
  if pid=$(sshd_pid); then
    kill "$pid" 2>/dev/null || true
  fi
  if pid=$(running_pid); then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE" "$ENVFILE"
}

write_env() {
  cat >"$ENVFILE.tmp" <<EOF
# generated by libvirt-world.sh up
export LIBVIRT_URI='qemu+tls://127.0.0.1:$(port)/system'
export LIBVIRT_PKI='$STATE/client'
export LIBVIRT_USER='$LVUSER'
export LIBVIRT_PASSWORD='$LVPASS'
export LIBVIRT_MANIFEST='$MANIFEST'
export LIBVIRT_POOL_DIR='$STATE/pool'
export LIBVIRT_POOL='$POOL'
export LIBVIRT_WORLD_AUTH_FILE='$STATE/auth.conf'
export LIBVIRT_WORLD_PID='$(cat "$PIDFILE")'
export LIBVIRT_SSH_URI='qemu+ssh://root@127.0.0.1:$(cat "$STATE/ssh_port")/system'
export LIBVIRT_SSH_KEY='$STATE/ssh/client_ed25519'
export LIBVIRT_SSH_OTHER_KEY='$STATE/ssh/other_ed25519'
export LIBVIRT_SSH_KNOWN_HOSTS='$STATE/ssh/known_hosts'
EOF
  mv "$ENVFILE.tmp" "$ENVFILE"
}

# Real guests: one shut-off domain per virtio variant of the guest table.
seed_guests() {
  running_pid >/dev/null && [ -s "$MANIFEST" ] || { say "not up: run up first"; exit 1; }
  local start=$SECONDS table
  table=$("$REPO/tests/world/guest/guest-world.sh" build) ||
    fail "failed to build the guests" /dev/null
  local variant fw ptable drivers mac model bus gid ctl adapter distro raw vmdk sha bytes
  while IFS=$'\t' read -r variant fw ptable drivers mac model bus gid ctl adapter distro raw vmdk sha bytes; do
    [ -n "$variant" ] && [ "${variant:0:1}" != "#" ] && [ "$drivers" = virtio ] || continue
    local name=vmi-lv-guest-$variant vol fmt os
    grep -q "^vm	$name	" "$MANIFEST" && continue
    if [ "$fw" = efi ]; then
      vol=guest-$variant.raw fmt=raw
      cp --reflink=auto --sparse=always "$raw" "$STATE/pool/$vol"  # never a hard link: the cache stays intact
      os="<type arch='x86_64' machine='q35'>hvm</type><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE_4M.fd</loader><nvram>$STATE/var/lib/libvirt/${name}_VARS.fd</nvram>"
    else
      vol=guest-$variant.qcow2 fmt=qcow2
      qemu-img convert -q -f raw -O qcow2 "$raw" "$STATE/pool/$vol"
      os="<type arch='x86_64' machine='pc'>hvm</type>"
    fi
    local uuid
    uuid=$(python3 -c "import uuid,sys; print(uuid.uuid5(uuid.NAMESPACE_DNS, sys.argv[1]))" "$name.vm-import.test")
    cat >"$STATE/dom.xml" <<EOF
<domain type='qemu'>
  <name>$name</name><uuid>$uuid</uuid>
  <memory unit='MiB'>512</memory><vcpu>1</vcpu>
  <os>$os</os>
  <features><acpi/></features>
  <devices>
    $(disk_xml vda virtio "$vol" "$fmt" 1)
    <interface type='network'><mac address='$mac'/><source network='lv-guests'/><model type='virtio'/></interface>
  </devices>
</domain>
EOF
    define "$name" "$STATE/dom.xml"
    rm -f "$STATE/dom.xml"
    printf 'vm\t%s\t%s\tshutoff\t%s\n' "$name" "$uuid" "$fw" >>"$MANIFEST"
    printf 'disk\t%s\t0\t%s\t%s\n' "$name" "$sha" "$vol" >>"$MANIFEST"
  done <<<"$table"
  vsh pool-refresh "$POOL" >/dev/null
  say "guests seeded in $((SECONDS - start)) s"
}

CMD=${1:-}
[ -n "$CMD" ] || usage
case "$CMD" in
  up)
    [ "$(id -u)" = 0 ] || { say "needs root (libvirtd's qemu driver)"; exit 1; }
    mkdir -p "$STATE"
    exec 9>"$STATE/.lock"
    flock 9
    if running_pid >/dev/null && [ -f "$ENVFILE" ]; then
      say "already up"
      exit 0
    fi
    stop_all
    trap 'rc=$?; [ $rc = 0 ] || { say "up failed (exit $rc): stopping what it started"; stop_all; }' EXIT
    start=$(date +%s)
    # A fresh world each time: the state of an earlier run (domains, pool, qemu state) goes.
    rm -rf "$STATE"/{etc,run,var,log,pool,sasl,client}
    make_tls
    pick_port >"$STATE/port"
    write_config
    start_libvirtd
    start_sshd
    seed
    write_env
    say "up in $(( $(date +%s) - start )) s: $(uri)"
    ;;
  seed-guests)
    [ "$(id -u)" = 0 ] || { say "needs root"; exit 1; }
    exec 9>"$STATE/.lock"
    flock 9
    seed_guests
    ;;
  down)
    mkdir -p "$STATE"
    exec 9>"$STATE/.lock"
    flock 9
    stop_all
    say "down"
    ;;
  status)
    if pid=$(running_pid); then
      rss=$(awk '/^VmRSS:/ {printf "%.1f MiB", $2 / 1024}' "/proc/$pid/status")
      echo "libvirt: pid=$pid port=$(port) rss=$rss qemu=$(qemu_pids | tr '\n' ' ') dir=$STATE"
      echo "sshd: pid=$(sshd_pid || echo none) port=$(cat "$STATE/ssh_port" 2>/dev/null)"
      vsh list --all
    else
      echo "libvirt: not running (dir=$STATE)"
      exit 1
    fi
    ;;
  env)
    [ -f "$ENVFILE" ] || { say "not up (no $ENVFILE)"; exit 1; }
    echo "$ENVFILE"
    ;;
  *) usage ;;
esac
