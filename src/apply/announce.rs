//! The name of netctx's route protocol (`announce = true`,
//! docs/cluster.md) for iproute2: `/etc/iproute2/rt_protos.d/netctx.conf`,
//! as the Debian package ships it, written by `up` when it is absent so
//! that `ip route` says `proto netctx`. A file that is there (the
//! package's, or the administrator's) is left as it is; on a host without
//! `/etc/iproute2` nothing is written (iproute2 shows the number).

use std::io;
use std::path::Path;

use crate::kernel::rtnl::ANNOUNCE_PROTO_NUMBER;

pub const RT_PROTOS_DIR: &str = "/etc/iproute2/rt_protos.d";
pub const RT_PROTOS_FILE: &str = "/etc/iproute2/rt_protos.d/netctx.conf";

/// The file's text (the package ships the same: dist/iproute2/netctx.conf).
pub fn rt_protos_text() -> String {
    format!(
        "# netctx: host routes of contexts with announce = true (docs/cluster.md)\n\
         {ANNOUNCE_PROTO_NUMBER}\tnetctx\n"
    )
}

/// Write the file when it is absent; whether it was written.
pub fn name_protocol() -> io::Result<bool> {
    let file = Path::new(RT_PROTOS_FILE);
    if file.symlink_metadata().is_ok() || !Path::new("/etc/iproute2").is_dir() {
        return Ok(false);
    }
    std::fs::create_dir_all(RT_PROTOS_DIR)?;
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
    {
        Ok(f) => f,
        // Written by another process meanwhile: theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    io::Write::write_all(&mut f, rt_protos_text().as_bytes())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shipped_file_is_the_written_one() {
        let shipped = include_str!("../../dist/iproute2/netctx.conf");
        assert_eq!(shipped, super::rt_protos_text());
    }
}
