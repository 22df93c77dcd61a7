//! Links and routes of a context, walked with the parser's `Walker`.

use std::net::IpAddr;

use super::{check_ifname, LinkDecl, RouteDecl, Value, Walker};
use crate::model::{Cidr, LinkKind};

impl Walker<'_> {
    pub(super) fn link(&mut self, v: &Value<'_>) -> Option<LinkDecl> {
        let t = self.table(v, "link")?;
        let (mut kind, mut name, mut host) = (None, None, None);
        let (mut host_addresses, mut addresses) = (Vec::new(), Vec::new());
        let mut host_addr_span = None;
        let mut accept_ra = false;
        let mut ok = true;
        for (k, val) in t {
            let key = k.get_ref().as_ref();
            match key {
                "kind" => match self.string(val, key).as_deref() {
                    Some("veth") => kind = Some(LinkKind::Veth),
                    Some("dummy") => kind = Some(LinkKind::Dummy),
                    Some(other) => {
                        let m = format!("link kind must be \"veth\" or \"dummy\", not {other:?}");
                        self.err(val.span(), m);
                        ok = false;
                    }
                    None => ok = false,
                },
                "name" | "host" => {
                    let parsed = self.string(val, key).and_then(|s| match check_ifname(&s) {
                        Ok(()) => Some((s, self.loc(val.span()))),
                        Err(e) => {
                            self.err(val.span(), format!("{key}: {e}"));
                            None
                        }
                    });
                    ok &= parsed.is_some();
                    if key == "name" {
                        name = parsed;
                    } else {
                        host = parsed.map(|p| (p, k.span()));
                    }
                }
                "addresses" => addresses = self.cidrs(val, key),
                "accept_ra" => accept_ra = self.boolean(val, key).unwrap_or(false),
                "host_addresses" => {
                    host_addresses = self.cidrs(val, key);
                    host_addr_span = Some(k.span());
                }
                _ => self.unknown(
                    k,
                    key,
                    "in link (expected kind, name, host, host_addresses, addresses, accept_ra)",
                ),
            }
        }
        let table_at = v.span();
        let Some(kind) = kind else {
            if ok {
                self.err(table_at, "link needs a kind (\"veth\" or \"dummy\")".into());
            }
            return None;
        };
        if kind == LinkKind::Dummy {
            if let Some((_, span)) = &host {
                self.err(
                    span.clone(),
                    "host is for veth links only, not dummy".into(),
                );
            }
            if let Some(span) = host_addr_span {
                self.err(
                    span,
                    "host_addresses is for veth links only, not dummy".into(),
                );
            }
        }
        let Some((name, loc)) = name else {
            if ok {
                self.err(table_at, "link needs a name".into());
            }
            return None;
        };
        Some(LinkDecl {
            kind,
            name,
            loc,
            host: host.map(|(h, _)| h),
            host_addresses,
            addresses,
            accept_ra,
        })
    }

    pub(super) fn route(&mut self, v: &Value<'_>) -> Option<RouteDecl> {
        let t = self.table(v, "route")?;
        let (mut to, mut via) = (None, None);
        let mut ok = true;
        let mut to_span = None;
        for (k, val) in t {
            let key = k.get_ref().as_ref();
            match key {
                "to" => match self.string(val, key) {
                    Some(s) if s == "default" => to = Some(None),
                    Some(s) => match Cidr::parse(&s) {
                        Ok(c) if c.network() != c.addr => {
                            let m = format!(
                                "route destination {c} has host bits set (did you mean {}?)",
                                c.subnet()
                            );
                            self.err(val.span(), m);
                            ok = false;
                        }
                        Ok(c) => {
                            to = Some(Some(c));
                            to_span = Some(val.span());
                        }
                        Err(e) if s.contains('/') => {
                            self.err(val.span(), format!("route destination: {e}"));
                            ok = false;
                        }
                        Err(_) => {
                            let m = format!(
                                "route destination {s:?} must be \"default\" or a CIDR such as 10.0.0.0/8"
                            );
                            self.err(val.span(), m);
                            ok = false;
                        }
                    },
                    None => ok = false,
                },
                "via" => match self.string(val, key) {
                    Some(s) => match s.parse::<IpAddr>() {
                        Ok(ip) => via = Some((ip, self.loc(val.span()))),
                        Err(_) => {
                            self.err(
                                val.span(),
                                format!("route gateway {s:?} is not an IP address"),
                            );
                            ok = false;
                        }
                    },
                    None => ok = false,
                },
                _ => self.unknown(k, key, "in route (expected to, via)"),
            }
        }
        if !ok {
            return None;
        }
        let (Some(to), Some((via, via_loc))) = (to, via) else {
            let m = "route needs both to (\"default\" or a CIDR) and via (a gateway address)";
            self.err(v.span(), m.into());
            return None;
        };
        if let (Some(c), Some(span)) = (to, to_span) {
            if c.is_v4() != via.is_ipv4() {
                self.err(span, format!("route to {c} via {via} mixes IPv4 and IPv6"));
                return None;
            }
        }
        Some(RouteDecl { to, via, via_loc })
    }
}
