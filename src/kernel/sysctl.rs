//! Switches under /proc/sys, read and written in the calling thread's network
//! namespace (`/proc/sys/net` shows the namespace of the reading thread).

use std::io::{self, Read, Write};

/// The value of a switch, whitespace normalised (`ping_group_range` prints
/// a tab); `None` if it does not exist (IPv6 off, a link that went).
pub fn read(path: &str) -> Option<String> {
    let mut f = std::fs::File::open(format!("/proc/sys/{path}")).ok()?;
    let mut buf = [0u8; 64];
    let n = f.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]);
    Some(text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Write a switch; a switch this kernel does not have is not an error.
pub fn write(path: &str, value: &str) -> io::Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .open(format!("/proc/sys/{path}"))
    {
        Ok(mut f) => f.write_all(value.as_bytes()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
