//! The spec's Success result: parsed from any supported version (an IPAM
//! plugin's answer, a `prevResult`) and written in the version the
//! configuration asks for. Fields netctx does not interpret are kept.

use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::error::{CniError, Result};
use super::version;
use crate::model::Cidr;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    #[serde(default, deserialize_with = "nullable")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The namespace path for an interface inside the container.
    #[serde(
        default,
        deserialize_with = "non_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub sandbox: Option<String>,
    /// Keys netctx does not interpret (mtu, socketPath, pciID…).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    #[serde(with = "text")]
    pub address: Cidr,
    #[serde(
        default,
        deserialize_with = "ip_or_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteConfig {
    #[serde(with = "text")]
    pub dst: Cidr,
    #[serde(
        default,
        deserialize_with = "ip_or_empty",
        skip_serializing_if = "Option::is_none"
    )]
    pub gw: Option<IpAddr>,
    /// mtu, advmss, priority, table, scope: passed through.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A result as parsed: any supported version's keys (`cniVersion` and
/// the 0.3/0.4 `version` of IPs are the writer's, so not kept).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct CniResult {
    #[serde(default, deserialize_with = "nullable")]
    pub interfaces: Vec<Interface>,
    #[serde(default, deserialize_with = "nullable")]
    pub ips: Vec<IpConfig>,
    #[serde(default, deserialize_with = "nullable")]
    pub routes: Vec<RouteConfig>,
    #[serde(default, deserialize_with = "nullable")]
    pub dns: Map<String, Value>,
}

/// One IP as written: 0.3.x and 0.4.0 tag it with its family.
#[derive(Serialize)]
struct IpOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    #[serde(flatten)]
    ip: &'a IpConfig,
}

/// The result as written, in version `cni_version`.
#[derive(Serialize)]
struct ResultOut<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    interfaces: &'a [Interface],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ips: Vec<IpOut<'a>>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    routes: &'a [RouteConfig],
    dns: &'a Map<String, Value>,
}

/// `null` as the type's default.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An empty string as no value.
fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

/// An IP address; an empty string as none.
fn ip_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    match non_empty(d)? {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not an IP address"))),
    }
}

/// A CIDR as its text (`10.89.0.2/24`).
mod text {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::model::Cidr;

    pub fn serialize<S: Serializer>(c: &Cidr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(c)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        Cidr::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl CniResult {
    /// Parse a result of version 0.3.0 or newer; `what` names it in errors.
    pub fn parse(v: &Value, what: &str) -> Result<CniResult> {
        let decode = |why: String| CniError::Decode {
            what: what.to_string(),
            why,
        };
        if !v.is_object() {
            return Err(decode("not a JSON object".into()));
        }
        let r = CniResult::deserialize(v).map_err(|e| decode(e.to_string()))?;
        let n = r.interfaces.len();
        if let Some(i) = r
            .ips
            .iter()
            .filter_map(|ip| ip.interface)
            .find(|i| n > 0 && *i >= n)
        {
            return Err(decode(format!(
                "ips: interface {i} is not an index into interfaces"
            )));
        }
        Ok(r)
    }

    /// The result in `ver` (0.3.x/0.4.0 tag IPs with `version`).
    pub fn to_json(&self, ver: &str) -> Value {
        let tagged = version::ips_carry_version(ver);
        let out = ResultOut {
            cni_version: ver,
            interfaces: &self.interfaces,
            ips: self
                .ips
                .iter()
                .map(|ip| IpOut {
                    version: tagged.then_some(if ip.address.is_v4() { "4" } else { "6" }),
                    ip,
                })
                .collect(),
            routes: &self.routes,
            dns: &self.dns,
        };
        serde_json::to_value(out).expect("a result is always JSON")
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
    use serde_json::json;

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
