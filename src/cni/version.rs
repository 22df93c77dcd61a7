//! CNI spec versions: which ones netctx speaks, and the shape of results
//! for each (0.3.x/0.4.0 carry `version` on every IP; 1.x does not).

use std::cmp::Ordering;

/// Every version netctx accepts, oldest first.
pub const SUPPORTED: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The newest, used where the input names none (VERSION, errors).
pub const LATEST: &str = "1.1.0";

/// A version as three numbers; `None` if `s` is not `X.Y.Z`.
pub fn parse(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s.split('.').map(|p| p.parse::<u32>().ok());
    let v = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(v)
}

pub fn cmp(a: &str, b: &str) -> Ordering {
    parse(a).cmp(&parse(b))
}

pub fn is_supported(v: &str) -> bool {
    SUPPORTED.contains(&v)
}

/// Whether `v` is at least `min` (both well-formed).
pub fn at_least(v: &str, min: &str) -> bool {
    matches!(
        (parse(v), parse(min)),
        (Some(a), Some(b)) if a >= b
    )
}

/// Results before 1.0.0 tag each IP with its family.
pub fn ips_carry_version(v: &str) -> bool {
    !at_least(v, "1.0.0")
}

/// The newest of `offered` that is not newer than `wanted`, for talking to
/// a delegated plugin that does not know `wanted`.
pub fn best_common(wanted: &str, offered: &[String]) -> Option<String> {
    offered
        .iter()
        .filter(|o| parse(o).is_some() && cmp(o, wanted) != Ordering::Greater)
        .filter(|o| at_least(o, "0.3.0"))
        .max_by(|a, b| cmp(a, b))
        .cloned()
}

/// The VERSION answer: the version asked about (or the newest when the
/// input names none) and the supported list.
pub fn answer(asked: Option<&str>) -> serde_json::Value {
    let a = Answer {
        cni_version: asked.filter(|v| parse(v).is_some()).unwrap_or(LATEST),
        supported_versions: &SUPPORTED,
    };
    serde_json::to_value(a).expect("an answer is always JSON")
}

/// The VERSION answer, and what VERSION asks another plugin.
#[derive(serde::Serialize)]
pub struct Answer<'a> {
    #[serde(rename = "cniVersion")]
    pub cni_version: &'a str,
    #[serde(rename = "supportedVersions", skip_serializing_if = "<[_]>::is_empty")]
    pub supported_versions: &'a [&'a str],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_compare() {
        assert_eq!(parse("1.1.0"), Some((1, 1, 0)));
        assert_eq!(parse("1.1"), None);
        assert_eq!(parse("1.1.0.0"), None);
        assert_eq!(parse("a.b.c"), None);
        assert!(at_least("0.4.0", "0.4.0"));
        assert!(at_least("1.0.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
        assert!(at_least("0.10.0", "0.4.0"));
        assert!(ips_carry_version("0.4.0") && ips_carry_version("0.3.0"));
        assert!(!ips_carry_version("1.0.0") && !ips_carry_version("1.1.0"));
    }

    #[test]
    fn supported_list() {
        for v in SUPPORTED {
            assert!(is_supported(v));
        }
        assert!(!is_supported("0.2.0") && !is_supported("2.0.0") && !is_supported(""));
    }

    #[test]
    fn best_common_picks_newest_not_newer() {
        let offered: Vec<String> = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(best_common("1.1.0", &offered).as_deref(), Some("1.0.0"));
        assert_eq!(best_common("0.4.0", &offered).as_deref(), Some("0.4.0"));
        assert_eq!(best_common("0.3.0", &["1.0.0".to_string()]), None);
    }

    #[test]
    fn version_answer_echoes_the_input() {
        let a = answer(Some("1.0.0"));
        assert_eq!(a["cniVersion"], "1.0.0");
        assert_eq!(a["supportedVersions"].as_array().unwrap().len(), 5);
        assert_eq!(answer(None)["cniVersion"], "1.1.0");
        assert_eq!(answer(Some("garbage"))["cniVersion"], "1.1.0");
    }
}
