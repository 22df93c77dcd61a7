//! Walks one TOML document (toml's spanned `DeTable`) into declarations,
//! recording every problem with its `FILE:LINE:COL` instead of stopping at
//! the first. Values that fail are dropped so that later cross-checks only see
//! well-formed data. Knows nothing about other files or the kernel.

use std::borrow::Cow;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::names::{check_context_name, check_hostname, check_ifname};
use super::{addr, Diag, Lines, Loc};
use crate::model::{Cidr, Guest, Hook, Isolation, LinkKind, Proto, Reach};

mod guest;

/// Context-level settings that `[defaults]` may also carry.
#[derive(Debug, Default, Clone)]
pub struct Settings {
    pub ip_forward: Option<bool>,
    pub log: Option<Vec<Hook>>,
    pub log_group: Option<u16>,
    pub log_rate: Option<u32>,
    pub isolation: Option<Isolation>,
    pub single_ip: Option<bool>,
}

#[derive(Debug)]
pub struct CtxDecl {
    pub name: String,
    pub loc: Loc,
    pub id: Option<(u16, Loc)>,
    pub hostname: Option<String>,
    pub settings: Settings,
    pub links: Vec<LinkDecl>,
    pub routes: Vec<RouteDecl>,
    pub reach: Vec<(Reach, Loc)>,
    pub guest: Option<Guest>,
}

#[derive(Debug)]
pub struct LinkDecl {
    pub kind: LinkKind,
    pub name: String,
    pub loc: Loc,
    pub host: Option<(String, Loc)>,
    pub host_addresses: Vec<(Cidr, Loc)>,
    pub addresses: Vec<(Cidr, Loc)>,
    pub accept_ra: bool,
}

#[derive(Debug)]
pub struct RouteDecl {
    pub to: Option<Cidr>,
    pub via: IpAddr,
    pub via_loc: Loc,
}

#[derive(Debug, Default)]
pub struct FileDecl {
    pub defaults: Option<(Settings, Loc)>,
    pub contexts: Vec<CtxDecl>,
}

type Table<'i> = DeTable<'i>;
type Value<'i> = Spanned<DeValue<'i>>;

struct Walker<'a> {
    file: &'a Path,
    lines: Lines<'a>,
    diags: &'a mut Vec<Diag>,
}

/// Parse one file's text. Syntax and shape errors go to `diags`.
pub fn parse_file(file: &Path, text: &str, diags: &mut Vec<Diag>) -> FileDecl {
    let (doc, errors) = DeTable::parse_recoverable(text);
    let mut w = Walker {
        file,
        lines: Lines::new(text),
        diags,
    };
    for e in errors {
        let at = e.span().map(|s| s.start).unwrap_or(0);
        let msg = e.message().trim().to_string();
        w.err_at(at, format!("TOML syntax: {msg}"));
    }
    let mut out = FileDecl::default();
    for (key, value) in doc.get_ref() {
        match key.get_ref().as_ref() {
            "defaults" => {
                if let Some(t) = w.table(value, "[defaults]") {
                    let s = w.settings(t, true);
                    out.defaults = Some((s, w.loc(key.span())));
                }
            }
            "context" => {
                if let Some(t) = w.table(value, "[context]") {
                    for (name, body) in t {
                        if let Some(c) = w.context(name, body) {
                            out.contexts.push(c);
                        }
                    }
                }
            }
            other => w.unknown(
                key,
                other,
                "at top level (expected [defaults] or [context.NAME])",
            ),
        }
    }
    out
}

impl Walker<'_> {
    fn loc(&self, span: Range<usize>) -> Loc {
        self.lines.loc(self.file, span.start)
    }

    fn err(&mut self, span: Range<usize>, msg: String) {
        self.err_at(span.start, msg);
    }

    fn err_at(&mut self, offset: usize, msg: String) {
        let loc = self.lines.loc(self.file, offset);
        self.diags.push(Diag { loc, msg });
    }

    fn unknown(&mut self, key: &Spanned<Cow<'_, str>>, name: &str, place: &str) {
        self.err(key.span(), format!("unknown key {name:?} {place}"));
    }

    fn table<'v, 'i>(&mut self, v: &'v Value<'i>, what: &str) -> Option<&'v Table<'i>> {
        match v.get_ref() {
            DeValue::Table(t) => Some(t),
            other => {
                let ty = other.type_str();
                self.err(v.span(), format!("{what} must be a table, not {ty}"));
                None
            }
        }
    }

    fn string(&mut self, v: &Value<'_>, key: &str) -> Option<String> {
        match v.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            other => {
                let ty = other.type_str();
                self.err(v.span(), format!("{key} must be a string, not {ty}"));
                None
            }
        }
    }

    fn boolean(&mut self, v: &Value<'_>, key: &str) -> Option<bool> {
        match v.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                let ty = other.type_str();
                self.err(v.span(), format!("{key} must be true or false, not {ty}"));
                None
            }
        }
    }

    fn integer(&mut self, v: &Value<'_>, key: &str, min: u16, max: u16) -> Option<u16> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match n {
            Some(n) if n >= i128::from(min) && n <= i128::from(max) => u16::try_from(n).ok(),
            _ => {
                self.err(
                    v.span(),
                    format!("{key} must be an integer in {min}..={max}"),
                );
                None
            }
        }
    }

    fn array<'v, 'i>(&mut self, v: &'v Value<'i>, key: &str) -> Option<&'v [Value<'i>]> {
        match v.get_ref() {
            DeValue::Array(a) => Some(a.as_ref()),
            other => {
                let ty = other.type_str();
                self.err(v.span(), format!("{key} must be an array, not {ty}"));
                None
            }
        }
    }

    fn strings(&mut self, v: &Value<'_>, key: &str) -> Option<Vec<(String, Range<usize>)>> {
        let items = self.array(v, key)?;
        let mut out = Vec::new();
        for item in items {
            out.push((
                self.string(item, &format!("each entry of {key}"))?,
                item.span(),
            ));
        }
        Some(out)
    }

    fn cidrs(&mut self, v: &Value<'_>, key: &str) -> Vec<(Cidr, Loc)> {
        let mut out = Vec::new();
        for (s, span) in self.strings(v, key).unwrap_or_default() {
            match Cidr::parse(&s) {
                Ok(c) => match addr::problem(&c) {
                    None => out.push((c, self.loc(span))),
                    Some(why) => self.err(span, format!("{key}: {why}")),
                },
                Err(e) => self.err(span, format!("{key}: {e}")),
            }
        }
        out
    }

    /// Keys shared by `[defaults]` and `[context.NAME]`. Returns true when
    /// the key was one of them.
    fn setting(&mut self, s: &mut Settings, key: &str, v: &Value<'_>) -> bool {
        match key {
            "ip_forward" => s.ip_forward = self.boolean(v, key),
            "single_ip" => s.single_ip = self.boolean(v, key),
            "log_group" => s.log_group = self.integer(v, key, 0, u16::MAX),
            "log_rate" => s.log_rate = self.integer(v, key, 1, u16::MAX).map(u32::from),
            "isolation" => {
                s.isolation = match self.string(v, key).as_deref() {
                    Some("strict") => Some(Isolation::Strict),
                    Some("off") => Some(Isolation::Off),
                    Some(other) => {
                        let m = format!("isolation must be \"strict\" or \"off\", not {other:?}");
                        self.err(v.span(), m);
                        None
                    }
                    None => None,
                }
            }
            "log" => {
                let mut hooks = Vec::new();
                for (name, span) in self.strings(v, key).unwrap_or_default() {
                    match Hook::parse(&name) {
                        Some(h) if !hooks.contains(&h) => hooks.push(h),
                        Some(_) => self.err(span, format!("log lists {name:?} twice")),
                        None => self.err(
                            span,
                            format!("log entry {name:?} is not one of \"input\", \"forward\", \"output\""),
                        ),
                    }
                }
                hooks.sort();
                s.log = Some(hooks);
            }
            _ => return false,
        }
        true
    }

    fn settings(&mut self, t: &Table<'_>, is_defaults: bool) -> Settings {
        let mut s = Settings::default();
        for (k, v) in t {
            let key = k.get_ref().as_ref();
            if !self.setting(&mut s, key, v) && is_defaults {
                self.unknown(
                    k,
                    key,
                    "in [defaults] (expected ip_forward, log, log_group, log_rate, isolation, single_ip)",
                );
            }
        }
        s
    }

    fn context(&mut self, name: &Spanned<Cow<'_, str>>, body: &Value<'_>) -> Option<CtxDecl> {
        let cname = name.get_ref().to_string();
        let loc = self.loc(name.span());
        if let Err(e) = check_context_name(&cname) {
            self.err(name.span(), e);
        }
        let t = self.table(body, &format!("[context.{cname}]"))?;
        let mut c = CtxDecl {
            name: cname.clone(),
            loc,
            id: None,
            hostname: None,
            settings: Settings::default(),
            links: Vec::new(),
            routes: Vec::new(),
            reach: Vec::new(),
            guest: None,
        };
        for (k, v) in t {
            let key = k.get_ref().as_ref();
            if self.setting(&mut c.settings, key, v) {
                continue;
            }
            match key {
                "id" => c.id = self.integer(v, key, 1, u16::MAX).map(|i| (i, self.loc(v.span()))),
                "hostname" => {
                    c.hostname = self.string(v, key).and_then(|h| match check_hostname(&h) {
                        Ok(()) => Some(h),
                        Err(e) => {
                            self.err(v.span(), e);
                            None
                        }
                    })
                }
                "link" => {
                    for item in self.array(v, "link").unwrap_or_default() {
                        if let Some(l) = self.link(item) {
                            c.links.push(l);
                        }
                    }
                }
                "route" => {
                    for item in self.array(v, "route").unwrap_or_default() {
                        if let Some(r) = self.route(item) {
                            c.routes.push(r);
                        }
                    }
                }
                "guest" => c.guest = self.guest(v),
                "reach" => c.reach = self.reach(v),
                _ => self.unknown(
                    k,
                    key,
                    &format!("in [context.{cname}] (expected id, ip_forward, log, log_group, log_rate, isolation, single_ip, hostname, link, route, reach, guest)"),
                ),
            }
        }
        Some(c)
    }

    fn link(&mut self, v: &Value<'_>) -> Option<LinkDecl> {
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

    fn route(&mut self, v: &Value<'_>) -> Option<RouteDecl> {
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

    /// `reach = ["db", "cache:6379/tcp", "dns:53/udp"]`.
    fn reach(&mut self, v: &Value<'_>) -> Vec<(Reach, Loc)> {
        let mut out = Vec::new();
        for (s, span) in self.strings(v, "reach").unwrap_or_default() {
            match parse_reach(&s) {
                Ok(r) => out.push((r, self.loc(span))),
                Err(e) => self.err(span, e),
            }
        }
        out
    }
}

/// `CTX`, `CTX:PORT` or `CTX:PORT/tcp|udp` (tcp by default).
fn parse_reach(s: &str) -> Result<Reach, String> {
    let bad = || format!("reach entry {s:?} must be CONTEXT or CONTEXT:PORT[/tcp|/udp]");
    let (ctx, port) = match s.split_once(':') {
        None => (s, None),
        Some((c, rest)) => {
            let (p, proto) = match rest.split_once('/') {
                None => (rest, Proto::Tcp),
                Some((p, "tcp")) => (p, Proto::Tcp),
                Some((p, "udp")) => (p, Proto::Udp),
                Some(_) => return Err(bad()),
            };
            let port: u16 = p.parse().ok().filter(|p| *p != 0).ok_or_else(bad)?;
            (c, Some((port, proto)))
        }
    };
    check_context_name(ctx).map_err(|_| bad())?;
    Ok(Reach {
        context: ctx.to_string(),
        port,
        links: Vec::new(),
    })
}
