use super::*;

const DESIGN: &str = r#"{ "cniVersion": "1.0.0", "name": "nx", "type": "netctx",
  "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.89.0.0/24" }]] },
  "isolation": "strict", "log": ["input"], "log_group": 100,
  "reach": [], "egress": "none", "uplink": "eth0",
  "capabilities": { "portMappings": true } }"#;

fn with(extra: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(DESIGN).unwrap();
    let e: Value = serde_json::from_str(extra).unwrap();
    for (k, x) in e.as_object().unwrap() {
        if x.is_null() {
            v.as_object_mut().unwrap().remove(k);
        } else {
            v[k] = x.clone();
        }
    }
    serde_json::to_vec(&v).unwrap()
}

fn code(extra: &str) -> u32 {
    NetConf::parse(&with(extra)).unwrap_err().code()
}

#[test]
fn the_designs_example() {
    let c = NetConf::parse(DESIGN.as_bytes()).unwrap();
    assert_eq!(c.cni_version, "1.0.0");
    assert_eq!(c.name, "nx");
    assert_eq!(c.ipam.as_deref(), Some("host-local"));
    assert_eq!(c.isolation, Isolation::Strict);
    assert_eq!(c.log, vec![Hook::Input]);
    assert_eq!(c.log_group, 100);
    assert_eq!(c.egress, Egress::None);
    assert_eq!(c.uplink.as_deref(), Some("eth0"));
    assert!(c.port_mappings.is_empty() && c.prev_result.is_none());
    assert_eq!(c.raw["ipam"]["ranges"][0][0]["subnet"], "10.89.0.0/24");
}

#[test]
fn defaults_and_unknown_keys() {
    let c = NetConf::parse(
        br#"{"cniVersion":"0.4.0","name":"n","type":"netctx","somethingElse":{"x":1}}"#,
    )
    .unwrap();
    assert_eq!(c.isolation, Isolation::Strict);
    assert!(c.log.is_empty() && c.ipam.is_none() && c.reach.is_empty());
    assert_eq!(c.log_group, 100);
}

#[test]
fn podman_port_mappings() {
    let c = NetConf::parse(&with(
        r#"{"runtimeConfig":{"portMappings":[{"containerPort":80,"hostIP":"127.0.0.1","hostPort":18080,"protocol":"tcp"},
            {"containerPort":53,"hostPort":5353,"protocol":"udp","hostIP":"::"},
            {"containerPort":22,"hostPort":2222,"protocol":"tcp","hostIP":""}]}}"#,
    ))
    .unwrap();
    assert_eq!(
        c.publish(),
        vec!["127.0.0.1:18080:80/tcp", "[::]:5353:53/udp", "2222:22/tcp"]
    );
}

#[test]
fn containerd_port_mappings_capitalised() {
    let c = NetConf::parse(&with(
        r#"{"runtimeConfig":{"portMappings":[{"HostPort":8080,"ContainerPort":80,"Protocol":"TCP","HostIP":"203.0.113.1"}]}}"#,
    ))
    .unwrap();
    assert_eq!(c.publish(), vec!["203.0.113.1:8080:80/tcp"]);
    let c = NetConf::parse(&with(
        r#"{"runtimeConfig":{"portMappings":[{"HostPort":8080,"ContainerPort":80}]}}"#,
    ))
    .unwrap();
    assert_eq!(c.publish(), vec!["8080:80/tcp"]);
}

#[test]
fn prev_result_and_valid_attachments() {
    let c = NetConf::parse(&with(
        r#"{"prevResult":{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],
            "ips":[{"address":"10.89.0.2/24","gateway":"10.89.0.1","interface":0}]},
            "cni.dev/valid-attachments":[{"containerID":"a1","ifname":"eth0"},{"containerID":"b2","ifname":"net1"}]}"#,
    ))
    .unwrap();
    let p = c.prev_result.unwrap();
    assert_eq!(p.ips[0].address.to_string(), "10.89.0.2/24");
    assert_eq!(c.valid_attachments.len(), 2);
    assert_eq!(c.valid_attachments[1].container_id, "b2");
    assert_eq!(c.valid_attachments[1].ifname, "net1");
}

#[test]
fn malformed_configurations_get_the_specs_codes() {
    assert_eq!(NetConf::parse(b"{not json").unwrap_err().code(), 6);
    assert_eq!(NetConf::parse(b"[1,2]").unwrap_err().code(), 6);
    assert_eq!(NetConf::parse(b"").unwrap_err().code(), 6);
    assert_eq!(code(r#"{"cniVersion":"0.2.0"}"#), 1);
    assert_eq!(code(r#"{"cniVersion":"9.0.0"}"#), 1);
    assert_eq!(code(r#"{"cniVersion":null}"#), 7);
    assert_eq!(code(r#"{"name":"bad name"}"#), 7);
    assert_eq!(code(r#"{"name":null}"#), 7);
    assert_eq!(code(r#"{"type":null}"#), 7);
    assert_eq!(code(r#"{"ipam":{"ranges":[]}}"#), 7);
    assert_eq!(code(r#"{"ipam":{"type":"../../bin/sh"}}"#), 7);
    assert_eq!(code(r#"{"isolation":"loose"}"#), 7);
    assert_eq!(code(r#"{"log":["input","sideways"]}"#), 7);
    assert_eq!(code(r#"{"log":"input"}"#), 6);
    assert_eq!(code(r#"{"log_group":70000}"#), 6);
    assert_eq!(code(r#"{"egress":"teleport"}"#), 7);
    assert_eq!(code(r#"{"egress":"nat","uplink":null}"#), 7);
    assert_eq!(code(r#"{"uplink":"eth0/x"}"#), 7);
    assert_eq!(code(r#"{"reach":["DB"]}"#), 7);
    assert_eq!(code(r#"{"reach":["db:99999"]}"#), 7);
    assert_eq!(
        code(r#"{"runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80}]}}"#),
        7
    );
    assert_eq!(
        code(
            r#"{"runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":80,"protocol":"sctp"}]}}"#
        ),
        2
    );
    assert_eq!(
        code(
            r#"{"runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":80,"hostIP":"x"}]}}"#
        ),
        7
    );
    assert_eq!(code(r#"{"prevResult":{"ips":[{"address":"nope"}]}}"#), 6);
}

#[test]
fn reach_entries() {
    let reach_entry_ok = |e: &str| bad_entry(&[e.to_string()], &[]).is_none();
    for ok in [
        "db",
        "cache:6379/tcp",
        "dns:53/udp",
        "web-2:80",
        "host:53/udp",
        "10.0.0.0/8:443",
        "[2001:db8::/32]:80-90/udp",
        "api.example.com:443",
    ] {
        assert!(reach_entry_ok(ok), "{ok}");
    }
    assert!(bad_entry(&[], &["host:22".into()]).is_some());
    assert!(bad_entry(&[], &["203.0.113.0/24:22".into()]).is_none());
    for bad in [
        "",
        "Db",
        "1db",
        "db:",
        "db:0",
        "db:80/icmp",
        "averyveryverylong",
        "db:90-80",
    ] {
        assert!(!reach_entry_ok(bad), "{bad}");
    }
}

#[test]
fn version_only() {
    assert_eq!(
        version_of(br#"{"cniVersion":"1.0.0"}"#).as_deref(),
        Some("1.0.0")
    );
    assert_eq!(version_of(b"garbage"), None);
    assert_eq!(version_of(b"{}"), None);
}
