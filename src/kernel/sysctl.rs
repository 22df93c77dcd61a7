//! Switches under /proc/sys, read and written in the calling thread's network
//! namespace (`/proc/sys/net` shows the namespace of the reading thread).

pub const FORWARD_V4: &str = "net/ipv4/ip_forward";
pub const FORWARD_V6: &str = "net/ipv6/conf/all/forwarding";

pub fn accept_ra(link: &str) -> String {
    format!("net/ipv6/conf/{link}/accept_ra")
}

/// Read a switch under /proc/sys; `None` if it does not exist (IPv6 off).
pub fn read(path: &str) -> Option<bool> {
    std::fs::read_to_string(format!("/proc/sys/{path}"))
        .ok()
        .map(|s| s.trim() != "0")
}

pub fn write(path: &str, on: bool) -> std::io::Result<()> {
    std::fs::write(format!("/proc/sys/{path}"), if on { "1" } else { "0" })
}
