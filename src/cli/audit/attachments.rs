//! CNI attachments in `netctx audit`: each judged as a context of one link.

use anyhow::Context as _;

use super::{judge_context, read_here, Gathered, Report};
use crate::kernel::netns;
use crate::model::Context;

/// A CNI attachment as a context of one link: the interface the runtime
/// named and the addresses IPAM gave it.
fn context(src: &crate::observe::attachments::Source) -> Context {
    use crate::model::{Isolation, Link, LinkKind};
    Context {
        name: src.name.clone(),
        id: None,
        ip_forward: false,
        log: Vec::new(),
        log_group: src.log_group,
        log_rate: crate::model::DEFAULT_LOG_RATE,
        isolation: Isolation::Strict,
        single_ip: false,
        announce: false,
        hostname: src.name.clone(),
        links: vec![Link {
            kind: LinkKind::Veth,
            name: src.ifname.clone(),
            host: None,
            host_addresses: Vec::new(),
            addresses: src.addrs.clone(),
            accept_ra: false,
            ptp: false,
        }],
        routes: Vec::new(),
        reach: Vec::new(),
        accept_from: Vec::new(),
        deny: Vec::new(),
        uplink: None,
        egress: crate::model::Egress::None,
        publish: Vec::new(),
        guest: None,
        limits: Default::default(),
        file: "CNI attachment".into(),
        netns: crate::model::Netns::Named,
    }
}

/// The CNI attachments named (all, when `names` is empty), judged against
/// the addresses of their interface.
pub(super) fn reports(names: &[String], g: &Gathered) -> anyhow::Result<Vec<Report>> {
    let mut out = Vec::new();
    for src in crate::observe::attachments::sources(names).map_err(anyhow::Error::msg)? {
        let s = netns::run_in(&src.netns, || read_here(&g.kinds))?
            .with_context(|| format!("attachment {}", src.name))?;
        let (rows, violations) = judge_context(&context(&src), &s, &g.procs);
        out.push(Report {
            name: src.name,
            pod: src.pod,
            up: true,
            rows,
            violations,
            unconfined: Vec::new(),
            bind_hooks: "off",
        });
    }
    Ok(out)
}
