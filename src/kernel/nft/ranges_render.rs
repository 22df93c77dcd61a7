//! Range sets in `nft` syntax (`plan -v`, the test fixtures).

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{to_num, Elem, RangeSet, IPPROTO_TCP, IPPROTO_UDP, TABLE};

impl RangeSet {
    fn key_type(&self) -> &'static str {
        match (self.v6, self.ports) {
            (false, false) => "ipv4_addr",
            (true, false) => "ipv6_addr",
            (false, true) => "ipv4_addr . inet_proto . inet_service",
            (true, true) => "ipv6_addr . inet_proto . inet_service",
        }
    }

    /// In `nft -f` syntax (`plan -v`).
    pub fn render(&self) -> String {
        let mut s = format!(
            "\tset {} {{\n\t\ttype {}\n\t\tflags interval\n",
            self.name,
            self.key_type()
        );
        if !self.elems.is_empty() {
            writeln!(s, "\t\telements = {{ {} }}", self.render_elems(&self.elems)).unwrap();
        }
        s.push_str("\t}\n");
        s
    }

    /// Elements in `nft` syntax, comma-separated.
    pub fn render_elems(&self, elems: &[Elem]) -> String {
        let alen = self.addr_len() as usize;
        let e: Vec<String> = elems
            .iter()
            .map(|e| {
                let addrs = render_addrs(self.v6, &e.lo[..alen], &e.hi[..alen]);
                if !self.ports {
                    return addrs;
                }
                let proto = match e.lo.get(alen) {
                    Some(&IPPROTO_UDP) => "udp".to_string(),
                    Some(&IPPROTO_TCP) => "tcp".to_string(),
                    p => p.copied().unwrap_or_default().to_string(),
                };
                let port = |k: &[u8]| u16::from_be_bytes([k[alen + 4], k[alen + 5]]);
                let (lo, hi) = (port(&e.lo), port(&e.hi));
                if lo == hi {
                    format!("{addrs} . {proto} . {lo}")
                } else {
                    format!("{addrs} . {proto} . {lo}-{hi}")
                }
            })
            .collect();
        e.join(", ")
    }

    /// The element changes in `nft` syntax (`plan -v`).
    pub fn render_change(&self, del: &[Elem], add: &[Elem]) -> String {
        let mut s = String::new();
        for (verb, e) in [("delete", del), ("add", add)] {
            if !e.is_empty() {
                let elems = self.render_elems(e);
                writeln!(s, "{verb} element inet {TABLE} {} {{ {elems} }}", self.name).unwrap();
            }
        }
        s
    }
}

fn render_addrs(v6: bool, lo: &[u8], hi: &[u8]) -> String {
    let addr = |b: &[u8]| -> IpAddr {
        if v6 {
            Ipv6Addr::from(to_num(b)).into()
        } else {
            Ipv4Addr::from(u32::try_from(to_num(b)).unwrap_or_default()).into()
        }
    };
    let (l, h) = (to_num(lo), to_num(hi));
    let bits = if v6 { 128 } else { 32 };
    let size = h.wrapping_sub(l).wrapping_add(1);
    if l == h {
        return addr(lo).to_string();
    }
    if size == 0 {
        return format!("{}/0", addr(lo));
    }
    if size.is_power_of_two() && l % size == 0 {
        return format!("{}/{}", addr(lo), bits - size.trailing_zeros());
    }
    format!("{}-{}", addr(lo), addr(hi))
}
