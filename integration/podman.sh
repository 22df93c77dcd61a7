#!/bin/sh
# A private Podman (Debian's 4.3, CNI backend) that uses netctx as its CNI
# plugin, for integration/cni_podman.rs. Run inside the test's sandbox (its
# own network and mount namespace): everything Podman keeps goes to DIR or to
# tmpfs mounted here over Podman's and CNI's fixed paths, so nothing is left
# on the machine.
#
#   podman.sh setup DIR NETCTX SUBNET   write the configuration, the network
#                                       "nx" and the image localhost/bb
#   DIR/podman ARGS…                    Podman with that configuration
#   podman.sh cleanup DIR               remove every container, then the
#                                       cgroups Podman made
set -eu
cmd=$1
dir=$2

case $cmd in
setup)
  netctx=$3
  subnet=$4
  # Fixed paths Podman and libcni write to (/var/lib/cni, /var/lib/containers)
  # live on a tmpfs over /var/lib private to this mount namespace: nothing,
  # not even an empty directory, is made on the machine's disk.
  mount -t tmpfs podman-test /var/lib
  mkdir /var/lib/cni /var/lib/containers
  [ ! -d /etc/cni/net.d ] || mount -t tmpfs podman-test /etc/cni/net.d
  mkdir -p "$dir/net.d" "$dir/bin" "$dir/storage" "$dir/run" "$dir/tmp" "$dir/rootfs/bin" "$dir/cni"
  for p in /usr/lib/cni/*; do ln -sf "$p" "$dir/bin/"; done
  ln -sf "$netctx" "$dir/bin/netctx"
  cat >"$dir/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "bridge"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$dir/events.log"
tmp_dir = "$dir/tmp"
[network]
network_backend = "cni"
network_config_dir = "$dir/net.d"
cni_plugin_dirs = ["$dir/bin"]
default_network = "nx"
EOF
  cat >"$dir/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$dir/storage"
runroot = "$dir/run"
EOF
  cat >"$dir/net.d/nx.conflist" <<EOF
{ "cniVersion": "1.0.0", "name": "nx",
  "plugins": [
    { "type": "netctx",
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$subnet" }]],
                "routes": [{ "dst": "0.0.0.0/0" }], "dataDir": "$dir/cni" },
      "isolation": "strict", "log": ["input"], "log_group": 100,
      "reach": ["host:9999/udp"],
      "capabilities": { "portMappings": true } },
    { "type": "tuning" } ] }
EOF
  cat >"$dir/podman" <<EOF
#!/bin/sh
export CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf"
export CONTAINERS_REGISTRIES_CONF="$dir/registries.conf"
exec podman --cgroup-manager cgroupfs "\$@"
EOF
  : >"$dir/registries.conf"
  chmod +x "$dir/podman"
  # The image: busybox-static and its applets, imported from a tree.
  cp "$(command -v busybox)" "$dir/rootfs/bin/busybox"
  for a in $("$dir/rootfs/bin/busybox" --list); do
    [ -e "$dir/rootfs/bin/$a" ] || ln -s busybox "$dir/rootfs/bin/$a"
  done
  mkdir -p "$dir/rootfs/etc" "$dir/rootfs/tmp" "$dir/rootfs/proc" "$dir/rootfs/sys" "$dir/rootfs/dev"
  echo 'root:x:0:0:root:/:/bin/sh' >"$dir/rootfs/etc/passwd"
  echo 'root:x:0:' >"$dir/rootfs/etc/group"
  tar -C "$dir/rootfs" -cf - . | "$dir/podman" import - localhost/bb >/dev/null
  ;;
cleanup)
  if [ -x "$dir/podman" ]; then
    "$dir/podman" rm -a -f -t 0 >/dev/null 2>&1 || true
    "$dir/podman" system reset -f >/dev/null 2>&1 || true
  fi
  # cgroupfs: Podman's parent groups stay behind empty; remove them,
  # deepest first.
  for root in /sys/fs/cgroup/*/ /sys/fs/cgroup/unified/; do
    [ -d "${root}libpod_parent" ] || continue
    find "${root}libpod_parent" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  ;;
*)
  echo "usage: podman.sh setup DIR NETCTX SUBNET | cleanup DIR" >&2
  exit 2
  ;;
esac
