"""bench/run --datapath: what isolation costs per packet.

TCP throughput (iperf3) and UDP request/response latency (sockperf
ping-pong, full round trip) for five setups side by side in the benchmark's
sandbox, all up at once:

  bare            host -> a plain namespace over a veth pair (no netctx:
                  the host is a namespace of its own without nftables,
                  so no conntrack either)
  strict          host -> a strict netctx context
  logged          host -> a strict context logging input, forward, output
  via_host        context a -> context b through the host (a's reach names
                  b's two ports; the host forwards through the dispatch)
  bare_via_host   the same path between two plain namespaces (forwarding on
                  their two host veths only, no nftables): via_host's floor

Each round runs every setup once (iperf3, then sockperf), starting one
setup further each round (round-robin), so drift of the machine lands on
all of them alike, then `examples/pingpong` sends 5,000 UDP round trips to
every setup in turn, packet by packet (its median per setup): the finest
interleaving, which a loaded machine's drift cannot tell apart. Clients
are pinned to CPU 0 and servers to CPU 1 (taskset); the machine is let
settle (at most 5 s) before the first round. Results: medians over the
rounds with their min and max, and the paired ratios (each round's figure
over its bare one's of the same round).
"""

import json
import os
import re
import subprocess
import sys
import time

TCP_PORT = 5201
UDP_PORT = 11111
PINGPONG_PORT = 11112
BARE_HOST = "barehost"
SETUPS = ["bare", "strict", "logged", "via_host", "bare_via_host"]
# (host side, inside) of each veth pair, one /30 each, beside bench/run's
# 10.100.0.0/14 contexts.
NETS = {"bare": ("10.99.0.1", "10.99.0.2"), "s": ("10.99.1.1", "10.99.1.2"),
        "l": ("10.99.2.1", "10.99.2.2"), "a": ("10.99.3.1", "10.99.3.2"),
        "b": ("10.99.4.1", "10.99.4.2"), "ba": ("10.99.5.1", "10.99.5.2"),
        "bb": ("10.99.6.1", "10.99.6.2")}
# setup: (namespace of the client or None for the host, namespace of the
# server, address of the server)
PATHS = {"bare": (BARE_HOST, "bare", NETS["bare"][1]), "strict": (None, "s", NETS["s"][1]),
         "logged": (None, "l", NETS["l"][1]), "via_host": ("a", "b", NETS["b"][1]),
         "bare_via_host": ("ba", "bb", NETS["bb"][1])}
TOOLS = {"iperf3": "iperf3", "sockperf": "sockperf", "taskset": "util-linux"}


def missing_tools():
    """Debian packages of the tools the datapath needs that are not here."""
    return sorted({pkg for exe, pkg in TOOLS.items()
                   if not any(os.access(os.path.join(d, exe), os.X_OK)
                              for d in os.environ["PATH"].split(":"))})


def run(argv, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, **kw)


def context(name, addrs, id_, more=""):
    h, a = addrs
    return (f'[context.{name}]\nid = {id_}\n{more}[[context.{name}.link]]\nkind = "veth"\n'
            f'name = "eth0"\nhost = "nx{name}"\nhost_addresses = ["{h}/30"]\n'
            f'addresses = ["{a}/30"]\n[[context.{name}.route]]\nto = "default"\nvia = "{h}"\n')


def config(work):
    """The four netctx contexts: s strict, l logging, a reaching b."""
    text = "".join([
        context("s", NETS["s"], 1),
        context("l", NETS["l"], 2, 'log = ["input", "forward", "output"]\n'),
        context("a", NETS["a"], 3, f'reach = ["b:{TCP_PORT}/tcp", "b:{UDP_PORT}/udp", "b:{PINGPONG_PORT}/udp"]\n'),
        context("b", NETS["b"], 4)])
    path = os.path.join(work, "datapath.toml")
    with open(path, "w") as f:
        f.write(text)
    return path


def forward_on(veth, ns=None):
    """The host forwards what comes in on `veth` (the input device's switch
    decides; ip_forward stays off). The host's setting: netctx turns none on
    for contexts that reach each other."""
    pre = ["ip", "netns", "exec", ns] if ns else []
    run(pre + ["sysctl", "-q", f"net.ipv4.conf.{veth}.forwarding=1"])


def bare_namespace(ns, forward=False):
    """A plain namespace behind a veth pair whose host side is in BARE_HOST,
    a namespace of its own standing for the host: the sandbox's own has
    netctx's host table (its input and forward hooks, and conntrack with
    them), which a host without netctx does not."""
    h, a = NETS[ns]
    veth = f"dp{ns}"
    cmds = [["ip", "netns", "add", ns],
            ["ip", "-n", BARE_HOST, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
             "netns", ns],
            ["ip", "-n", BARE_HOST, "addr", "add", f"{h}/30", "dev", veth],
            ["ip", "-n", BARE_HOST, "link", "set", veth, "up"],
            ["ip", "-n", ns, "link", "set", "lo", "up"],
            ["ip", "-n", ns, "addr", "add", f"{a}/30", "dev", "eth0"],
            ["ip", "-n", ns, "link", "set", "eth0", "up"],
            ["ip", "-n", ns, "route", "add", "default", "via", h]]
    for c in cmds:
        run(c)
    if forward:
        forward_on(veth, BARE_HOST)


def in_ns(ns, cpu, argv):
    pre = ["ip", "netns", "exec", ns] if ns else []
    return pre + ["taskset", "-c", str(cpu)] + argv


def listening(ns, proto, port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        out = run(["ip", "netns", "exec", ns, "ss", "-Hn", "-l" + proto[0],
                   f"sport = :{port}"]).stdout
        if out.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"datapath: no {proto} server on port {port} in {ns}")


def start_servers(pingpong):
    """An iperf3 and a sockperf server in each server namespace, and one
    pingpong echoing in all of them, on CPU 1. ip netns exec and taskset
    exec the server: the pid is the server's."""
    pp = subprocess.Popen(in_ns(None, 1, [pingpong, "serve", *[
        f"{PATHS[s][1]}@{PATHS[s][2]}:{PINGPONG_PORT}" for s in SETUPS]]),
        stdout=subprocess.PIPE, text=True)
    procs = [pp]
    if pp.stdout.readline().strip() != "ready":
        raise RuntimeError("datapath: pingpong serve did not start")
    for setup in SETUPS:
        _, ns, addr = PATHS[setup]
        procs.append(subprocess.Popen(in_ns(ns, 1, ["iperf3", "-s", "-B", addr, "-p",
                                                    str(TCP_PORT)]),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        procs.append(subprocess.Popen(in_ns(ns, 1, ["sockperf", "server", "-i", addr, "-p",
                                                    str(UDP_PORT)]),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        listening(ns, "tcp", TCP_PORT)
        listening(ns, "udp", UDP_PORT)
    return procs


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def throughput(setup, seconds):
    """Gbit/s the server received over `seconds` of one TCP stream, and
    Gbit per CPU-second of the two iperf3 processes (user + system, with the
    softirq work the kernel does on their time): the cost of a bit, which
    the CPU other processes take from them changes less than the rate."""
    client, _, addr = PATHS[setup]
    out = run(in_ns(client, 0, ["iperf3", "-c", addr, "-p", str(TCP_PORT), "-t", str(seconds),
                                "--connect-timeout", "3000", "-J"]), timeout=seconds + 20).stdout
    end = json.loads(out)["end"]
    gbit = end["sum_received"]["bits_per_second"] * end["sum_received"]["seconds"] / 1e9
    cpu = end["cpu_utilization_percent"]
    cpu_s = (cpu["host_total"] + cpu["remote_total"]) / 100 * end["sum_received"]["seconds"]
    return end["sum_received"]["bits_per_second"] / 1e9, gbit / max(cpu_s, 1e-9)


STALLS = []


def round_trip(setup, seconds, tries=3):
    """Median UDP round trip in µs of sockperf's ping-pong. A datagram lost
    stalls its ping-pong to the end of the run with no observation (seen
    once in about 100 runs on a loaded machine): then the run is repeated,
    and counted in STALLS."""
    client, _, addr = PATHS[setup]
    for _ in range(tries):
        out = run(in_ns(client, 0, ["sockperf", "ping-pong", "-i", addr, "-p", str(UDP_PORT),
                                    "-t", str(seconds), "--full-rtt"]),
                  timeout=seconds + 20).stdout
        m = re.search(r"percentile 50\.000 =\s+([0-9.]+)", out)
        if m:
            return float(m.group(1))
        STALLS.append(setup)
        print(f"  datapath: sockperf to {setup} stalled (a datagram lost?), again",
              file=sys.stderr)
    raise RuntimeError(f"datapath: no median in sockperf's output, {tries} times:\n{out}")


def interleaved(pingpong, count):
    """Median UDP round trip in µs of each setup, `pingpong client` sending
    to all of them in turn, packet by packet, from CPU 0."""
    specs = [f"{PATHS[s][0] or '-'}@{PATHS[s][2]}:{PINGPONG_PORT}" for s in SETUPS]
    out = json.loads(run(in_ns(None, 0, [pingpong, "client", str(count), *specs]),
                         timeout=120).stdout)
    return {s: out[spec]["p50"] for s, spec in zip(SETUPS, specs)}


def spread(xs):
    xs = sorted(xs)
    n = len(xs)
    med = xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    return med, xs[0], xs[-1]


def measure(netctx, pingpong, work, settle, rounds=8, seconds=1, cpu_profile=None):
    """All setups up, `rounds` interleaved rounds, everything down again.
    The dict of results.json's `datapath`."""
    cfg = config(work)
    run([netctx, "-c", cfg, "up"])
    procs = []
    try:
        forward_on("nxa")
        forward_on("nxb")
        run(["ip", "netns", "add", BARE_HOST])
        run(["ip", "-n", BARE_HOST, "link", "set", "lo", "up"])
        bare_namespace("bare")
        bare_namespace("ba", forward=True)
        bare_namespace("bb", forward=True)
        procs = start_servers(pingpong)
        settle()
        gbps = {s: [] for s in SETUPS}
        per_cpu = {s: [] for s in SETUPS}
        rr = {s: [] for s in SETUPS}
        pp = {s: [] for s in SETUPS}
        for r in range(rounds):
            order = SETUPS[r % len(SETUPS):] + SETUPS[:r % len(SETUPS)]
            for s in order:
                rate, cost = throughput(s, seconds)
                gbps[s].append(rate)
                per_cpu[s].append(cost)
                rr[s].append(round_trip(s, seconds))
            for s, v in interleaved(pingpong, 5000).items():
                pp[s].append(v)
            print(f"  datapath round {r + 1}/{rounds}: " +
                  ", ".join(f"{s} {gbps[s][-1]:.1f} Gbit/s {rr[s][-1]:.1f} us" for s in SETUPS),
                  file=sys.stderr)
        profiles = cpu_profile(seconds) if cpu_profile else {}
    finally:
        stop(procs)
        run([netctx, "-c", cfg, "down", "--all"])
        for ns in ["bare", "ba", "bb", BARE_HOST]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    out = {"rounds": rounds, "seconds": seconds, "client_cpu": 0, "server_cpu": 1,
           "sockperf_stalls": list(STALLS)}
    for s in SETUPS:
        out[f"{s}_gbps"], out[f"{s}_gbps_min"], out[f"{s}_gbps_max"] = spread(gbps[s])
        out[f"{s}_rr_us"], out[f"{s}_rr_us_min"], out[f"{s}_rr_us_max"] = spread(rr[s])
        out[f"{s}_pp_us"], out[f"{s}_pp_us_min"], out[f"{s}_pp_us_max"] = spread(pp[s])
        out[f"{s}_gbit_cpu_s"], out[f"{s}_gbit_cpu_s_min"], out[f"{s}_gbit_cpu_s_max"] = \
            spread(per_cpu[s])
        out[f"{s}_gbps_runs"], out[f"{s}_rr_us_runs"] = gbps[s], rr[s]
        out[f"{s}_gbit_cpu_s_runs"] = per_cpu[s]
        out[f"{s}_pp_us_runs"] = pp[s]
    for s in SETUPS[1:4]:
        out[f"{s}_over_bare_gbps"] = out[f"{s}_gbps"] / out["bare_gbps"]
        out[f"{s}_over_bare_rr"] = out[f"{s}_rr_us"] / out["bare_rr_us"]
        out[f"{s}_over_bare_pp"] = out[f"{s}_pp_us"] / out["bare_pp_us"]
    add_paired(out)
    out["via_host_over_bare_via_host_gbps"] = out["via_host_gbps"] / out["bare_via_host_gbps"]
    out["via_host_over_bare_via_host_rr"] = out["via_host_rr_us"] / out["bare_via_host_rr_us"]
    out["via_host_over_bare_via_host_pp"] = out["via_host_pp_us"] / out["bare_via_host_pp_us"]
    if profiles:
        out["profile"] = profiles
    return out


METRICS = [("gbps", ".2f"), ("gbit_cpu_s", ".2f"), ("rr_us", ".1f"), ("pp_us", ".1f")]


def base_of(setup):
    return "bare_via_host" if setup == "via_host" else "bare"


def add_paired(d):
    """Per round, each setup ÷ its bare one measured in the same round: the
    ratio drift cancels out of. `{s}_{metric}_paired`: median, min, max."""
    for s in SETUPS:
        if s.startswith("bare"):
            continue
        for k, _ in METRICS:
            ratios = [a / b for a, b in zip(d[f"{s}_{k}_runs"], d[f"{base_of(s)}_{k}_runs"])]
            d[f"{s}_{k}_paired"] = list(spread(ratios))


def report(d):
    print(f"\ndatapath: median of {d['rounds']} interleaved rounds [min–max] and ÷ bare "
          f"(via_host ÷ bare_via_host); TCP one stream {d['seconds']} s (iperf3); UDP round "
          "trip: sockperf ping-pong (median of each run), pingpong (all setups in turn packet "
          "by packet, median of 5,000 a round)")
    print(f"{'setup':14} {'TCP Gbit/s':>26}   {'TCP Gbit per CPU-s':>26}   "
          f"{'sockperf RR µs':>26}   {'pingpong RR µs':>26}")
    for s in SETUPS:
        base = base_of(s)
        cells = []
        for k, f in METRICS:
            v = d[f"{s}_{k}"]
            cells.append(f"{v:6{f}} [{d[f'{s}_{k}_min']:{f}}–{d[f'{s}_{k}_max']:{f}}]".ljust(20)
                         + f"{v / d[f'{base}_{k}']:5.2f}x")
        print(f"{s:14} " + "   ".join(c.rjust(26) for c in cells))
    print("paired: each round's figure ÷ its bare one's in the same round, median [min–max]")
    for s in SETUPS:
        if f"{s}_gbps_paired" in d:
            print(f"{s:14} " + "   ".join(
                "{:5.2f}x [{:.2f}–{:.2f}]".format(*d[f"{s}_{k}_paired"]).rjust(26)
                for k, _ in METRICS))
    if d.get("profile"):
        print("perf: per cent of the samples of iperf3 and ksoftirqd in netfilter, one run a "
              "setup")
    for s, prof in d.get("profile", {}).items():
        if not prof:
            print(f"  {s:15} no samples")
            continue
        parts = ", ".join(f"{k} {prof[k]:.1f}" for k, _ in PARTS)
        top = ", ".join(f"{k} {v:.1f}" for k, v in prof["top"].items())
        print(f"  {s:15} netfilter {prof['netfilter']:4.1f} % ({parts}; of "
              f"{prof['samples']} samples); top: {top}")
        base = d["profile"].get(base_of(s), {})
        if s.startswith("bare") or not base.get("samples_per_gbit"):
            continue
        more = ", ".join(f"{k} {v:+.0f}" for k, v in grown(prof, base))
        print(f"  {'':15} samples per Gbit {prof['samples_per_gbit']:.0f} against "
              f"{base['samples_per_gbit']:.0f} ({prof['samples_per_gbit'] / base['samples_per_gbit']:.2f}x);"
              f" grown most: {more}")


# Kernel symbols by the part of netfilter they belong to (first match).
PARTS = [("nflog", r"^(__)?nfulnl|^nf_log|^nft_log"),
         ("conntrack", r"^(__)?nf_conntrack|^(__)?nf_ct_|^nf_confirm|^ipv[46]_conntrack|"
                       r"^hash_conntrack|^nf_nat|^tcp_in_window|^nf_tcp|^nf_udp"),
         ("nf_tables", r"^(__)?nft_|^nf_tables"),
         ("hooks", r"^nf_hook|^nf_queue|^nf_iterate")]


def perf_profile(setup, seconds, record=None):
    """Per cent of the CPU samples of the datapath's processes (iperf3 and
    ksoftirqd, system-wide perf at 4 kHz over one iperf3 run) that fall in
    each part of netfilter, and their samples per Gbit received, in all and
    by function (the 40 busiest)."""
    client, _, addr = PATHS[setup]
    data = f"/tmp/netctx-bench-perf-{os.getpid()}.data"
    try:
        res = run(["perf", "record", "-q", "-F", "4000", "-a", "-o", data, "--",
                   *in_ns(client, 0, ["iperf3", "-c", addr, "-p", str(TCP_PORT), "-t",
                                      str(seconds), "-J"])], timeout=seconds + 30).stdout
        got = json.loads(res)["end"]["sum_received"]
        gbit = got["bits_per_second"] * got["seconds"] / 1e9
        out = run(["perf", "script", "-i", data, "-F", "comm,ip,sym"]).stdout
    finally:
        if os.path.exists(data):
            os.unlink(data)
    counts = {name: 0 for name, _ in PARTS}
    total = 0
    syms, every = {}, {}
    for line in out.splitlines():
        m = re.match(r"\s*(.*?)\s+[0-9a-f]+\s+(\S+)", line)
        if not m or not (m.group(1) == "iperf3" or m.group(1).startswith("ksoftirqd")):
            continue
        total += 1
        sym = m.group(2)
        every[sym] = every.get(sym, 0) + 1
        for name, rx in PARTS:
            if re.search(rx, sym):
                counts[name] += 1
                syms[sym] = syms.get(sym, 0) + 1
                break
    if not total:
        return {}
    prof = {name: 100 * c / total for name, c in counts.items()}
    prof["netfilter"] = sum(prof.values())
    prof["samples"] = total
    top = sorted(syms.items(), key=lambda kv: -kv[1])[:5]
    prof["top"] = {s: round(100 * c / total, 2) for s, c in top}
    prof["samples_per_gbit"] = total / gbit
    busiest = sorted(every.items(), key=lambda kv: -kv[1])[:40]
    prof["per_gbit"] = {s: c / gbit for s, c in busiest}
    return prof


def grown(prof, base, n=6):
    """The functions whose samples per Gbit grew most over `base`'s."""
    a, b = prof.get("per_gbit", {}), base.get("per_gbit", {})
    diff = {s: a.get(s, 0) - b.get(s, 0) for s in set(a) | set(b)}
    return sorted(diff.items(), key=lambda kv: -kv[1])[:n]
