//! The spec's error result: `{"cniVersion", "code", "msg", "details"}` with
//! its well-known codes; netctx's own failures use codes from 100.

use serde_json::Value;

use crate::observe::NlError;

/// Codes of the spec (section 5, "Error").
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO: u32 = 5;
    pub const DECODE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN: u32 = 11;
    pub const NOT_AVAILABLE: u32 = 50;
    pub const LIMITED_CONNECTIVITY: u32 = 51;
    /// netctx's own: the kernel refused a request.
    pub const KERNEL: u32 = 100;
    /// netctx's own: CHECK found the attachment not as it should be.
    pub const CHECK: u32 = 101;
}

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("incompatible CNI version {version:?} (netctx supports {})", super::version::SUPPORTED.join(", "))]
    IncompatibleVersion { version: String },
    #[error("CNI {command} needs cniVersion {min} or newer, the configuration says {version}")]
    VersionTooOld {
        command: &'static str,
        min: &'static str,
        version: String,
    },
    #[error("unsupported field {field}: {value}")]
    Unsupported { field: String, value: String },
    #[error("container {container}: {why}")]
    UnknownContainer { container: String, why: String },
    #[error("environment variable {var}: {why}")]
    InvalidEnv { var: &'static str, why: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("cannot decode {what}: {why}")]
    Decode { what: String, why: String },
    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),
    #[error("{0}")]
    TryAgain(String),
    #[error("{0}")]
    NotAvailable(String),
    /// Not available, and existing attachments may have lost connectivity.
    #[error("{0}")]
    Limited(String),
    #[error("{plugin}: {msg}{}", if details.is_empty() { String::new() } else { format!(": {details}") })]
    Delegated {
        plugin: String,
        code: u32,
        msg: String,
        details: String,
    },
    #[error("{object}: {source}")]
    Kernel { object: String, source: NlError },
    #[error("{0}")]
    Check(String),
    /// The engine could not converge (or remove) the attachment.
    #[error("{}", .0.chain())]
    Engine(crate::apply::CtxError),
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<CniError>),
}

impl CniError {
    pub fn io(what: impl Into<String>, source: std::io::Error) -> CniError {
        CniError::Io {
            what: what.into(),
            source,
        }
    }
    pub fn kernel(object: impl Into<String>, source: NlError) -> CniError {
        CniError::Kernel {
            object: object.into(),
            source,
        }
    }
    pub fn config(msg: impl Into<String>) -> CniError {
        CniError::InvalidConfig(msg.into())
    }

    pub fn code(&self) -> u32 {
        match self {
            CniError::IncompatibleVersion { .. } | CniError::VersionTooOld { .. } => {
                code::INCOMPATIBLE_VERSION
            }
            CniError::Unsupported { .. } => code::UNSUPPORTED_FIELD,
            CniError::UnknownContainer { .. } => code::UNKNOWN_CONTAINER,
            CniError::InvalidEnv { .. } => code::INVALID_ENV,
            CniError::Io { .. } => code::IO,
            CniError::Decode { .. } => code::DECODE,
            CniError::InvalidConfig(_) => code::INVALID_CONFIG,
            CniError::TryAgain(_) => code::TRY_AGAIN,
            CniError::NotAvailable(_) => code::NOT_AVAILABLE,
            CniError::Limited(_) => code::LIMITED_CONNECTIVITY,
            CniError::Delegated { code, .. } => *code,
            CniError::Kernel { source, .. } if source.errno == libc::EBUSY => code::TRY_AGAIN,
            CniError::Kernel { .. } => code::KERNEL,
            CniError::Check(_) => code::CHECK,
            CniError::Engine(e) if busy(e) => code::TRY_AGAIN,
            CniError::Engine(_) => code::KERNEL,
            CniError::Many(v) => v.first().map_or(code::KERNEL, CniError::code),
        }
    }

    /// The short `msg` of the error object.
    fn summary(&self) -> String {
        match self {
            CniError::Delegated { msg, .. } => msg.clone(),
            _ => match self.code() {
                code::INCOMPATIBLE_VERSION => "incompatible CNI version".into(),
                code::UNSUPPORTED_FIELD => "unsupported field in network configuration".into(),
                code::UNKNOWN_CONTAINER => "container unknown or does not exist".into(),
                code::INVALID_ENV => "invalid environment variables".into(),
                code::IO => "I/O failure".into(),
                code::DECODE => "failed to decode content".into(),
                code::INVALID_CONFIG => "invalid network configuration".into(),
                code::TRY_AGAIN => "try again later".into(),
                code::NOT_AVAILABLE => "netctx cannot service ADD requests".into(),
                code::LIMITED_CONNECTIVITY => {
                    "netctx cannot service ADD requests; existing attachments may have limited connectivity".into()
                }
                code::CHECK => "attachment is not as configured".into(),
                _ => "netctx failed".into(),
            },
        }
    }

    /// The error object, in `version`.
    pub fn to_json(&self, version: &str) -> Value {
        let o = ErrorObject {
            cni_version: version,
            code: self.code(),
            msg: self.summary(),
            details: self.to_string(),
        };
        serde_json::to_value(o).expect("an error object is always JSON")
    }
}

/// Whether the engine's error is the kernel's EBUSY (worth a retry).
fn busy(e: &crate::apply::CtxError) -> bool {
    use crate::apply::CtxError as E;
    match e {
        E::Kernel { source, .. } => source.errno == libc::EBUSY,
        E::RollbackIncomplete { error, .. } => busy(error),
        _ => false,
    }
}

impl From<crate::apply::CtxError> for CniError {
    fn from(e: crate::apply::CtxError) -> CniError {
        CniError::Engine(e)
    }
}

/// The spec's error object.
#[derive(serde::Serialize)]
struct ErrorObject<'a> {
    #[serde(rename = "cniVersion")]
    cni_version: &'a str,
    code: u32,
    msg: String,
    details: String,
}

pub type Result<T, E = CniError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_spec() {
        let cases: Vec<(CniError, u32)> = vec![
            (
                CniError::IncompatibleVersion {
                    version: "9.9.9".into(),
                },
                1,
            ),
            (
                CniError::Unsupported {
                    field: "egress".into(),
                    value: "nat".into(),
                },
                2,
            ),
            (
                CniError::InvalidEnv {
                    var: "CNI_IFNAME",
                    why: "missing".into(),
                },
                4,
            ),
            (CniError::io("stdin", std::io::Error::other("x")), 5),
            (
                CniError::Decode {
                    what: "stdin".into(),
                    why: "x".into(),
                },
                6,
            ),
            (CniError::config("x"), 7),
            (CniError::TryAgain("x".into()), 11),
            (CniError::NotAvailable("x".into()), 50),
            (CniError::Limited("x".into()), 51),
            (
                CniError::kernel(
                    "link eth0",
                    NlError {
                        errno: libc::EEXIST,
                        extack: None,
                    },
                ),
                100,
            ),
        ];
        for (e, c) in cases {
            let j = e.to_json("1.0.0");
            assert_eq!(j["code"], c, "{e}");
            assert_eq!(j["cniVersion"], "1.0.0");
            assert!(j["msg"].as_str().unwrap().len() > 3);
            assert_eq!(j["details"], e.to_string());
        }
    }

    #[test]
    fn unsupported_field_names_key_and_value() {
        let e = CniError::Unsupported {
            field: "egress".into(),
            value: "\"nat\"".into(),
        };
        assert!(e.to_string().contains("egress") && e.to_string().contains("nat"));
    }

    #[test]
    fn delegated_keeps_the_plugins_code_and_msg() {
        let e = CniError::Delegated {
            plugin: "host-local".into(),
            code: 11,
            msg: "no IP addresses available".into(),
            details: "range full".into(),
        };
        let j = e.to_json("0.4.0");
        assert_eq!(j["code"], 11);
        assert_eq!(j["msg"], "no IP addresses available");
        let many = CniError::Many(vec![e, CniError::config("y")]);
        assert_eq!(many.code(), 11);
        assert!(many.to_string().contains("; "));
    }
}
