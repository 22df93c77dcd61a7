#!/bin/sh
# A private containerd (Debian's 1.6, its CRI plugin) that uses netctx as its
# CNI plugin, for integration/cni_cri.rs. Run inside the test's sandbox (its
# own network and mount namespace, private /run): root, state, socket, CNI
# configuration and binaries all live in DIR; a tmpfs over /var/lib catches
# the fixed paths of libcni's cache. Nothing is left on the machine.
#
#   cri.sh setup DIR NETCTX SUBNET UPLINK   configuration, containerd started
#                                           (pid in DIR/containerd.pid), the
#                                           pause image imported
#   cri.sh cleanup DIR CGROUP               every pod stopped and removed,
#                                           containerd stopped, the cgroups
#                                           named CGROUP removed
set -eu
cmd=$1
dir=$2
here=$(dirname "$0")
py=/usr/bin/python3
ref=localhost/netctx-pause:1

case $cmd in
setup)
  netctx=$3
  subnet=$4
  uplink=$5
  mount -t tmpfs cri-test /var/lib
  mkdir -p "$dir/net.d" "$dir/bin" "$dir/root" "$dir/state" "$dir/opt" "$dir/cni" \
    "$dir/logs" "$dir/rootfs/bin" "$dir/rootfs/www" "$dir/rootfs/etc" "$dir/rootfs/tmp" \
    "$dir/rootfs/proc" "$dir/rootfs/sys" "$dir/rootfs/dev"
  for p in /usr/lib/cni/*; do ln -sf "$p" "$dir/bin/"; done
  # netctx, behind a wrapper that records each call's command, namespace
  # and arguments (what containerd passes) in DIR/calls.
  cat >"$dir/bin/netctx" <<EOF
#!/bin/sh
echo "\$CNI_COMMAND netns=\$CNI_NETNS args=\$CNI_ARGS" >>"$dir/calls"
exec "$netctx" "\$@"
EOF
  chmod +x "$dir/bin/netctx"
  cat >"$dir/net.d/10-netctx.conflist" <<EOF
{ "cniVersion": "1.0.0", "name": "nx",
  "plugins": [
    { "type": "netctx",
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "$subnet" }]],
                "routes": [{ "dst": "0.0.0.0/0" }], "dataDir": "$dir/cni" },
      "isolation": "strict", "log": ["input"], "log_group": 100,
      "uplink": "$uplink", "egress": "none", "reach": ["host:9999/udp"],
      "capabilities": { "portMappings": true } } ] }
EOF
  cat >"$dir/config.toml" <<EOF
version = 2
root = "$dir/root"
state = "$dir/state"
[grpc]
  address = "$dir/containerd.sock"
[ttrpc]
  address = "$dir/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$dir/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$ref"
  disable_apparmor = true
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = false
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$dir/bin"
    conf_dir = "$dir/net.d"
    max_conf_num = 1
EOF
  # The pod sandbox image: busybox-static serving /www on 8080.
  cp "$(command -v busybox)" "$dir/rootfs/bin/busybox"
  echo "pod" >"$dir/rootfs/www/index.html"
  echo 'root:x:0:0:root:/:/bin/sh' >"$dir/rootfs/etc/passwd"
  $py "$here/cri.py" image "$dir/rootfs" "$dir/pause.tar" "$ref"
  $py "$here/cri.py" gen "$dir/gen"
  containerd --config "$dir/config.toml" >"$dir/containerd.log" 2>&1 </dev/null &
  echo $! >"$dir/containerd.pid"
  i=0
  until ctr --address "$dir/containerd.sock" version >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then
      echo "containerd did not come up:" >&2
      cat "$dir/containerd.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  ctr --address "$dir/containerd.sock" -n k8s.io images import --snapshotter native "$dir/pause.tar" >/dev/null
  ;;
cleanup)
  cgroup=$3
  case $cgroup in
  nxcri-?*) ;;
  *) echo "cri.sh: cgroup $cgroup is not the test's (nxcri-…)" >&2; exit 2 ;;
  esac
  if [ -S "$dir/containerd.sock" ]; then
    for id in $($py "$here/cri.py" "$dir/containerd.sock" "$dir/gen" list 2>/dev/null |
      $py -c 'import json,sys; print(" ".join(p[0] for p in json.load(sys.stdin)))'); do
      $py "$here/cri.py" "$dir/containerd.sock" "$dir/gen" stop "$id" >/dev/null 2>&1 || true
      $py "$here/cri.py" "$dir/containerd.sock" "$dir/gen" remove "$id" >/dev/null 2>&1 || true
    done
  fi
  if [ -f "$dir/containerd.pid" ]; then
    pid=$(cat "$dir/containerd.pid")
    kill "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.1; done
  fi
  # cgroupfs: the pods' parent groups stay behind empty; deepest first. A
  # pod CRI failed to stop (a test that failed half-way) still has its
  # processes there: they are this test's, killed by pid first.
  for root in /sys/fs/cgroup/*/ /sys/fs/cgroup/unified/; do
    [ -d "$root$cgroup" ] || continue
    for pid in $(find "$root$cgroup" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u); do
      kill -9 "$pid" 2>/dev/null || true
    done
  done
  sleep 0.2
  for root in /sys/fs/cgroup/*/ /sys/fs/cgroup/unified/; do
    [ -d "$root$cgroup" ] || continue
    find "$root$cgroup" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  ;;
*)
  echo "usage: cri.sh setup DIR NETCTX SUBNET UPLINK | cleanup DIR CGROUP" >&2
  exit 2
  ;;
esac
