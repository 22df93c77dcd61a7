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
use super::ports::{parse_entry, parse_publish, EntryKind};
use super::{addr, Diag, Lines, Loc};
use crate::model::{Cidr, Egress, Guest, Hook, Isolation, LinkKind, Publish, Reach};

mod guest;
mod limits;

/// Context-level settings that `[defaults]` may also carry.
#[derive(Debug, Default, Clone)]
pub struct Settings {
    pub ip_forward: Option<bool>,
    pub log: Option<Vec<Hook>>,
    pub log_group: Option<u16>,
    pub log_rate: Option<u32>,
    pub isolation: Option<Isolation>,
    pub single_ip: Option<bool>,
    pub announce: Option<bool>,
    /// The uplink and where it was given.
    pub uplink: Option<(String, Loc)>,
    pub egress: Option<(Egress, Loc)>,
    /// `[defaults]` only: what netctx does with the host's own firewall.
    pub host_firewall: Option<crate::model::HostFirewall>,
    /// `[defaults]` only: the administrator's floor.
    pub deny: Option<Vec<(Reach, Loc)>>,
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
    pub accept_from: Vec<(Reach, Loc)>,
    pub publish: Vec<(Publish, Loc)>,
    pub guest: Option<Guest>,
    pub limits: Option<crate::model::Limits>,
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

mod link;

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
            "announce" => s.announce = self.boolean(v, key),
            "log_group" => s.log_group = self.integer(v, key, 0, u16::MAX),
            "log_rate" => s.log_rate = self.integer(v, key, 1, u16::MAX).map(u32::from),
            "uplink" => {
                s.uplink = self.string(v, key).and_then(|u| match check_ifname(&u) {
                    Ok(()) => Some((u, self.loc(v.span()))),
                    Err(e) => {
                        self.err(v.span(), format!("uplink: {e}"));
                        None
                    }
                })
            }
            "egress" => {
                let e = match self.string(v, key) {
                    Some(e) => e.parse().map_err(|m| self.err(v.span(), m)).ok(),
                    None => None,
                };
                s.egress = e.map(|e| (e, self.loc(v.span())));
            }
            "isolation" => {
                s.isolation = match self.string(v, key) {
                    Some(i) => i.parse().map_err(|m| self.err(v.span(), m)).ok(),
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
            if is_defaults && key == "host_firewall" {
                s.host_firewall = match self.string(v, key).as_deref() {
                    Some("auto") => Some(crate::model::HostFirewall::Auto),
                    Some("none") => Some(crate::model::HostFirewall::None),
                    Some(other) => {
                        let m =
                            format!("host_firewall must be \"auto\" or \"none\", not {other:?}");
                        self.err(v.span(), m);
                        None
                    }
                    None => None,
                };
                continue;
            }
            if is_defaults && key == "deny" {
                s.deny = Some(self.entries(v, EntryKind::Deny));
                continue;
            }
            if !self.setting(&mut s, key, v) && is_defaults {
                self.unknown(
                    k,
                    key,
                    "in [defaults] (expected ip_forward, log, log_group, log_rate, isolation, single_ip, uplink, egress, announce, host_firewall, deny)",
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
            accept_from: Vec::new(),
            publish: Vec::new(),
            guest: None,
            limits: None,
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
                "limits" => c.limits = Some(self.limits(v, &cname)),
                "reach" => c.reach = self.entries(v, EntryKind::Reach),
                "accept_from" => c.accept_from = self.entries(v, EntryKind::AcceptFrom),
                "publish" => c.publish = self.publish(v),
                _ => self.unknown(
                    k,
                    key,
                    &format!("in [context.{cname}] (expected id, ip_forward, log, log_group, log_rate, isolation, single_ip, uplink, egress, announce, hostname, link, route, reach, accept_from, publish, guest, limits)"),
                ),
            }
        }
        Some(c)
    }

    /// `reach = ["db", "cache:8000-8100/udp", "host:53/udp",
    /// "10.20.0.0/16:443"]`, and likewise `accept_from` and `deny`.
    fn entries(&mut self, v: &Value<'_>, kind: EntryKind) -> Vec<(Reach, Loc)> {
        let key = match kind {
            EntryKind::Reach => "reach",
            EntryKind::AcceptFrom => "accept_from",
            EntryKind::Deny => "deny",
        };
        let mut out = Vec::new();
        for (s, span) in self.strings(v, key).unwrap_or_default() {
            match parse_entry(&s, kind) {
                Ok(r) => out.push((r, self.loc(span))),
                Err(e) => self.err(span, e),
            }
        }
        out
    }

    /// `publish = ["8080:80", "203.0.113.1:8443:443/tcp", "[::]:5353:53/udp"]`.
    fn publish(&mut self, v: &Value<'_>) -> Vec<(Publish, Loc)> {
        let mut out = Vec::new();
        for (s, span) in self.strings(v, "publish").unwrap_or_default() {
            match parse_publish(&s) {
                Ok(p) => out.push((p, self.loc(span))),
                Err(e) => self.err(span, e),
            }
        }
        out
    }
}
