use super::*;

fn entries(list: &[&str]) -> Vec<(Cidr, Option<Ports>)> {
    list.iter()
        .map(|e| {
            let (c, p) = match e.split_once(' ') {
                Some((c, p)) => (c, Some(p)),
                None => (*e, None),
            };
            let ports = p.map(|p| {
                let (r, proto) = p.split_once('/').unwrap();
                let (lo, hi) = r.split_once('-').unwrap_or((r, r));
                Ports {
                    lo: lo.parse().unwrap(),
                    hi: hi.parse().unwrap(),
                    proto: if proto == "udp" {
                        Proto::Udp
                    } else {
                        Proto::Tcp
                    },
                }
            });
            (Cidr::parse(c).unwrap(), ports)
        })
        .collect()
}

#[test]
fn overlapping_ranges_merge_into_disjoint_elements() {
    let e = entries(&["10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/8", "192.168.1.7/32"]);
    let s = RangeSet::new("c_deny4".into(), false, false, &e);
    assert_eq!(s.render_elems(&s.elems), "10.0.0.0/7, 192.168.1.7");
    let e = entries(&[
        "10.0.0.0/24 443-500/tcp",
        "10.0.0.0/16 400-450/tcp",
        "10.0.0.0/16 80/udp",
    ]);
    let s = RangeSet::new("c_reachp4".into(), false, true, &e);
    assert_eq!(
        s.render_elems(&s.elems),
        "10.0.0.0/16 . tcp . 400-450, 10.0.0.0/24 . tcp . 451-500, 10.0.0.0/16 . udp . 80"
    );
}

#[test]
fn elements_read_back_are_the_ranges_sent() {
    let e = entries(&["169.254.0.0/16", "0.0.0.0/8", "255.255.255.0/24"]);
    let s = RangeSet::new("c_deny4".into(), false, false, &e);
    let mut msgs = Vec::new();
    s.create_msgs(&mut msgs);
    let list: Vec<Vec<u8>> = msgs[1..]
        .iter()
        .filter_map(|m| {
            parse_attrs(&m.attrs.0)
                .find(|(t, _)| *t == attr::SET_ELEM_LIST_ELEMENTS)
                .map(|(_, v)| v.to_vec())
        })
        .collect();
    let back = parse_elems(false, list.iter().map(|l| l.as_slice()));
    assert_eq!(back, s.elems);
    let e = entries(&["2001:db8::/32 80-90/udp", "::/0 22/tcp"]);
    let s = RangeSet::new("c_reachp6".into(), true, true, &e);
    assert_eq!(
        s.render_elems(&s.elems),
        "::/0 . tcp . 22, 2001:db8::/32 . udp . 80-90"
    );
}

#[test]
fn set_names_say_whether_they_hold_ports() {
    assert_eq!(ported_name("web_deny4"), Some(false));
    assert_eq!(ported_name("web_reachp6"), Some(true));
    assert_eq!(ported_name("web_acceptp4"), Some(true));
    assert_eq!(ported_name("web_dns4"), None);
    assert_eq!(ported_name("netctx-forward"), None);
}
