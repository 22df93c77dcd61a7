//! The log line of an NFLOG packet, in the classic form of the kernel's LOG
//! target, as in the 2004 VServer mail:
//! `web INPUT: IN=eth0 OUT= SRC=10.100.0.1 DST=10.100.0.2 LEN=84 PROTO=ICMP TYPE=8 CODE=0 ID=5665 SEQ=1`
//! — or the same as a JSON object (`--json`).

use std::net::IpAddr;

use serde::Serialize;

use crate::observe::nflog::Headers;

/// The chain a prefix names: `CTX:INPUT:` → `INPUT`.
pub fn chain_of(prefix: &str) -> &str {
    prefix
        .strip_prefix("CTX:")
        .and_then(|s| s.strip_suffix(':'))
        .unwrap_or(prefix)
}

/// The log line for a packet of context `ctx`, devices already named.
pub fn format_line(ctx: &str, chain: &str, indev: &str, outdev: &str, h: &Headers) -> String {
    let ip = |a: Option<IpAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let (indev, outdev) = (crate::model::escape(indev), crate::model::escape(outdev));
    let mut s = format!(
        "{ctx} {chain}: IN={indev} OUT={outdev} SRC={} DST={} LEN={} PROTO={}",
        ip(h.src),
        ip(h.dst),
        h.len,
        h.proto
    );
    if let (Some(sp), Some(dp)) = (h.sport, h.dport) {
        s.push_str(&format!(" SPT={sp} DPT={dp}"));
    }
    if let Some((t, c)) = h.icmp {
        s.push_str(&format!(" TYPE={t} CODE={c}"));
    }
    match (h.echo, h.ip_id) {
        (Some((id, seq)), _) => s.push_str(&format!(" ID={id} SEQ={seq}")),
        (None, Some(id)) => s.push_str(&format!(" ID={id}")),
        _ => {}
    }
    s
}

/// One line of `logs --json` (fields in name order).
#[derive(Serialize)]
pub struct LogLine<'a> {
    chain: &'a str,
    context: &'a str,
    dpt: Option<u16>,
    dst: Option<IpAddr>,
    icmp_code: Option<u8>,
    icmp_type: Option<u8>,
    id: Option<u16>,
    #[serde(rename = "in")]
    indev: &'a str,
    len: u32,
    line: String,
    #[serde(rename = "out")]
    outdev: &'a str,
    /// A CNI attachment's `NAMESPACE/POD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pod: Option<&'a str>,
    proto: &'a str,
    seq: Option<u16>,
    spt: Option<u16>,
    src: Option<IpAddr>,
}

/// The context as a text line names it: an attachment with its pod.
pub fn label(ctx: &str, pod: Option<&str>) -> String {
    match pod {
        Some(p) => format!("{ctx} ({p})"),
        None => ctx.to_string(),
    }
}

pub fn to_json<'a>(
    ctx: &'a str,
    pod: Option<&'a str>,
    chain: &'a str,
    indev: &'a str,
    outdev: &'a str,
    h: &'a Headers,
) -> LogLine<'a> {
    LogLine {
        chain,
        context: ctx,
        dpt: h.dport,
        dst: h.dst,
        icmp_code: h.icmp.map(|i| i.1),
        icmp_type: h.icmp.map(|i| i.0),
        id: h.echo.map(|e| e.0).or(h.ip_id),
        indev,
        len: h.len,
        line: format_line(&label(ctx, pod), chain, indev, outdev, h),
        outdev,
        pod,
        proto: &h.proto,
        seq: h.echo.map(|e| e.1),
        spt: h.sport,
        src: h.src,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;
    use crate::observe::nflog::parse_headers;
    use crate::observe::nflog::tests::icmp_echo;

    #[test]
    fn icmp_echo_is_printed_as_in_the_mail() {
        let h = parse_headers(&icmp_echo());
        assert_eq!(
            format_line("web", "INPUT", "eth0", "", &h),
            "web INPUT: IN=eth0 OUT= SRC=10.100.0.1 DST=10.100.0.2 LEN=84 PROTO=ICMP TYPE=8 CODE=0 ID=5665 SEQ=1"
        );
    }

    #[test]
    fn udp_and_tcp_show_ports_and_ip_id() {
        let mut p = vec![
            0x45, 0, 0, 30, 0, 7, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        p.extend_from_slice(&[0x30, 0x39, 0, 53, 0, 10, 0, 0]);
        let h = parse_headers(&p);
        assert_eq!(
            format_line("b", "DROP", "", "eth0", &h),
            "b DROP: IN= OUT=eth0 SRC=10.0.0.1 DST=10.0.0.2 LEN=30 PROTO=UDP SPT=12345 DPT=53 ID=7"
        );
        p[9] = 6;
        assert_eq!(parse_headers(&p).proto, "TCP");
    }

    #[test]
    fn ipv6_echo_request() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 58, 64];
        p.extend_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&"fd00::2".parse::<Ipv6Addr>().unwrap().octets());
        p.extend_from_slice(&[128, 0, 0, 0, 0, 9, 0, 3]);
        let h = parse_headers(&p);
        assert_eq!(
            format_line("a", "OUTPUT", "", "eth0", &h),
            "a OUTPUT: IN= OUT=eth0 SRC=fd00::1 DST=fd00::2 LEN=56 PROTO=ICMPv6 TYPE=128 CODE=0 ID=9 SEQ=3"
        );
    }
}
