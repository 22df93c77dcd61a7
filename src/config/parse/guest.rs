//! `[context.NAME.guest]`: command, user, root, writable, capabilities, env.

use std::path::{Component, Path, PathBuf};

use super::{Value, Walker};
use crate::model::guest_caps as caps;
use crate::model::Guest;

/// An absolute path without `.`/`..` components, or why not.
fn clean_path(s: &str) -> Result<PathBuf, String> {
    let p = Path::new(s);
    let plain = p
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if p.is_absolute() && plain && !s.contains('\0') {
        Ok(p.to_path_buf())
    } else {
        Err(format!(
            "{s:?} must be an absolute path without '.' or '..'"
        ))
    }
}

/// Why a `writable` path cannot be one: the guest's /proc, /sys and /dev
/// are the kernel's, made fresh for it, never a tree's.
fn kernel_path(p: &Path) -> Option<&'static str> {
    ["/proc", "/sys", "/dev"]
        .iter()
        .any(|k| p.starts_with(k))
        .then_some("lies under /proc, /sys or /dev, which guests only see read-only and fresh")
}

impl Walker<'_> {
    fn path(&mut self, v: &Value<'_>, key: &str) -> Option<PathBuf> {
        let s = self.string(v, key)?;
        clean_path(&s)
            .map_err(|e| self.err(v.span(), format!("{key}: {e}")))
            .ok()
    }

    fn env_table(&mut self, v: &Value<'_>) -> Vec<(String, String)> {
        let Some(t) = self.table(v, "env") else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (k, val) in t {
            let name = k.get_ref().as_ref();
            let good = !name.is_empty() && !name.contains('=') && !name.contains('\0');
            if !good {
                self.err(k.span(), format!("env: {name:?} is not a variable name"));
                continue;
            }
            if let Some(s) = self.string(val, &format!("env.{name}")) {
                out.push((name.to_string(), s));
            }
        }
        out
    }

    fn capabilities(&mut self, v: &Value<'_>) -> Option<Vec<u32>> {
        let mut out = Vec::new();
        for (s, span) in self.strings(v, "capabilities")? {
            match caps::parse(&s) {
                Some(c) => out.push(c),
                None => self.err(
                    span,
                    format!(
                        "capability {s:?} is not in the guest's default set ({})",
                        caps::names().join(", ")
                    ),
                ),
            }
        }
        Some(out)
    }

    pub(super) fn guest(&mut self, v: &Value<'_>) -> Option<Guest> {
        let t = self.table(v, "guest")?;
        let mut g = Guest::default();
        let mut command = None;
        let mut writable = Vec::new();
        let mut bad_root = false;
        for (k, val) in t {
            let key = k.get_ref().as_ref();
            match key {
                "command" => {
                    let parts = self.strings(val, key)?;
                    if parts.is_empty() {
                        self.err(val.span(), "guest command must not be empty".into());
                        return None;
                    }
                    command = Some(parts.into_iter().map(|(s, _)| s).collect());
                }
                "user" => g.user = self.string(val, key),
                "root" => {
                    g.root = self.path(val, key);
                    if g.root.as_deref() == Some(Path::new("/")) {
                        self.err(
                            val.span(),
                            "root: \"/\" is the host's own tree; leave `root` out for the host's \
                             view (read-only, with its masks), or name a guest tree"
                                .into(),
                        );
                        g.root = None;
                        bad_root = true;
                    }
                }
                "writable" => {
                    for (s, span) in self.strings(val, key).unwrap_or_default() {
                        match clean_path(&s) {
                            Ok(p) => match kernel_path(&p) {
                                Some(e) => self.err(span, format!("writable: {s:?} {e}")),
                                None => writable.push((p, span)),
                            },
                            Err(e) => self.err(span, format!("writable: {e}")),
                        }
                    }
                }
                "capabilities" => g.capabilities = self.capabilities(val),
                "env" => g.env = self.env_table(val),
                _ => self.unknown(
                    k,
                    key,
                    "in guest (expected command, user, root, writable, capabilities, env)",
                ),
            }
        }
        let Some(command) = command else {
            self.err(
                v.span(),
                "guest needs a command (an array of strings)".into(),
            );
            return None;
        };
        for (p, span) in writable {
            if p == Path::new("/") && g.root.is_none() && !bad_root {
                self.err(
                    span,
                    "writable: \"/\" is the host's whole tree; name the paths the guest may write"
                        .into(),
                );
                continue;
            }
            g.writable.push(p);
        }
        g.command = command;
        Some(g)
    }
}

#[cfg(test)]
mod tests {
    use super::clean_path;

    #[test]
    fn paths_must_be_absolute_and_plain() {
        assert!(clean_path("/var/lib/web").is_ok());
        assert!(clean_path("var/lib").is_err());
        assert!(clean_path("/var/../etc").is_err());
    }
}
