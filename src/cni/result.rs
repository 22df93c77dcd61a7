//! The spec's Success result: parsed from any supported version (an IPAM
//! plugin's answer, a `prevResult`) and written in the version the
//! configuration asks for. Fields netctx does not interpret are kept.

use std::net::IpAddr;

use serde_json::{json, Map, Value};

use super::error::{CniError, Result};
use super::version;
use crate::model::Cidr;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interface {
    pub name: String,
    pub mac: Option<String>,
    /// The namespace path for an interface inside the container.
    pub sandbox: Option<String>,
    /// Keys netctx does not interpret (mtu, socketPath, pciID…).
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IpConfig {
    pub address: Cidr,
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteConfig {
    pub dst: Cidr,
    pub gw: Option<IpAddr>,
    /// mtu, advmss, priority, table, scope: passed through.
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<RouteConfig>,
    pub dns: Map<String, Value>,
}

fn decode(what: &str, why: impl Into<String>) -> CniError {
    CniError::Decode {
        what: what.to_string(),
        why: why.into(),
    }
}

fn str_field<'a>(o: &'a Map<String, Value>, key: &str, what: &str) -> Result<Option<&'a str>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(decode(what, format!("{key} is {v}, not a string"))),
    }
}

fn ip_field(o: &Map<String, Value>, key: &str, what: &str) -> Result<Option<IpAddr>> {
    str_field(o, key, what)?
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|_| decode(what, format!("{key} {s:?} is not an IP address")))
        })
        .transpose()
}

fn cidr_field(o: &Map<String, Value>, key: &str, what: &str) -> Result<Cidr> {
    let s = str_field(o, key, what)?.ok_or_else(|| decode(what, format!("{key} is missing")))?;
    Cidr::parse(s).map_err(|e| decode(what, format!("{key}: {e}")))
}

fn objects<'a>(v: &'a Value, key: &str, what: &str) -> Result<Vec<&'a Map<String, Value>>> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|e| {
                e.as_object()
                    .ok_or_else(|| decode(what, format!("an entry of {key} is not an object")))
            })
            .collect(),
        Some(_) => Err(decode(what, format!("{key} is not an array"))),
    }
}

fn parse_route(o: &Map<String, Value>, what: &str) -> Result<RouteConfig> {
    let mut extra = o.clone();
    extra.remove("dst");
    extra.remove("gw");
    Ok(RouteConfig {
        dst: cidr_field(o, "dst", what)?,
        gw: ip_field(o, "gw", what)?,
        extra,
    })
}

impl CniResult {
    /// Parse a result of version 0.3.0 or newer; `what` names it in errors.
    pub fn parse(v: &Value, what: &str) -> Result<CniResult> {
        if !v.is_object() {
            return Err(decode(what, "not a JSON object"));
        }
        let mut r = CniResult::default();
        for o in objects(v, "interfaces", what)? {
            let mut extra = o.clone();
            for k in ["name", "mac", "sandbox"] {
                extra.remove(k);
            }
            r.interfaces.push(Interface {
                name: str_field(o, "name", what)?.unwrap_or_default().to_string(),
                mac: str_field(o, "mac", what)?.map(str::to_string),
                sandbox: str_field(o, "sandbox", what)?
                    .filter(|s| !s.is_empty())
                    .map(str::to_string),
                extra,
            });
        }
        for o in objects(v, "ips", what)? {
            let interface = match o.get("interface") {
                None | Some(Value::Null) => None,
                Some(i) => Some(
                    i.as_u64()
                        .and_then(|i| usize::try_from(i).ok())
                        .filter(|i| r.interfaces.is_empty() || *i < r.interfaces.len())
                        .ok_or_else(|| {
                            decode(
                                what,
                                format!("ips: interface {i} is not an index into interfaces"),
                            )
                        })?,
                ),
            };
            r.ips.push(IpConfig {
                address: cidr_field(o, "address", what)?,
                gateway: ip_field(o, "gateway", what)?,
                interface,
            });
        }
        for o in objects(v, "routes", what)? {
            r.routes.push(parse_route(o, what)?);
        }
        match v.get("dns") {
            None | Some(Value::Null) => {}
            Some(Value::Object(d)) => r.dns = d.clone(),
            Some(_) => return Err(decode(what, "dns is not an object")),
        }
        Ok(r)
    }

    /// The result in `ver` (0.3.x/0.4.0 tag IPs with `version`).
    pub fn to_json(&self, ver: &str) -> Value {
        let tagged = version::ips_carry_version(ver);
        let interfaces: Vec<Value> = self
            .interfaces
            .iter()
            .map(|i| {
                let mut o = Map::new();
                o.insert("name".into(), json!(i.name));
                if let Some(m) = &i.mac {
                    o.insert("mac".into(), json!(m));
                }
                if let Some(s) = &i.sandbox {
                    o.insert("sandbox".into(), json!(s));
                }
                for (k, v) in &i.extra {
                    o.entry(k.clone()).or_insert_with(|| v.clone());
                }
                Value::Object(o)
            })
            .collect();
        let ips: Vec<Value> = self
            .ips
            .iter()
            .map(|ip| {
                let mut o = Map::new();
                if tagged {
                    o.insert(
                        "version".into(),
                        json!(if ip.address.is_v4() { "4" } else { "6" }),
                    );
                }
                o.insert("address".into(), json!(ip.address.to_string()));
                if let Some(g) = ip.gateway {
                    o.insert("gateway".into(), json!(g.to_string()));
                }
                if let Some(i) = ip.interface {
                    o.insert("interface".into(), json!(i));
                }
                Value::Object(o)
            })
            .collect();
        let routes: Vec<Value> = self
            .routes
            .iter()
            .map(|r| {
                let mut o = Map::new();
                o.insert("dst".into(), json!(r.dst.to_string()));
                if let Some(g) = r.gw {
                    o.insert("gw".into(), json!(g.to_string()));
                }
                for (k, v) in &r.extra {
                    o.entry(k.clone()).or_insert_with(|| v.clone());
                }
                Value::Object(o)
            })
            .collect();
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(ver));
        if !interfaces.is_empty() {
            out.insert("interfaces".into(), Value::Array(interfaces));
        }
        if !ips.is_empty() {
            out.insert("ips".into(), Value::Array(ips));
        }
        if !routes.is_empty() {
            out.insert("routes".into(), Value::Array(routes));
        }
        out.insert("dns".into(), Value::Object(self.dns.clone()));
        Value::Object(out)
    }

    /// The IPs that belong to interface `index` (those without an index
    /// too, as an IPAM result has none).
    pub fn ips_of(&self, index: usize) -> Vec<&IpConfig> {
        self.ips
            .iter()
            .filter(|ip| ip.interface.is_none_or(|i| i == index))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_LOCAL_040: &str = r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.89.0.3/24","gateway":"10.89.0.1"}],"dns":{}}"#;

    #[test]
    fn parse_host_local_answers() {
        let r = CniResult::parse(&serde_json::from_str(HOST_LOCAL_040).unwrap(), "ipam").unwrap();
        assert_eq!(r.ips.len(), 1);
        assert_eq!(r.ips[0].address.to_string(), "10.89.0.3/24");
        assert_eq!(r.ips[0].gateway, Some("10.89.0.1".parse().unwrap()));
        assert_eq!(r.ips[0].interface, None);
        let v1: Value = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","ips":[{"address":"2001:db8::5/64","gateway":"2001:db8::1"}],
               "routes":[{"dst":"0.0.0.0/0"},{"dst":"198.51.100.0/24","gw":"10.89.0.254","mtu":1400}],
               "dns":{"nameservers":["10.89.0.1"]}}"#,
        )
        .unwrap();
        let r = CniResult::parse(&v1, "ipam").unwrap();
        assert!(!r.ips[0].address.is_v4());
        assert_eq!(r.routes.len(), 2);
        assert_eq!(r.routes[1].extra["mtu"], 1400);
        assert_eq!(r.dns["nameservers"][0], "10.89.0.1");
    }

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "nxc0123456789ab".into(),
                    mac: Some("02:00:00:00:00:01".into()),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mac: Some("02:00:00:00:00:02".into()),
                    sandbox: Some("/run/netns/x".into()),
                    ..Default::default()
                },
            ],
            ips: vec![IpConfig {
                address: Cidr::parse("10.89.0.2/24").unwrap(),
                gateway: Some("10.89.0.1".parse().unwrap()),
                interface: Some(1),
            }],
            routes: vec![RouteConfig {
                dst: Cidr::parse("0.0.0.0/0").unwrap(),
                gw: None,
                extra: Map::new(),
            }],
            dns: Map::new(),
        }
    }

    #[test]
    fn shapes_per_version() {
        let r = sample();
        for v in ["0.3.0", "0.3.1", "0.4.0"] {
            let j = r.to_json(v);
            assert_eq!(j["cniVersion"], v);
            assert_eq!(j["ips"][0]["version"], "4");
            assert_eq!(j["ips"][0]["interface"], 1);
        }
        for v in ["1.0.0", "1.1.0"] {
            let j = r.to_json(v);
            assert_eq!(j["cniVersion"], v);
            assert!(j["ips"][0].get("version").is_none());
            assert_eq!(j["ips"][0]["interface"], 1);
            assert_eq!(j["interfaces"][1]["sandbox"], "/run/netns/x");
            assert!(j["interfaces"][0].get("sandbox").is_none());
            assert_eq!(j["routes"][0]["dst"], "0.0.0.0/0");
            assert!(j["dns"].is_object());
        }
    }

    #[test]
    fn round_trip_keeps_unknown_keys() {
        let mut r = sample();
        r.interfaces[1].extra.insert("mtu".into(), json!(1500));
        let back = CniResult::parse(&r.to_json("1.1.0"), "prevResult").unwrap();
        assert_eq!(back, r);
        let back = CniResult::parse(&r.to_json("0.4.0"), "prevResult").unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn malformed_results_are_decode_errors() {
        for bad in [
            r#"[]"#,
            r#"{"ips":[{"address":"10.0.0.1"}]}"#,
            r#"{"ips":[{"address":"10.0.0.1/24","gateway":"nope"}]}"#,
            r#"{"ips":{}}"#,
            r#"{"routes":[{"gw":"10.0.0.1"}]}"#,
            r#"{"interfaces":[{"name":"a"}],"ips":[{"address":"10.0.0.1/24","interface":3}]}"#,
            r#"{"dns":[]}"#,
        ] {
            let e = CniResult::parse(&serde_json::from_str(bad).unwrap(), "x").unwrap_err();
            assert_eq!(e.code(), 6, "{bad}: {e}");
        }
    }

    #[test]
    fn ips_of_an_interface() {
        let mut r = sample();
        r.ips.push(IpConfig {
            address: Cidr::parse("203.0.113.9/32").unwrap(),
            gateway: None,
            interface: Some(0),
        });
        assert_eq!(r.ips_of(1).len(), 1);
        assert_eq!(r.ips_of(0)[0].address.to_string(), "203.0.113.9/32");
    }
}
