#!/bin/bash
# openstack-world.sh - the OpenStack peer of the test world: a minimal, REAL OpenStack Zed from
# Debian 12's own packages, on this machine, loopback only, seeded with the servers the OpenStack
# world tests import. (Started from ../shared/peers/openstack-up.sh; owned here since.)
#
# Usage: tests/world/openstack/openstack-world.sh COMMAND
#   up        install the Debian packages (first time; idempotent), configure, start every
#             service, seed the fixtures, write $WORLD_DIR/openstack/env.sh. Rerunnable: a peer
#             that already runs with its fixtures is only checked (a few seconds).
#   down      stop every service this script started (by PID file); unmount the bind mount
#   status    which services run, which ports listen, their memory
#   env       print the path of env.sh (source it: OS_* and the fixture ids)
#   fixtures  (re)build the test fixtures (servers, volumes, networks) and env.sh
#   smoke     the import's API sequence end to end with the openstack CLI + curl, bytes checked
#   seed-guests
#             the real guest OS disks of tests/world/guest (guest-world.sh build: cached, built
#             the first time) as servers vmi-guest-<variant>, as OpenStack would hold them: a
#             Glance image per guest with os_type=linux, os_distro=debian, hw_disk_bus (virtio,
#             or sata for the SATA-only guest), hw_vif_model (virtio or e1000e) and, for the EFI
#             guest, hw_firmware_type=uefi; a bootable 1 GiB Cinder volume made from the image (its
#             volume_image_metadata carries those properties); a port on private with the MAC
#             the guest configures its network by; the server booted from the volume. Idempotent
#             (a server of that name that is ACTIVE or SHUTOFF is kept); writes the ids to env.sh
#             (OPENSTACK_GUEST_<VARIANT>_ID, variant upper-cased, '-' as '_'); a server an import
#             powered off (SHUTOFF) is kept too
#   restart-service NAME
#             stop one of the OpenStack services below (glance-api ... cinder-volume; not mariadb,
#             rabbitmq, keystone) and start it again, waiting until the APIs answer (the
#             reliability tests restart one mid-upload)
#   reset     down, then drop all databases and stored data (next up starts from scratch)
#
# What runs (all on 127.0.0.1, all as root, started in the background, no systemd needed):
# mariadb :3306, rabbitmq :5672 (+epmd :4369, dist :25672), keystone :5000 (uwsgi), glance-api
# :9292 (file store), placement :8778 (uwsgi), nova-api :8774 + conductor + scheduler + compute
# (fake virt driver: nova.virt.fake.FakeDriver), cinder-api :8776 + scheduler + volume (NFS driver
# over a bind-mounted local directory, no kernel NFS needed), neutron-server :9696 (ML2, "local"
# networks, no agents). The ports are fixed: one such peer per machine.
#
# Small shims (written by this script, see write_shims):
#  * neutron ML2 mechanism driver "ostest_loopback": binds every port
#    (there is no L2 agent; without a binder nova gets binding_failed).
#  * cinder driver ostest_shims.cinder_nfs.LoopbackNfsDriver: the stock
#    NfsDriver, except that snapshots of attached volumes are done by cinder
#    itself (qemu-img) instead of asking the hypervisor (nova "assisted
#    snapshots", which the fake virt driver does not implement), and that a
#    volume being uploaded to an image may be cloned (Zed's NFS driver refuses
#    the 'uploading' state, which image_upload_use_cinder_backend clones in).
#  * a `mount` on glance-api's PATH that turns `mount -t nfs 127.0.0.1:/DIR MP` into a bind mount
#    of DIR, the stand-in for the NFS export the cinder driver uses the same way; every other
#    mount is passed to /bin/mount unchanged. Its `umount` also removes the mount point's folder
#    (glance_store 4.1 leaves it, and then fails to mount there again).
#  * cinder driver LoopbackNfsImageDriver for backend nfs2: a clone of a volume being uploaded
#    is a plain copy of its file (see the class).
#
# Glance has two stores: "fs" (file, the default) and "cinder". Cinder's backend nfs2
# (volume type vmi-cinder-images) has image_upload_use_cinder_backend: uploading one of its
# volumes to an image clones the volume and registers it as the image's location
# (cinder://<volume id>) instead of sending the bytes, and Glance then has no os_hash_value
# for the image (Zed computes none for a location); a download is read by glance's cinder
# store from the cloned volume's file.
#
# Fixtures (rebuilt whenever nova-compute starts: the fake driver forgets its servers):
#   networks private (192.0.2.0/24) and private2 (198.51.100.0/24), flavor m1.small (2 vCPU,
#   2048 MiB); image vmi-image (1 MiB raw, hw_firmware_type=uefi, hw_disk_bus=scsi,
#   hw_vif_model=e1000e); server vmi-multi booted from volume vmi-multi-boot (1 GiB, from the
#   image) with data volume vmi-multi-data (1 GiB) and one port on each network; vmi-one booted
#   from volume vmi-one-boot (1 GiB, from the image) with a port on private; vmi-two booted from
#   the blank volume vmi-two-boot (1 GiB, no image properties: BIOS) with a port on private2; two
#   servers named vmi-dup and one vmi-novol, booted from the image (no volume); vmi-cinderimg
#   booted from the blank volume vmi-cinderimg-boot (1 GiB, type vmi-cinder-images: its image
#   upload is the location shortcut above) with a port on private.
# Tests put known bytes into a volume by writing its backing file: OPENSTACK_NFS_MOUNTPOINT/
# volume-<id> (the active file named in volume-<id>.info once a snapshot exists).
#
# Knobs (environment): OSTEST_PASSWORD (default ostest), OSTEST_DEBUG=1, WORLD_DIR (default
# <repo>/.world). Logs: /var/log/ostest/<service>.log, db-sync.log; state: /var/lib/ostest.
set -euo pipefail

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive
unset PYTHONPATH PYTHONHOME || true

PW=${OSTEST_PASSWORD:-ostest}
DEBUG=$([ "${OSTEST_DEBUG:-0}" = 1 ] && echo true || echo false)
REGION=RegionOne
HOSTIP=127.0.0.1
STATE=/var/lib/ostest
RUN=$STATE/run
LOG=/var/log/ostest
NFS_EXPORT=$STATE/nfs-export
NFS_SHARE="$HOSTIP:$NFS_EXPORT"
NFS_MNT_BASE=/var/lib/cinder/mnt
GLANCE_MNT_BASE=/var/lib/glance/mnt
GLANCE_BIN=$STATE/glance-bin
COMPUTE_HOST=ostest-compute
PY=/usr/bin/python3
SHIMS=/usr/local/lib/python3.11/dist-packages
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
WSTATE=${WORLD_DIR:-$REPO/.world}/openstack
ENVFILE=$WSTATE/env.sh
STARTED_COMPUTE=0

PACKAGES="keystone glance cinder-api cinder-scheduler cinder-volume nova-api
nova-conductor nova-scheduler nova-compute nova-compute-ironic placement-api
neutron-server python3-openstackclient rabbitmq-server mariadb-server
nfs-common qemu-utils python3-pymysql python3-osc-placement curl"

log() { echo "[openstack-world $(date +%H:%M:%S)] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
# fail SERVICE WHAT [LOGFILE]: one clear line naming the service and its log, then the log's tail
fail() {
  local logf=${3:-$LOG/$1.log}
  echo "openstack-world: ERROR: $1 $2; log: $logf" >&2
  [ -f "$logf" ] && tail -n 20 "$logf" | sed 's/^/    /' >&2
  exit 1
}
# step SERVICE WHAT CMD...: runs CMD with its output in db-sync.log; fails naming SERVICE
step() {
  local svc=$1 what=$2; shift 2
  echo "=== $svc: $what ($(date +%T))" >>"$LOG/db-sync.log"
  "$@" >>"$LOG/db-sync.log" 2>&1 || fail "$svc" "$what failed (exit $?)" "$LOG/db-sync.log"
}

# ---------------------------------------------------------------- install
install_packages() {
  local missing=""
  for p in $PACKAGES; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing="$missing $p"
  done
  [ -z "$missing" ] && { log "packages already installed"; return; }
  log "installing:$missing"
  # keep the packages' maintainer scripts from starting daemons (no systemd here)
  local prc=/usr/sbin/policy-rc.d had_prc=0
  [ -e $prc ] && had_prc=1 || { printf '#!/bin/sh\nexit 101\n' > $prc; chmod +x $prc; }
  apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null
  # nova-compute needs *some* hypervisor flavour package; ironic's is the
  # lightest (no libvirt/qemu-system); we use the fake driver anyway.
  apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
    $missing
  [ $had_prc = 1 ] || rm -f $prc
}

# ---------------------------------------------------------------- helpers
pidfile() { echo "$RUN/$1.pid"; }
running() { local f; f=$(pidfile "$1"); [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

start_bg() {  # name cmd...
  local name=$1; shift
  if running "$name"; then log "$name already running (pid $(cat "$(pidfile "$name")"))"; return; fi
  log "starting $name"
  setsid nohup "$@" >>"$LOG/$name.log" 2>&1 < /dev/null &
  echo $! > "$(pidfile "$name")"
  [ "$name" != nova-compute ] || STARTED_COMPUTE=1
}

wait_port() {  # port name [timeout]
  local port=$1 name=$2 t=${3:-120} i=0
  while ! (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; do
    i=$((i+1)); [ $i -gt "$t" ] && fail "$name" "did not open port $port within $t s"
    running "$name" || fail "$name" "exited before opening port $port"
    sleep 1
  done
}

wait_http() {  # url name [timeout]
  local url=$1 name=$2 t=${3:-120} i=0
  while ! curl -s -o /dev/null -m 5 "$url"; do
    i=$((i+1)); [ $i -gt "$t" ] && fail "$name" "did not answer $url within $t s"
    running "$name" || fail "$name" "exited before answering $url"
    sleep 1
  done
}

stop_one() {  # name: TERM the process group we started, then KILL
  local name=$1 f pid i
  f=$(pidfile "$name"); [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

authtoken() {  # service-user
  cat <<EOF
[keystone_authtoken]
www_authenticate_uri = http://$HOSTIP:5000
auth_url = http://$HOSTIP:5000
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $PW
region_name = $REGION
service_token_roles_required = true
service_token_roles = service
EOF
}

ksauth() {  # section user
  cat <<EOF
[$1]
auth_url = http://$HOSTIP:5000
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $2
password = $PW
region_name = $REGION
EOF
}

db_url() { echo "mysql+pymysql://$1:$PW@$HOSTIP/$2?charset=utf8"; }
RABBIT="rabbit://openstack:$PW@$HOSTIP:5672/"

# ---------------------------------------------------------------- shims
write_shims() {
  mkdir -p $SHIMS/ostest_shims $SHIMS/ostest_shims-1.0.dist-info
  cat > $SHIMS/ostest_shims/__init__.py <<'EOF'
"""Tiny adapters that let stock OpenStack Zed run on one box without a
hypervisor, an L2 agent or kernel NFS (see openstack-up.sh)."""
EOF
  cat > $SHIMS/ostest_shims/neutron_mech.py <<'EOF'
"""ML2 mechanism driver that binds every port on every host (no agent)."""
from neutron_lib.api.definitions import portbindings
from neutron_lib import constants
from neutron_lib.plugins.ml2 import api


class LoopbackMechanismDriver(api.MechanismDriver):
    def initialize(self):
        pass

    @property
    def connectivity(self):
        return portbindings.CONNECTIVITY_L2

    def bind_port(self, context):
        vnic = context.current.get(portbindings.VNIC_TYPE,
                                   portbindings.VNIC_NORMAL)
        if vnic != portbindings.VNIC_NORMAL:
            return
        for segment in context.segments_to_bind:
            context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OVS,
                                {portbindings.CAP_PORT_FILTER: False},
                                status=constants.PORT_STATUS_ACTIVE)
            return
EOF
  cat > $SHIMS/ostest_shims/cinder_nfs.py <<'EOF'
"""Stock cinder NFS driver; snapshots of attached volumes are taken by
cinder (qemu-img) like detached ones, because the hypervisor is nova's fake
driver, which holds no file open and implements no assisted snapshots."""
import os

from oslo_utils import units

from cinder.image import image_utils
from cinder.volume.drivers import nfs


class LoopbackNfsDriver(nfs.NfsDriver):
    def _is_volume_attached(self, volume):
        return False


class LoopbackNfsImageDriver(LoopbackNfsDriver):
    """The backend whose uploads to an image are clones registered by location
    (image_upload_use_cinder_backend). Cinder clones the volume while it is
    'uploading', which Zed's NFS driver refuses (its clone goes through a temporary
    qcow2 snapshot of the source, which must not change under a reader). Here a
    clone of a volume without snapshots is a plain copy of its file, as the SMBFS
    driver does (_always_use_temp_snap_when_cloning = False), and the uploading
    source, only read, passes the state check."""

    _always_use_temp_snap_when_cloning = False

    def _create_cloned_volume(self, volume, src_vref, context):
        if src_vref.status == 'uploading':
            src_vref = _Uploading(src_vref)
        return super()._create_cloned_volume(volume, src_vref, context)

    def _extend_volume(self, volume, size_gb):
        # the plain-copy clone grows the copy to the new volume's size (SMBFS has its own)
        path = self.local_path(volume)
        if os.path.getsize(path) < size_gb * units.Gi:
            image_utils.resize_image(path, size_gb, run_as_root=self._execute_as_root)


class _Uploading:
    """A read-only view of a volume being uploaded that passes the clone's state check."""

    def __init__(self, volume):
        self._volume = volume

    status = 'available'

    def __getattr__(self, name):
        return getattr(self._volume, name)
EOF
  mkdir -p $GLANCE_BIN
  cat > $GLANCE_BIN/mount <<EOF
#!/bin/sh
# glance-api's mount (openstack-world.sh): "mount -t nfs [OPTIONS] $HOSTIP:/DIR MOUNTPOINT" binds
# the local DIR, the stand-in for the NFS export; anything else goes to the real mount.
if [ "\$1" = -t ] && [ "\$2" = nfs ]; then
  for a; do src=\$dst; dst=\$a; done
  case \$src in
    $HOSTIP:/*) exec /bin/mount --bind "\${src#$HOSTIP:}" "\$dst" ;;
  esac
  echo "glance mount shim: only exports on $HOSTIP are served here: \$src" >&2
  exit 32
fi
exec /bin/mount "\$@"
EOF
  # glance_store 4.1 leaves the mount point's folder behind when it unmounts, and its next mount
  # then fails in os.makedirs (FileExistsError): remove the folder with the mount, as later
  # glance_store versions do
  cat > $GLANCE_BIN/umount <<EOF
#!/bin/sh
/bin/umount "\$@" || exit
for a; do mp=\$a; done
case \$mp in $GLANCE_MNT_BASE/nfs/*) rmdir "\$mp" 2>/dev/null ;; esac
exit 0
EOF
  chmod 755 $GLANCE_BIN/mount $GLANCE_BIN/umount
  cat > $SHIMS/ostest_shims-1.0.dist-info/METADATA <<'EOF'
Metadata-Version: 2.1
Name: ostest-shims
Version: 1.0
EOF
  cat > $SHIMS/ostest_shims-1.0.dist-info/entry_points.txt <<'EOF'
[neutron.ml2.mechanism_drivers]
ostest_loopback = ostest_shims.neutron_mech:LoopbackMechanismDriver
EOF
  : > $SHIMS/ostest_shims-1.0.dist-info/RECORD
}

# ---------------------------------------------------------------- configs
backup_once() { [ -f "$1" ] && [ ! -f "$1.debian-orig" ] && cp -p "$1" "$1.debian-orig" || true; }

write_configs() {
  mkdir -p $STATE $RUN $LOG $NFS_EXPORT $NFS_MNT_BASE $GLANCE_MNT_BASE /var/lib/glance/images \
    /var/lib/cinder/tmp /var/lib/cinder/conversion /var/lib/nova/instances \
    /var/lib/neutron /var/lib/placement /run/mysqld
  chown mysql:mysql /run/mysqld

  # --- mariadb: loopback only
  cat > /etc/mysql/mariadb.conf.d/99-ostest.cnf <<EOF
[mysqld]
bind-address = $HOSTIP
port = 3306
max_connections = 500
skip-name-resolve
innodb_buffer_pool_size = 128M
EOF

  # --- rabbitmq: loopback only (amqp, erlang distribution, epmd)
  cat > /etc/rabbitmq/rabbitmq-env.conf <<EOF
NODENAME=rabbit@localhost
NODE_IP_ADDRESS=$HOSTIP
NODE_PORT=5672
export ERL_EPMD_ADDRESS=$HOSTIP
EOF
  cat > /etc/rabbitmq/rabbitmq.conf <<EOF
listeners.tcp.default = $HOSTIP:5672
distribution.listener.interface = $HOSTIP
distribution.listener.port_range.min = 25672
distribution.listener.port_range.max = 25672
EOF

  # --- keystone
  backup_once /etc/keystone/keystone.conf
  cat > /etc/keystone/keystone.conf <<EOF
[DEFAULT]
debug = $DEBUG
[database]
connection = $(db_url keystone keystone)
[token]
provider = fernet
[fernet_tokens]
key_repository = /etc/keystone/fernet-keys/
[credential]
key_repository = /etc/keystone/credential-keys/
EOF
  cat > $STATE/keystone-uwsgi.ini <<EOF
[uwsgi]
plugins = python3
master = true
http-socket = $HOSTIP:5000
wsgi-file = /usr/bin/keystone-wsgi-public
processes = 2
threads = 4
enable-threads = true
lazy-apps = true
die-on-term = true
buffer-size = 65535
# clients must not reuse connections: uwsgi's http-socket closes them
add-header = Connection: close
chdir = /var/lib/keystone
EOF

  # --- glance (file store; cinder store for images cinder registers by location)
  backup_once /etc/glance/glance-api.conf
  cat > /etc/glance/glance-api.conf <<EOF
[DEFAULT]
debug = $DEBUG
bind_host = $HOSTIP
bind_port = 9292
workers = 1
enabled_backends = fs:file, cinder:cinder
# cinder's image_upload_use_cinder_backend adds a location to the image (PATCH /locations)
show_multiple_locations = true
[database]
connection = $(db_url glance glance)
$(authtoken glance)
[paste_deploy]
flavor = keystone
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = /var/lib/glance/images/
[cinder]
cinder_catalog_info = volumev3::publicURL
cinder_mount_point_base = $GLANCE_MNT_BASE
rootwrap_config = /etc/glance/rootwrap.conf
[os_glance_tasks_store]
filesystem_store_datadir = /var/lib/glance/tasks_work_dir
[os_glance_staging_store]
filesystem_store_datadir = /var/lib/glance/staging
[oslo_concurrency]
lock_path = /var/lib/glance/lock
EOF
  mkdir -p /var/lib/glance/tasks_work_dir /var/lib/glance/staging /var/lib/glance/lock

  # --- placement
  backup_once /etc/placement/placement.conf
  cat > /etc/placement/placement.conf <<EOF
[DEFAULT]
debug = $DEBUG
[api]
auth_strategy = keystone
[placement_database]
connection = $(db_url placement placement)
$(authtoken placement)
EOF
  cat > $STATE/placement-uwsgi.ini <<EOF
[uwsgi]
plugins = python3
master = true
http-socket = $HOSTIP:8778
wsgi-file = /usr/bin/placement-api
processes = 1
threads = 4
enable-threads = true
lazy-apps = true
die-on-term = true
buffer-size = 65535
# clients must not reuse connections: uwsgi's http-socket closes them
add-header = Connection: close
EOF

  # --- nova (fake virt driver)
  backup_once /etc/nova/nova.conf
  backup_once /etc/nova/nova-compute.conf
  cat > /etc/nova/nova.conf <<EOF
[DEFAULT]
debug = $DEBUG
host = $COMPUTE_HOST
my_ip = $HOSTIP
my_block_storage_ip = $HOSTIP
state_path = /var/lib/nova
instances_path = /var/lib/nova/instances
transport_url = $RABBIT
enabled_apis = osapi_compute
osapi_compute_listen = $HOSTIP
osapi_compute_listen_port = 8774
osapi_compute_workers = 1
compute_driver = fake.FakeDriver
# the fake driver reports plenty; keep ratios simple
cpu_allocation_ratio = 16.0
ram_allocation_ratio = 4.0
[api]
auth_strategy = keystone
[api_database]
connection = $(db_url nova nova_api)
[database]
connection = $(db_url nova nova)
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 30
[glance]
region_name = $REGION
$(authtoken nova)
$(ksauth service_user nova)
send_service_user_token = true
$(ksauth placement nova)
$(ksauth neutron nova)
$(ksauth cinder nova)
os_region_name = $REGION
[oslo_concurrency]
lock_path = /var/lib/nova/tmp
[oslo_messaging_notifications]
driver = noop
[vnc]
enabled = false
[spice]
enabled = false
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
EOF
  printf '[DEFAULT]\ncompute_driver = fake.FakeDriver\n' > /etc/nova/nova-compute.conf

  # --- cinder (NFS driver on a bind-mounted local directory)
  backup_once /etc/cinder/cinder.conf
  echo "$NFS_SHARE" > /etc/cinder/nfs_shares
  cat > /etc/cinder/cinder.conf <<EOF
[DEFAULT]
debug = $DEBUG
host = ostest-cinder
my_ip = $HOSTIP
state_path = /var/lib/cinder
transport_url = $RABBIT
auth_strategy = keystone
osapi_volume_listen = $HOSTIP
osapi_volume_listen_port = 8776
osapi_volume_workers = 1
enabled_backends = nfs1,nfs2
default_volume_type = __DEFAULT__
rootwrap_config = /etc/cinder/rootwrap.conf
api_paste_config = /etc/cinder/api-paste.ini
image_conversion_dir = /var/lib/cinder/conversion
glance_api_servers = http://$HOSTIP:9292
[database]
connection = $(db_url cinder cinder)
$(authtoken cinder)
$(ksauth nova cinder)
interface = public
$(ksauth service_user cinder)
send_service_user_token = true
[oslo_concurrency]
lock_path = /var/lib/cinder/tmp
[oslo_messaging_notifications]
driver = noop
[nfs1]
volume_backend_name = nfs1
volume_driver = ostest_shims.cinder_nfs.LoopbackNfsDriver
nfs_shares_config = /etc/cinder/nfs_shares
nfs_mount_point_base = $NFS_MNT_BASE
nfs_snapshot_support = true
nfs_sparsed_volumes = true
nfs_qcow2_volumes = false
nas_secure_file_operations = false
nas_secure_file_permissions = false
[nfs2]
# the same share; an image upload of its volumes registers a clone by location (no bytes sent)
volume_backend_name = nfs2
volume_driver = ostest_shims.cinder_nfs.LoopbackNfsImageDriver
nfs_shares_config = /etc/cinder/nfs_shares
nfs_mount_point_base = $NFS_MNT_BASE
nfs_snapshot_support = true
nfs_sparsed_volumes = true
nfs_qcow2_volumes = false
nas_secure_file_operations = false
nas_secure_file_permissions = false
image_upload_use_cinder_backend = true
EOF

  # --- neutron (ML2, local networks, no agents)
  backup_once /etc/neutron/neutron.conf
  cat > /etc/neutron/neutron.conf <<EOF
[DEFAULT]
debug = $DEBUG
host = ostest-net
bind_host = $HOSTIP
bind_port = 9696
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = $RABBIT
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 1
state_path = /var/lib/neutron
dhcp_agent_notification = false
notify_nova_on_port_status_changes = true
notify_nova_on_port_data_changes = true
[database]
connection = $(db_url neutron neutron)
$(authtoken neutron)
$(ksauth nova neutron)
[oslo_concurrency]
lock_path = /var/lib/neutron/lock
[oslo_messaging_notifications]
driver = noop
[agent]
root_helper = sudo /usr/bin/neutron-rootwrap /etc/neutron/rootwrap.conf
EOF
  mkdir -p /etc/neutron/plugins/ml2 /var/lib/neutron/lock
  backup_once /etc/neutron/plugins/ml2/ml2_conf.ini
  cat > /etc/neutron/plugins/ml2/ml2_conf.ini <<EOF
[ml2]
type_drivers = local,flat
tenant_network_types = local
mechanism_drivers = ostest_loopback
extension_drivers = port_security
[ml2_type_flat]
flat_networks = physnet1
[securitygroup]
enable_security_group = true
firewall_driver = noop
EOF
}

# ---------------------------------------------------------------- daemons
start_infra() {
  start_bg mariadb /usr/sbin/mariadbd --user=mysql --bind-address=$HOSTIP --port=3306
  wait_port 3306 mariadb 60
  # rabbitmq-server runs in the foreground as user rabbitmq
  chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /var/log/rabbitmq
  start_bg rabbitmq su rabbitmq -s /bin/sh -c \
    "cd /var/lib/rabbitmq && ERL_EPMD_ADDRESS=$HOSTIP exec /usr/lib/rabbitmq/bin/rabbitmq-server"
  wait_port 5672 rabbitmq 120
}

setup_dbs() {
  local db u
  for db in keystone glance placement nova_api nova nova_cell0 cinder neutron; do
    case $db in nova*) u=nova;; *) u=$db;; esac
    mysql -uroot -e "CREATE DATABASE IF NOT EXISTS $db;
      CREATE USER IF NOT EXISTS '$u'@'127.0.0.1' IDENTIFIED BY '$PW';
      CREATE USER IF NOT EXISTS '$u'@'localhost' IDENTIFIED BY '$PW';
      GRANT ALL PRIVILEGES ON $db.* TO '$u'@'127.0.0.1';
      GRANT ALL PRIVILEGES ON $db.* TO '$u'@'localhost';"
  done
  rabbitmqctl -q add_user openstack "$PW" >/dev/null 2>&1 || rabbitmqctl -q change_password openstack "$PW" >/dev/null
  rabbitmqctl -q set_permissions openstack ".*" ".*" ".*" >/dev/null
}

sync_dbs() {
  log "db sync (keystone, glance, placement, nova, cinder, neutron)"
  step keystone "db_sync" keystone-manage db_sync
  mkdir -p /etc/keystone/fernet-keys /etc/keystone/credential-keys
  [ -f /etc/keystone/fernet-keys/0 ] || step keystone "fernet_setup" keystone-manage fernet_setup --keystone-user root --keystone-group root
  [ -f /etc/keystone/credential-keys/0 ] || step keystone "credential_setup" keystone-manage credential_setup --keystone-user root --keystone-group root
  step glance "db_sync" glance-manage db_sync
  step placement "db sync" placement-manage db sync
  step nova "api_db sync" nova-manage api_db sync
  local cells
  cells=$(nova-manage cell_v2 list_cells 2>/dev/null || true)
  grep -q " cell0 " <<<"$cells" || step nova "cell_v2 map_cell0" nova-manage cell_v2 map_cell0
  grep -q " cell1 " <<<"$cells" || step nova "cell_v2 create_cell" nova-manage cell_v2 create_cell --name=cell1 --verbose
  step nova "db sync" nova-manage db sync
  step cinder "db sync" cinder-manage db sync
  step neutron "db upgrade heads" neutron-db-manage --config-file /etc/neutron/neutron.conf \
    --config-file /etc/neutron/plugins/ml2/ml2_conf.ini upgrade heads
}

start_keystone() {
  start_bg keystone uwsgi --ini $STATE/keystone-uwsgi.ini
  wait_http http://$HOSTIP:5000/v3 keystone
  step keystone "bootstrap" keystone-manage bootstrap --bootstrap-password "$PW" \
    --bootstrap-admin-url http://$HOSTIP:5000/v3/ \
    --bootstrap-internal-url http://$HOSTIP:5000/v3/ \
    --bootstrap-public-url http://$HOSTIP:5000/v3/ \
    --bootstrap-region-id $REGION
}

keystone_catalog() {
  log "keystone: projects, users, roles, services, endpoints"
  echo "=== keystone: catalog ($(date +%T))" >>"$LOG/db-sync.log"
  OSTEST_PW="$PW" OSTEST_REGION=$REGION OSTEST_IP=$HOSTIP $PY - >>"$LOG/db-sync.log" 2>&1 <<'EOF' || fail keystone "catalog setup (projects, users, endpoints) failed" "$LOG/db-sync.log"
import os
from keystoneauth1 import session
from keystoneauth1.identity import v3
from keystoneclient.v3 import client

pw, region, ip = os.environ['OSTEST_PW'], os.environ['OSTEST_REGION'], os.environ['OSTEST_IP']
auth = v3.Password(auth_url=f'http://{ip}:5000/v3', username='admin', password=pw,
                   project_name='admin', user_domain_name='Default',
                   project_domain_name='Default')
ks = client.Client(session=session.Session(auth=auth))
dom = ks.domains.find(name='Default')

def get_or(mgr, name, **create):
    found = [o for o in mgr.list() if o.name == name]
    return found[0] if found else mgr.create(name=name, **create)

service_p = get_or(ks.projects, 'service', domain=dom)
demo_p = get_or(ks.projects, 'demo', domain=dom)
admin_r = get_or(ks.roles, 'admin')
member_r = get_or(ks.roles, 'member')
reader_r = get_or(ks.roles, 'reader')
service_r = get_or(ks.roles, 'service')
for u in ('glance', 'placement', 'nova', 'cinder', 'neutron'):
    user = get_or(ks.users, u, domain=dom, password=pw)
    ks.users.update(user, password=pw)
    ks.roles.grant(admin_r, user=user, project=service_p)
    ks.roles.grant(service_r, user=user, project=service_p)
demo_u = get_or(ks.users, 'demo', domain=dom, password=pw)
ks.roles.grant(member_r, user=demo_u, project=demo_p)
admin_u = ks.users.find(name='admin')
ks.roles.grant(admin_r, user=admin_u, project=demo_p)

services = [
    ('glance', 'image', f'http://{ip}:9292'),
    ('placement', 'placement', f'http://{ip}:8778'),
    ('nova', 'compute', f'http://{ip}:8774/v2.1'),
    ('cinderv3', 'volumev3', f'http://{ip}:8776/v3/%(project_id)s'),
    ('cinder', 'block-storage', f'http://{ip}:8776/v3/%(project_id)s'),
    ('neutron', 'network', f'http://{ip}:9696'),
]
for name, stype, url in services:
    svc = [s for s in ks.services.list() if s.type == stype]
    svc = svc[0] if svc else ks.services.create(name=name, type=stype)
    have = {e.interface: e for e in ks.endpoints.list(service=svc)}
    for iface in ('public', 'internal', 'admin'):
        if iface in have:
            if have[iface].url != url:
                ks.endpoints.update(have[iface], url=url)
        else:
            ks.endpoints.create(service=svc, url=url, interface=iface, region=region)
print('catalog ok')
EOF
}

ensure_nfs_mount() {
  # The NFS driver checks /proc/mounts for its mount point and mounts only
  # when absent; a bind mount of a local directory stands in for the export.
  local h mp
  h=$($PY -c "import hashlib,sys; print(hashlib.md5(sys.argv[1].encode()).hexdigest())" "$NFS_SHARE")
  mp=$NFS_MNT_BASE/$h
  mkdir -p "$mp"
  awk -v mp="$mp" '$2 == mp {f=1} END {exit !f}' /proc/mounts || mount --bind "$NFS_EXPORT" "$mp"
  echo "$mp" > $RUN/nfs-mountpoint
  # glance's cinder store tells a mounted share by os.path.ismount, which does not see a bind
  # mount from the same filesystem: its mount points live on a tmpfs of their own
  mkdir -p $GLANCE_MNT_BASE/nfs
  awk -v mp="$GLANCE_MNT_BASE/nfs" '$2 == mp {f=1} END {exit !f}' /proc/mounts ||
    mount -t tmpfs -o size=1m,mode=0750 ostest-glance-mnt $GLANCE_MNT_BASE/nfs
}

start_services() {
  start_bg glance-api env PATH="$GLANCE_BIN:$PATH" glance-api --config-file /etc/glance/glance-api.conf
  start_bg placement uwsgi --ini $STATE/placement-uwsgi.ini
  start_bg neutron-server neutron-server --config-file /etc/neutron/neutron.conf \
    --config-file /etc/neutron/plugins/ml2/ml2_conf.ini
  start_bg nova-api nova-api --config-file /etc/nova/nova.conf
  start_bg nova-conductor nova-conductor --config-file /etc/nova/nova.conf
  start_bg nova-scheduler nova-scheduler --config-file /etc/nova/nova.conf
  start_bg nova-compute nova-compute --config-file /etc/nova/nova.conf --config-file /etc/nova/nova-compute.conf
  ensure_nfs_mount
  start_bg cinder-api cinder-api --config-file /etc/cinder/cinder.conf
  start_bg cinder-scheduler cinder-scheduler --config-file /etc/cinder/cinder.conf
  start_bg cinder-volume cinder-volume --config-file /etc/cinder/cinder.conf
  wait_http http://$HOSTIP:9292/ glance-api
  wait_http http://$HOSTIP:8778/ placement
  wait_http http://$HOSTIP:9696/ neutron-server 180
  wait_http http://$HOSTIP:8774/ nova-api 180
  wait_http http://$HOSTIP:8776/ cinder-api 180
}

admin_env() {
  cat <<EOF
export OS_AUTH_URL=http://$HOSTIP:5000/v3
export OS_IDENTITY_API_VERSION=3
export OS_USERNAME=admin
export OS_PASSWORD=$PW
export OS_PROJECT_NAME=admin
export OS_USER_DOMAIN_NAME=Default
export OS_PROJECT_DOMAIN_NAME=Default
export OS_REGION_NAME=$REGION
export OS_INTERFACE=public
EOF
}

wait_compute_registered() {
  local i out
  eval "$(admin_env)"
  for i in $(seq 1 90); do
    out=$(openstack compute service list -f value -c Binary -c State 2>/dev/null || true)
    grep -q "nova-compute up" <<<"$out" && break
    [ "$i" = 90 ] && fail nova-compute "did not report up to nova-conductor within 180 s"
    sleep 2
  done
  step nova-compute "cell_v2 discover_hosts" nova-manage cell_v2 discover_hosts
  for i in $(seq 1 60); do
    out=$(openstack resource provider list -f value -c name 2>/dev/null || true)
    grep -qx "$COMPUTE_HOST" <<<"$out" && break
    sleep 2
  done
  for i in $(seq 1 60); do
    out=$(openstack volume service list -f value -c Binary -c Host -c State 2>/dev/null || true)
    grep -q "cinder-volume ostest-cinder@nfs1 up" <<<"$out" &&
      grep -q "cinder-volume ostest-cinder@nfs2 up" <<<"$out" && return 0
    sleep 2
  done
  fail cinder-volume "did not report up within 120 s (NFS share at $NFS_SHARE)"
}

seed() {
  eval "$(admin_env)"
  log "seeding flavor m1.small and network private (192.0.2.0/24, no traffic)"
  openstack flavor show m1.small >/dev/null 2>&1 || \
    openstack flavor create --vcpus 2 --ram 2048 --disk 1 m1.small >/dev/null
  openstack network show private >/dev/null 2>&1 || \
    openstack network create --share private >/dev/null
  openstack subnet show private-subnet >/dev/null 2>&1 || \
    openstack subnet create --network private --subnet-range 192.0.2.0/24 \
      --no-dhcp --gateway none private-subnet >/dev/null
  # volumes of this type are uploaded to Glance by location (backend nfs2, glance store "cinder")
  openstack volume type show vmi-cinder-images >/dev/null 2>&1 || \
    openstack volume type create --property volume_backend_name=nfs2 \
      --property image_service:store_id=cinder vmi-cinder-images >/dev/null
}

# ---------------------------------------------------------------- fixtures
FIXTURES=$STATE/fixtures.env
SERVICES="mariadb rabbitmq keystone glance-api placement neutron-server nova-api nova-conductor
nova-scheduler nova-compute cinder-api cinder-scheduler cinder-volume"

all_running() { local n; for n in $SERVICES; do running "$n" || return 1; done; }

# wait_fixture KIND ID WANTED: like wait_status, but names the service whose log explains it
wait_fixture() {
  local kind=$1 id=$2 want=$3 i s="" svc=cinder-volume
  [ "$kind" = server ] && svc=nova-compute
  for i in $(seq 1 300); do
    s=$(openstack $kind show "$id" -f value -c status 2>/dev/null || true)
    [ "$s" = "$want" ] && return 0
    case $s in error|ERROR|error_*) fail "$svc" "fixture $kind $id went to $s";; esac
    sleep 1
  done
  fail "$svc" "fixture $kind $id stuck in '$s' (wanted $want)"
}

# awk program over "ID Name" lines: the volumes fixtures_cleanup removes (all vmi-* and
# vm-import-* ones but the guests' boot volumes).
FIXTURE_VOLUMES='$2 ~ /^(vmi-|vm-import-)/ && $2 !~ /^vmi-guest-.*-boot$/ {print $1}'

fixtures_cleanup() {
  local id n i
  for id in $(openstack server list -f value -c ID -c Name | awk '$2 ~ /^vmi-/ {print $1}'); do
    openstack server delete --wait "$id" >/dev/null 2>&1 || true
  done
  # ports made before their server (the guests' own MACs) outlive it
  for id in $(openstack port list -f value -c ID -c Name | awk '$2 ~ /^vmi-/ {print $1}'); do
    openstack port delete "$id" >/dev/null 2>&1 || true
  done
  for id in $(openstack volume snapshot list -f value -c ID -c Name | awk '$2 ~ /^(vmi-|vm-import-)/ {print $1}'); do
    openstack volume snapshot delete "$id" >/dev/null 2>&1 || true
  done
  for i in $(seq 1 30); do
    n=$(openstack volume snapshot list -f value -c Name | grep -cE '^(vmi-|vm-import-)' || true)
    [ "$n" = 0 ] && break; sleep 1
  done
  # The guests' boot volumes stay (detached by their servers' deletion): seed-guests boots new
  # servers from them instead of uploading each guest and copying it into a volume again.
  for id in $(openstack volume list -f value -c ID -c Name | awk "$FIXTURE_VOLUMES"); do
    openstack volume delete --force "$id" >/dev/null 2>&1 || openstack volume delete "$id" >/dev/null 2>&1 || true
  done
  for id in $(openstack image list -f value -c ID -c Name | awk '$2 ~ /^(vmi-|vm-import-)/ {print $1}'); do
    openstack image delete "$id" >/dev/null 2>&1 || true
  done
  for i in $(seq 1 60); do
    n=$(openstack volume list -f value -c ID -c Name | awk "$FIXTURE_VOLUMES" | wc -l)
    [ "$n" = 0 ] && return 0; sleep 1
  done
  fail cinder-volume "old fixture volumes were not deleted within 60 s"
}

build_fixtures() {
  eval "$(admin_env)"
  local t0=$SECONDS img boot data multi dup1 dup2 novol one two one_boot two_boot net1 net2 id
  local cimg cimg_boot
  log "fixtures: removing old vmi-* and vm-import-* objects"
  rm -f $GUESTS  # the guests' servers are vmi-* too: seed-guests makes them again
  fixtures_cleanup
  log "fixtures: network private2, image vmi-image, volumes, servers vmi-multi, vmi-one, vmi-two, vmi-dup x2, vmi-novol, vmi-cinderimg"
  openstack network show private2 >/dev/null 2>&1 || \
    openstack network create --share private2 >/dev/null
  openstack subnet show private2-subnet >/dev/null 2>&1 || \
    openstack subnet create --network private2 --subnet-range 198.51.100.0/24 \
      --no-dhcp --gateway none private2-subnet >/dev/null
  net1=$(openstack network show private -f value -c id)
  net2=$(openstack network show private2 -f value -c id)
  head -c 1048576 /dev/urandom > $STATE/vmi-image.raw
  img=$(openstack image create --disk-format raw --container-format bare \
    --file $STATE/vmi-image.raw --property hw_firmware_type=uefi --property hw_disk_bus=scsi \
    --property hw_vif_model=e1000e vmi-image -f value -c id) || fail glance-api "fixture image upload failed"
  boot=$(openstack volume create --size 1 --image "$img" --bootable vmi-multi-boot -f value -c id)
  data=$(openstack volume create --size 1 vmi-multi-data -f value -c id)
  one_boot=$(openstack volume create --size 1 --image "$img" --bootable vmi-one-boot -f value -c id)
  two_boot=$(openstack volume create --size 1 --bootable vmi-two-boot -f value -c id)
  cimg_boot=$(openstack volume create --size 1 --bootable --type vmi-cinder-images \
    vmi-cinderimg-boot -f value -c id)
  dup1=$(openstack server create --flavor m1.small --image "$img" --network private vmi-dup -f value -c id)
  dup2=$(openstack server create --flavor m1.small --image "$img" --network private vmi-dup -f value -c id)
  novol=$(openstack server create --flavor m1.small --image "$img" --network private vmi-novol -f value -c id)
  wait_fixture volume "$boot" available
  wait_fixture volume "$data" available
  wait_fixture volume "$one_boot" available
  wait_fixture volume "$two_boot" available
  wait_fixture volume "$cimg_boot" available
  multi=$(openstack server create --flavor m1.small --volume "$boot" --nic net-id="$net1" \
    --nic net-id="$net2" vmi-multi -f value -c id)
  one=$(openstack server create --flavor m1.small --volume "$one_boot" --nic net-id="$net1" \
    vmi-one -f value -c id)
  two=$(openstack server create --flavor m1.small --volume "$two_boot" --nic net-id="$net2" \
    vmi-two -f value -c id)
  cimg=$(openstack server create --flavor m1.small --volume "$cimg_boot" --nic net-id="$net1" \
    vmi-cinderimg -f value -c id)
  for id in "$dup1" "$dup2" "$novol" "$multi" "$one" "$two" "$cimg"; do
    wait_fixture server "$id" ACTIVE
  done
  openstack server add volume "$multi" "$data" >/dev/null
  wait_fixture volume "$data" in-use
  cat > $FIXTURES.tmp <<EOF
export OPENSTACK_MULTI_ID='$multi'
export OPENSTACK_MULTI_BOOT_VOLUME='$boot'
export OPENSTACK_MULTI_DATA_VOLUME='$data'
export OPENSTACK_MULTI_MAC_PRIVATE='$(openstack port list --server "$multi" --network private -f value -c "MAC Address")'
export OPENSTACK_MULTI_MAC_PRIVATE2='$(openstack port list --server "$multi" --network private2 -f value -c "MAC Address")'
export OPENSTACK_DUP_IDS='$dup1 $dup2'
export OPENSTACK_NOVOL_ID='$novol'
export OPENSTACK_ONE_ID='$one'
export OPENSTACK_ONE_VOLUME='$one_boot'
export OPENSTACK_ONE_MAC='$(openstack port list --server "$one" -f value -c "MAC Address")'
export OPENSTACK_TWO_ID='$two'
export OPENSTACK_TWO_VOLUME='$two_boot'
export OPENSTACK_TWO_MAC='$(openstack port list --server "$two" -f value -c "MAC Address")'
export OPENSTACK_IMAGE_ID='$img'
export OPENSTACK_CINDERIMG_ID='$cimg'
export OPENSTACK_CINDERIMG_VOLUME='$cimg_boot'
EOF
  mv $FIXTURES.tmp $FIXTURES
  log "fixtures ready in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------- guests (issue 17)
GUESTS=$STATE/guests.env

seed_guests() {
  eval "$(admin_env)"
  local t0=$SECONDS table variant fw _table drivers mac model bus _gid _ctl _ad distro raw rest
  local name img vol port id props var
  table=$("$HERE/../guest/guest-world.sh" path 2>/dev/null) || {
    "$HERE/../guest/guest-world.sh" build >/dev/null
    table=$("$HERE/../guest/guest-world.sh" path)
  }
  : > $GUESTS.tmp
  while IFS=$'\t' read -r -u 3 variant fw _table drivers mac model bus _gid _ctl _ad distro raw rest; do
    case $variant in ''|'#'*) continue;; esac
    name=vmi-guest-$variant
    var=OPENSTACK_GUEST_$(tr 'a-z-' 'A-Z_' <<<"$variant")_ID
    id=$(openstack server list --name "^$name\$" -f value -c ID -c Status | awk '$2 == "ACTIVE" || $2 == "SHUTOFF" {print $1}')
    if [ "$(wc -w <<<"$id")" != 1 ]; then
      for id in $(openstack server list --name "^$name\$" -f value -c ID); do
        openstack server delete --wait "$id" >/dev/null
      done
      for id in $(openstack port list --name "$name-port" -f value -c ID); do
        openstack port delete "$id" >/dev/null
      done
      # A boot volume an earlier up made from this very disk (its path names the guest build's
      # hash) is booted again; anything else is made anew from the disk.
      vol=$(openstack volume list --name "$name-boot" -f value -c ID -c Status | awk '$2 == "available" {print $1}')
      if [ "$(wc -w <<<"$vol")" = 1 ] && [ "$(cat "$STATE/$name.source" 2>/dev/null)" = "$raw" ]; then
        log "guests: $name: volume $vol kept from an earlier up; port $mac, server"
      else
        for id in $(openstack volume list --name "$name-boot" -f value -c ID); do
          openstack volume delete "$id" >/dev/null
        done
        for id in $(openstack image list --name "$name" -f value -c ID); do
          openstack image delete "$id" >/dev/null
        done
        props=(--property os_type=linux --property os_distro="$distro"
               --property hw_disk_bus="$bus" --property hw_vif_model="$model")
        [ "$fw" = efi ] && props+=(--property hw_firmware_type=uefi)
        log "guests: $name: image ($(($(stat -c %s "$raw") >> 20)) MiB), volume, port $mac, server"
        rm -f "$STATE/$name.source"
        img=$(openstack image create --disk-format raw --container-format bare --file "$raw" \
          "${props[@]}" "$name" -f value -c id) || fail glance-api "guest image $name upload failed"
        vol=$(openstack volume create --size 1 --image "$img" --bootable "$name-boot" -f value -c id)
        wait_fixture volume "$vol" available
        echo "$raw" > "$STATE/$name.source"
        # the image was only the way into the volume (the volume keeps its properties)
        openstack image delete "$img" >/dev/null
      fi
      port=$(openstack port create --network private --mac-address "$mac" "$name-port" -f value -c id)
      id=$(openstack server create --flavor m1.small --volume "$vol" --nic port-id="$port" \
        "$name" -f value -c id)
      wait_fixture server "$id" ACTIVE
    fi
    echo "export $var='$id'" >> $GUESTS.tmp
  done 3< "$table"
  mv $GUESTS.tmp $GUESTS
  log "guests seeded in $((SECONDS - t0)) s"
}

write_env() {
  mkdir -p "$WSTATE"
  {
    echo "# generated by openstack-world.sh up; source it to reach the OpenStack peer"
    admin_env
    echo "export OPENSTACK_WORLD_SCRIPT='$HERE/openstack-world.sh'"
    echo "export OPENSTACK_NFS_MOUNTPOINT='$(cat $RUN/nfs-mountpoint)'"
    echo "export OPENSTACK_LOG_DIR='$LOG'"
    cat $FIXTURES
    [ ! -f $GUESTS ] || cat $GUESTS
  } > "$ENVFILE.tmp"
  mv "$ENVFILE.tmp" "$ENVFILE"
}

cmd_up() {
  local t0=$SECONDS
  [ "$(id -u)" = 0 ] || die "run as root (installs packages, starts system services, bind-mounts)"
  if all_running && [ -f $FIXTURES ] && (
       eval "$(admin_env)"; . $FIXTURES
       [ -n "${OPENSTACK_CINDERIMG_ID:-}" ] &&
       [ -n "$(openstack server show "$OPENSTACK_MULTI_ID" -f value -c status 2>/dev/null)" ]); then
    write_env
    log "already up with its fixtures ($((SECONDS - t0)) s); env: $ENVFILE"
    return 0
  fi
  install_packages
  write_shims
  write_configs
  start_infra
  setup_dbs
  sync_dbs
  start_keystone
  keystone_catalog
  start_services
  wait_compute_registered
  seed
  if [ $STARTED_COMPUTE = 1 ] || [ ! -f $FIXTURES ]; then
    build_fixtures
  fi
  write_env
  log "up in $((SECONDS - t0)) s; logs in $LOG; env: $ENVFILE"
}

cmd_stop() {
  local n
  for n in cinder-volume cinder-scheduler cinder-api nova-compute nova-scheduler \
           nova-conductor nova-api neutron-server placement glance-api keystone; do
    stop_one $n
  done
  local ours=0
  if running rabbitmq; then
    ours=1
    rabbitmqctl -q shutdown >/dev/null 2>&1 || true
  fi
  stop_one rabbitmq
  # epmd was started by our rabbitmq (only then): stop it through its own protocol
  if [ $ours = 1 ]; then
    (exec 3<>/dev/tcp/127.0.0.1/4369) 2>/dev/null && ERL_EPMD_ADDRESS=$HOSTIP epmd -kill >/dev/null 2>&1 || true
  fi
  if running mariadb; then mysqladmin -uroot shutdown 2>/dev/null || true; fi
  stop_one mariadb
  # glance's cinder store unmounts when its last download ends; a stopped glance-api may not have
  local mp
  for mp in $(awk -v base="$GLANCE_MNT_BASE/nfs/" 'index($2, base) == 1 {print $2}' /proc/mounts); do
    umount "$mp" 2>/dev/null || true
  done
  rmdir "$GLANCE_MNT_BASE"/nfs/* 2>/dev/null || true
  umount "$GLANCE_MNT_BASE/nfs" 2>/dev/null || true
  if [ -f $RUN/nfs-mountpoint ]; then
    umount "$(cat $RUN/nfs-mountpoint)" 2>/dev/null || true
    rm -f $RUN/nfs-mountpoint
  fi
  log "stopped"
}

cmd_status() {
  local n
  for n in mariadb rabbitmq keystone glance-api placement neutron-server nova-api \
           nova-conductor nova-scheduler nova-compute cinder-api cinder-scheduler cinder-volume; do
    if running $n; then
      local pid rss
      pid=$(cat "$(pidfile $n)")
      # the process and all its descendants (rabbitmq runs under su, in a session of its own)
      rss=$(ps -e -o pid=,ppid=,rss= | awk -v root="$pid" '
        {pp[$1]=$2; r[$1]=$3}
        END {for (p in pp) {q=p; while (q != "" && q != 0 && q != 1) {if (q == root) {s+=r[p]; break}; q=pp[q]}}
             printf "%d", s/1024}')
      echo "$n: running (pid $pid, ${rss} MiB RSS)"
    else
      echo "$n: stopped"
    fi
  done
  free -m | awk 'NR==2 {print "machine memory used: " $3 " MiB of " $2}'
  ss -ltnp 2>/dev/null | awk 'NR==1 || /:(3306|5672|4369|25672|5000|9292|8778|8774|8776|9696) /'
}

cmd_reset() {
  cmd_stop
  start_infra
  local db
  for db in keystone glance placement nova_api nova nova_cell0 cinder neutron; do
    mysql -uroot -e "DROP DATABASE IF EXISTS $db;"
  done
  cmd_stop
  rm -rf /var/lib/glance/images/* "${NFS_EXPORT:?}"/* /etc/keystone/fernet-keys /etc/keystone/credential-keys
  log "reset done; run '$0 up'"
}

# ---------------------------------------------------------------- smoke test
# The import tool's sequence, driven with raw REST calls (curl) after the
# fixture (image, boot volume, data volume, server) is built with the CLI.
smoke_cleanup() {
  local id
  for id in $(openstack server list --name '^smoke-vm$' -f value -c ID); do
    openstack server delete --wait "$id" || true
  done
  for id in $(openstack volume snapshot list -f value -c ID -c Name | awk '$2 ~ /^smoke-/ {print $1}'); do
    openstack volume snapshot delete "$id" || true
  done
  sleep 2
  for id in $(openstack volume list -f value -c ID -c Name | awk '$2 ~ /^smoke-/ {print $1}'); do
    openstack volume delete --force "$id" || true
  done
  for id in $(openstack image list -f value -c ID -c Name | awk '$2 ~ /^smoke-/ {print $1}'); do
    openstack image delete "$id" || true
  done
}

wait_status() {  # kind id wanted [timeout]
  local kind=$1 id=$2 want=$3 t=${4:-300} i s=""
  for i in $(seq 1 "$t"); do
    s=$(openstack $kind show "$id" -f value -c status 2>/dev/null || true)
    [ "$s" = "$want" ] && return 0
    case $s in error|ERROR|killed|error_*) die "$kind $id went to $s";; esac
    sleep 1
  done
  die "$kind $id stuck in '$s' (wanted $want)"
}

wait_gone() {  # url
  local i
  for i in $(seq 1 120); do
    [ "$(curl "${H[@]}" -o /dev/null -w '%{http_code}' "$1")" = 404 ] && return 0
    sleep 1
  done
  die "$1 still there"
}

jget() { $PY -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

cmd_smoke() {
  eval "$(admin_env)"
  local t0=$SECONDS W=$STATE/smoke i
  smoke_cleanup >/dev/null 2>&1
  rm -rf $W; mkdir -p $W
  log "smoke: image with 1 MiB of random bytes (raw)"
  head -c 1048576 /dev/urandom > $W/boot.head
  openstack image create --disk-format raw --container-format bare \
    --file $W/boot.head smoke-image -f value -c id > $W/image.id
  log "smoke: bootable volume from the image, and a data volume"
  openstack volume create --size 1 --image "$(cat $W/image.id)" --bootable smoke-boot -f value -c id > $W/boot.id
  openstack volume create --size 1 smoke-data -f value -c id > $W/data.id
  wait_status volume "$(cat $W/boot.id)" available
  wait_status volume "$(cat $W/data.id)" available
  # Put 2 MiB of known bytes at the start of the data volume through its
  # backing file (the VM is fake, nothing else can write to it).
  head -c 2097152 /dev/urandom > $W/data.head
  dd if=$W/data.head of="$(cat $RUN/nfs-mountpoint)/volume-$(cat $W/data.id)" conv=notrunc status=none
  cp $W/boot.head $W/$(cat $W/boot.id).expect
  cp $W/data.head $W/$(cat $W/data.id).expect
  log "smoke: boot server from the volume on network private, attach data volume"
  openstack server create --flavor m1.small --network private \
    --volume "$(cat $W/boot.id)" smoke-vm -f value -c id > $W/server.id
  wait_status server "$(cat $W/server.id)" ACTIVE
  openstack server add volume "$(cat $W/server.id)" "$(cat $W/data.id)" >/dev/null
  wait_status volume "$(cat $W/data.id)" in-use
  log "smoke: fixture ready after $((SECONDS - t0)) s; now the tool's calls (raw REST)"

  # 1. keystone v3 password auth, project scope by name, user domain by name
  local tok proj nova cinder glance sid
  curl -s -D $W/auth.h -o $W/auth.json -H 'Content-Type: application/json' \
    -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"$OS_USERNAME\",\"domain\":{\"name\":\"$OS_USER_DOMAIN_NAME\"},\"password\":\"$OS_PASSWORD\"}}},\"scope\":{\"project\":{\"name\":\"$OS_PROJECT_NAME\",\"domain\":{\"name\":\"$OS_PROJECT_DOMAIN_NAME\"}}}}}" \
    $OS_AUTH_URL/auth/tokens
  tok=$(awk 'tolower($1)=="x-subject-token:"{print $2}' $W/auth.h | tr -d '\r')
  [ -n "$tok" ] || die "no token"
  # 2. endpoints from the token's catalog (public interface, region)
  read -r proj nova cinder glance < <(OSTEST_REGION=$REGION $PY - $W/auth.json <<'EOF'
import json, os, sys
t = json.load(open(sys.argv[1]))['token']
def ep(kind):
    for s in t['catalog']:
        if s['type'] == kind:
            for e in s['endpoints']:
                if e['interface'] == 'public' and e['region_id'] == os.environ['OSTEST_REGION']:
                    return e['url']
print(t['project']['id'], ep('compute'), ep('volumev3'), ep('image'))
EOF
)
  echo "catalog: compute=$nova volumev3=$cinder image=$glance"
  H=(-s -H "X-Auth-Token: $tok" -H 'Content-Type: application/json' -H 'Accept: application/json')
  # 3. find the server by name, then read it by UUID
  sid=$(curl "${H[@]}" "$nova/servers?name=%5Esmoke-vm%24" | jget 'd["servers"][0]["id"]')
  curl "${H[@]}" -H 'OpenStack-API-Version: compute 2.79' "$nova/servers/$sid" > $W/server.json
  curl "${H[@]}" "$nova/servers/$sid/os-interface" > $W/interfaces.json
  $PY - $W/server.json $W/interfaces.json <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))['server']
f = s['flavor']
print('server', s['name'], s['id'], s['status'], '| flavor', f['original_name'], f['vcpus'], 'vcpus', f['ram'], 'MiB')
for net, addrs in s['addresses'].items():
    for a in addrs:
        print('  addresses:', net, a['OS-EXT-IPS-MAC:mac_addr'], a['addr'])
for p in json.load(open(sys.argv[2]))['interfaceAttachments']:
    print('  os-interface:', p['net_id'], p['mac_addr'], p['port_state'])
for v in s['os-extended-volumes:volumes_attached']:
    print('  volume', v['id'])
EOF
  # 4. stop, wait for SHUTOFF
  echo "os-stop -> $(curl "${H[@]}" -o /dev/null -w '%{http_code}' -d '{"os-stop": null}' "$nova/servers/$sid/action")"
  for i in $(seq 1 120); do
    [ "$(curl "${H[@]}" "$nova/servers/$sid" | jget 'd["server"]["status"]')" = SHUTOFF ] && break
    sleep 1
  done
  # 5. per attached volume: snapshot(force) -> volume from snapshot ->
  #    upload to image -> wait active -> download -> clean up
  local vid snap nv img size ok=0 bad=0
  for vid in $($PY -c 'import json,sys; [print(v["id"]) for v in json.load(open(sys.argv[1]))["server"]["os-extended-volumes:volumes_attached"]]' $W/server.json); do
    local ts=$SECONDS
    snap=$(curl "${H[@]}" -d "{\"snapshot\":{\"volume_id\":\"$vid\",\"force\":true,\"name\":\"smoke-snap\"}}" "$cinder/snapshots" | jget 'd["snapshot"]["id"]')
    wait_status "volume snapshot" "$snap" available
    nv=$(curl "${H[@]}" -d "{\"volume\":{\"snapshot_id\":\"$snap\",\"name\":\"smoke-tmp\"}}" "$cinder/volumes" | jget 'd["volume"]["id"]')
    wait_status volume "$nv" available
    img=$(curl "${H[@]}" -d '{"os-volume_upload_image":{"image_name":"smoke-upload","disk_format":"raw","container_format":"bare","force":false}}' \
      "$cinder/volumes/$nv/action" | jget 'd["os-volume_upload_image"]["image_id"]')
    for i in $(seq 1 600); do
      s=$(curl "${H[@]}" "$glance/v2/images/$img" | jget 'd["status"]'); [ "$s" = active ] && break
      case $s in killed|deleted) die "image $img $s";; esac; sleep 1
    done
    wait_status volume "$nv" available
    curl -s -H "X-Auth-Token: $tok" -o $W/dl.raw -w "  GET image file -> %{http_code} %{size_download} B\n" "$glance/v2/images/$img/file"
    curl "${H[@]}" -o /dev/null -X DELETE "$cinder/volumes/$nv"; wait_gone "$cinder/volumes/$nv"
    curl "${H[@]}" -o /dev/null -X DELETE "$cinder/snapshots/$snap"; wait_gone "$cinder/snapshots/$snap"
    curl "${H[@]}" -o /dev/null -X DELETE "$glance/v2/images/$img"
    size=$(stat -c %s $W/dl.raw)
    local n; n=$(stat -c %s $W/$vid.expect)
    if [ "$size" = 1073741824 ] && cmp -s -n "$n" $W/$vid.expect $W/dl.raw && \
       cmp -s -n $((size - n)) -i "$n:0" $W/dl.raw /dev/zero; then
      echo "  volume $vid: image bytes match the volume ($size B) [$((SECONDS - ts)) s]"; ok=$((ok+1))
    else
      echo "  volume $vid: MISMATCH"; bad=$((bad+1))
    fi
    rm -f $W/dl.raw
  done
  [ $bad = 0 ] && [ $ok = 2 ] || die "SMOKE FAILED ($ok ok, $bad bad)"
  echo "SMOKE OK: $ok volumes exported and verified; total $((SECONDS - t0)) s (server smoke-vm left SHUTOFF; rerun cleans up)"
}

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

case ${1:-} in
  up) cmd_up ;;
  down|stop) cmd_stop; rm -f "$ENVFILE" ;;
  env) [ -f "$ENVFILE" ] || die "not up (no $ENVFILE)"; echo "$ENVFILE" ;;
  status) cmd_status ;;
  fixtures) build_fixtures; write_env ;;
  reset) cmd_reset; rm -f "$FIXTURES" "$ENVFILE" ;;
  smoke) cmd_smoke ;;
  seed-guests) all_running || die "not up: $0 up first"; seed_guests; write_env ;;
  restart-service)
    restartable="glance-api placement neutron-server nova-api nova-conductor nova-scheduler
      nova-compute cinder-api cinder-scheduler cinder-volume"
    [ -n "${2:-}" ] && grep -qw -- "$2" <<<"$restartable" || die "restart-service: one of: $restartable"
    stop_one "$2"
    start_services
    ;;
  *) usage ;;
esac
