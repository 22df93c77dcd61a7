//! `[context.NAME.limits]`: processes, memory, tmp, bandwidth, connections,
//! new_connections, log (docs/configuration.md). A limit that is malformed
//! or zero is an error at its value.

use toml::de::DeValue;

use super::{Value, Walker};
use crate::model::{Limits, Per};

/// `"256M"`, `"1G"`, `"512k"`, `"1MiB"` (powers of 1024) or a plain number
/// of bytes: the bytes, or why not.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (a number with K, M, G or T, as \"256M\")"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => {
            return Err(format!(
                "{s:?} is not a size (a number with K, M, G or T, as \"256M\")"
            ))
        }
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `"100mbit"`, `"1gbit"`, `"500kbit"`, `"10mbps"` (bytes), as tc spells
/// rates (powers of 1000): bits a second, or why not.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let bad = || {
        format!("{s:?} is not a rate (as \"100mbit\": bit, kbit, mbit, gbit, or bps, kbps, mbps, gbps for bytes)")
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit {
        "bit" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        "bps" => 8,
        "kbps" => 8_000,
        "mbps" => 8_000_000,
        "gbps" => 8_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `"200/second"` (also minute, hour, day).
pub fn parse_per(s: &str) -> Result<(u64, Per), String> {
    let bad = || {
        format!(
            "{s:?} is not a rate of connections (as \"200/second\"; second, minute, hour or day)"
        )
    };
    let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
    let n: u64 = n.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "second" | "s" => Per::Second,
        "minute" | "m" => Per::Minute,
        "hour" | "h" => Per::Hour,
        "day" | "d" => Per::Day,
        _ => return Err(bad()),
    };
    Ok((n, per))
}

impl Walker<'_> {
    /// A positive integer (at most `max`).
    fn count(&mut self, v: &Value<'_>, key: &str, max: u64) -> Option<u64> {
        let n = match v.get_ref() {
            DeValue::Integer(i) => i128::from_str_radix(i.as_str(), i.radix()).ok(),
            _ => None,
        };
        match n.and_then(|n| u64::try_from(n).ok()) {
            Some(n) if n >= 1 && n <= max => Some(n),
            _ => {
                self.err(
                    v.span(),
                    format!("limits.{key} must be an integer in 1..={max}"),
                );
                None
            }
        }
    }

    /// A string value through `parse`; zero is an error.
    fn parsed<T: Copy>(
        &mut self,
        v: &Value<'_>,
        key: &str,
        parse: fn(&str) -> Result<T, String>,
        zero: fn(T) -> bool,
    ) -> Option<T> {
        let text = match v.get_ref() {
            DeValue::String(s) => s.to_string(),
            // A plain integer is bytes (sizes) or bits a second (rates).
            DeValue::Integer(i) => {
                i.as_str().to_string() + if key == "bandwidth" { "bit" } else { "" }
            }
            other => {
                let ty = other.type_str();
                self.err(v.span(), format!("limits.{key} must be a string, not {ty}"));
                return None;
            }
        };
        match parse(&text) {
            Ok(x) if zero(x) => {
                self.err(v.span(), format!("limits.{key} must not be zero"));
                None
            }
            Ok(x) => Some(x),
            Err(e) => {
                self.err(v.span(), format!("limits.{key}: {e}"));
                None
            }
        }
    }

    /// `[context.NAME.limits]`: what is given over the defaults.
    pub(super) fn limits(&mut self, v: &Value<'_>, ctx: &str) -> Limits {
        let mut l = Limits::default();
        let Some(t) = self.table(v, &format!("[context.{ctx}.limits]")) else {
            return l;
        };
        let size_zero = |n: u64| n == 0;
        for (k, v) in t {
            let key = k.get_ref().as_ref();
            match key {
                // The kernel's pid_max is at most 2^22.
                "processes" => l.processes = self.count(v, key, 1 << 22).unwrap_or(l.processes),
                "connections" => l.connections = self.count(v, key, u64::from(u32::MAX)),
                "memory" => l.memory = self.parsed(v, key, parse_size, size_zero),
                "tmp" => l.tmp = self.parsed(v, key, parse_size, size_zero).unwrap_or(l.tmp),
                "log" => l.log = self.parsed(v, key, parse_size, size_zero).unwrap_or(l.log),
                "bandwidth" => l.bandwidth = self.parsed(v, key, parse_rate, size_zero),
                "new_connections" => {
                    l.new_connections = self.parsed(v, key, parse_per, |(n, _)| n == 0)
                }
                _ => self.unknown(
                    k,
                    key,
                    &format!("in [context.{ctx}.limits] (expected processes, memory, tmp, bandwidth, connections, new_connections, log)"),
                ),
            }
        }
        l
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_rates_and_connection_rates_are_read() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("99999999999T").is_err());
        assert_eq!(parse_rate("100mbit"), Ok(100_000_000));
        assert_eq!(parse_rate("10mbps"), Ok(80_000_000));
        assert!(parse_rate("100M").is_err());
        assert_eq!(parse_per("200/second"), Ok((200, Per::Second)));
        assert_eq!(parse_per("5/minute"), Ok((5, Per::Minute)));
        assert!(parse_per("200").is_err());
        assert!(parse_per("200/fortnight").is_err());
    }
}
