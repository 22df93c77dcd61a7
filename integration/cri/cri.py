#!/usr/bin/python3
"""A minimal CRI client for integration/cni_cri.rs (crictl is not packaged
in Debian): gRPC to containerd's CRI plugin over its socket, with the
messages of api.proto (kubernetes/cri-api, runtime.v1) compiled by protoc
into GEN at setup. Also builds the pod sandbox ("pause") image.

api.proto is kubernetes/cri-api's pkg/apis/runtime/v1/api.proto at commit
479df365173e528979ac14855f456db9a0601cd5 (2025-07-04; Apache-2.0, header
kept), unchanged: the last one without gogoproto imports and before the
`debug_redact` options Debian 12's protoc 3.21 does not know. containerd 1.6
serves runtime.v1; the messages used here are wire-compatible.

  cri.py image ROOTFS OUT.tar REF      a docker-archive of ROOTFS tagged REF
  cri.py gen GEN                       compile api.proto into GEN
  cri.py SOCK GEN run NAME NS UID HOSTPORT CGROUP LOGDIR   prints the pod id
  cri.py SOCK GEN status ID            JSON: state, ip, netns, pid
  cri.py SOCK GEN stop ID | remove ID
  cri.py SOCK GEN list                 JSON: [[id, namespace/name, state]]
"""
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))


def image(rootfs, out, ref):
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name in sorted(os.listdir(rootfs)):
            t.add(os.path.join(rootfs, name), arcname=name)
    layer = layer.getvalue()
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"],
                   "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff]},
    }).encode()
    cfg = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cfg, "RepoTags": [ref], "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(out, "w") as t:
        for name, data in [("layer.tar", layer), (cfg, config), ("manifest.json", manifest)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def gen(out):
    os.makedirs(out, exist_ok=True)
    subprocess.run(["protoc", "-I", HERE, "--python_out=" + out, "api.proto"], check=True)


class Client:
    def __init__(self, sock, gen_dir):
        sys.path.insert(0, gen_dir)
        import grpc
        import api_pb2
        self.api = api_pb2
        self.channel = grpc.insecure_channel("unix://" + sock)

    def call(self, method, request, response):
        stub = self.channel.unary_unary(
            "/runtime.v1.RuntimeService/" + method,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString)
        return stub(request, timeout=120)

    def run(self, name, ns, uid, hostport, cgroup, logdir):
        a = self.api
        ports = []
        if hostport != "-":
            ports.append(a.PortMapping(protocol=a.TCP, container_port=8080, host_port=int(hostport)))
        cfg = a.PodSandboxConfig(
            metadata=a.PodSandboxMetadata(name=name, uid=uid, namespace=ns, attempt=0),
            hostname=name, log_directory=logdir, port_mappings=ports,
            labels={"app": name},
            linux=a.LinuxPodSandboxConfig(
                cgroup_parent=cgroup,
                security_context=a.LinuxSandboxSecurityContext(
                    namespace_options=a.NamespaceOption(network=a.POD, pid=a.CONTAINER, ipc=a.POD))))
        r = self.call("RunPodSandbox", a.RunPodSandboxRequest(config=cfg), a.RunPodSandboxResponse)
        print(r.pod_sandbox_id)

    def status(self, pod):
        a = self.api
        r = self.call("PodSandboxStatus", a.PodSandboxStatusRequest(pod_sandbox_id=pod, verbose=True),
                      a.PodSandboxStatusResponse)
        info = json.loads(r.info.get("info", "{}"))
        netns = ""
        for n in info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", []):
            if n.get("type") == "network":
                netns = n.get("path", "")
        print(json.dumps({
            "state": a.PodSandboxState.Name(r.status.state),
            "ip": r.status.network.ip,
            "netns": netns,
            "pid": info.get("pid", 0),
        }))

    def stop(self, pod):
        a = self.api
        self.call("StopPodSandbox", a.StopPodSandboxRequest(pod_sandbox_id=pod), a.StopPodSandboxResponse)

    def remove(self, pod):
        a = self.api
        self.call("RemovePodSandbox", a.RemovePodSandboxRequest(pod_sandbox_id=pod), a.RemovePodSandboxResponse)

    def list(self):
        a = self.api
        r = self.call("ListPodSandbox", a.ListPodSandboxRequest(), a.ListPodSandboxResponse)
        print(json.dumps([[p.id, p.metadata.namespace + "/" + p.metadata.name,
                           a.PodSandboxState.Name(p.state)] for p in r.items]))


def main(argv):
    if argv[0] == "image":
        return image(*argv[1:4])
    if argv[0] == "gen":
        return gen(argv[1])
    c = Client(argv[0], argv[1])
    getattr(c, argv[2])(*argv[3:])


if __name__ == "__main__":
    main(sys.argv[1:])
