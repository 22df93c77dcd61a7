use super::*;

fn v(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn keys_are_held_as_nft_holds_them_and_read_back() {
    // As `nft --debug=netlink` shows the elements nft 1.0.6 adds for
    // `ipv4 . tcp . 8080`, `203.0.113.1 . tcp . 8443`, `2001:db8::1 . tcp .
    // 8443`: each field in a 4-byte word, the value first.
    let cases = [
        (
            NatKey::Port {
                v6: false,
                proto: IPPROTO_TCP,
                port: 8080,
            },
            vec![2, 0, 0, 0, 6, 0, 0, 0, 0x1f, 0x90, 0, 0],
        ),
        (
            NatKey::Port {
                v6: true,
                proto: IPPROTO_UDP,
                port: 53,
            },
            vec![10, 0, 0, 0, 17, 0, 0, 0, 0, 53, 0, 0],
        ),
        (
            NatKey::AddrPort {
                addr: v("203.0.113.1"),
                proto: IPPROTO_TCP,
                port: 8443,
            },
            vec![203, 0, 113, 1, 6, 0, 0, 0, 0x20, 0xfb, 0, 0],
        ),
        (
            NatKey::AddrPort {
                addr: v("2001:db8::1"),
                proto: IPPROTO_TCP,
                port: 8443,
            },
            [
                vec![0x20, 0x01, 0x0d, 0xb8],
                vec![0; 11],
                vec![1, 6, 0, 0, 0, 0x20, 0xfb, 0, 0],
            ]
            .concat(),
        ),
    ];
    for (k, bytes) in cases {
        assert_eq!(k.bytes(), bytes, "{k:?}");
        assert_eq!(NatKey::parse(k.map(), &bytes), Some(k.clone()));
        assert_eq!(u32::try_from(bytes.len()).unwrap(), k.map().key().1);
    }
    let iif = NatKey::Iif("nx-web".into());
    assert_eq!(iif.bytes().len(), 16);
    assert_eq!(
        NatKey::parse(NatMap::Masquerade, &iif.bytes()),
        Some(iif.clone())
    );
    assert_eq!(iif.map().group(), Group::Masquerade);
    // Not netctx's: another family, a short key.
    let mut bad = NatKey::Port {
        v6: false,
        proto: 6,
        port: 1,
    }
    .bytes();
    bad[0] = 7;
    assert_eq!(NatKey::parse(NatMap::Publish, &bad), None);
    assert_eq!(NatKey::parse(NatMap::Publish4, &[1, 2, 3]), None);
    assert_eq!(NatKey::parse(NatMap::Publish6, &[0; 12]), None);
}

#[test]
fn concatenated_key_types_are_nfts() {
    // `nft list` shows the types from these numbers (as nft computes them).
    assert_eq!(NatMap::Publish.key(), (8973, 12));
    assert_eq!(NatMap::Publish4.key(), (29453, 12));
    assert_eq!(NatMap::Publish6.key(), (33549, 24));
    assert_eq!(
        NatKey::Port {
            v6: true,
            proto: IPPROTO_UDP,
            port: 53
        }
        .render(),
        "ipv6 . udp . 53"
    );
}

#[test]
fn a_change_removes_before_the_chains_and_adds_after() {
    let c = NatChange {
        make: vec![(Group::Publish, vec![PREROUTING.to_string()])],
        remove: vec![NatKey::Iif("nx-a".into())],
        add: vec![(
            NatKey::Port {
                v6: false,
                proto: IPPROTO_TCP,
                port: 80,
            },
            "a_pre".into(),
        )],
    };
    let (mut before, mut after) = (Vec::new(), Vec::new());
    c.before_msgs(&mut before);
    c.after_msgs(&mut after);
    let kinds = |m: &[Msg]| m.iter().map(|m| m.ty).collect::<Vec<_>>();
    // Three maps made, the one element deleted.
    assert_eq!(
        kinds(&before),
        [msg::NEWSET, msg::NEWSET, msg::NEWSET, msg::DELSETELEM]
    );
    // The present base chain deleted, both made bare, flushed, filled (three
    // rules each), then the element.
    let a = kinds(&after);
    assert_eq!(a[0], msg::DELCHAIN);
    assert_eq!(a.iter().filter(|t| **t == msg::NEWRULE).count(), 6);
    assert_eq!(a.last(), Some(&msg::NEWSETELEM));
    assert!(c.render().contains("ipv4 . tcp . 80 : jump a_pre"));
    let mut gone = Vec::new();
    Group::Masquerade.remove_msgs(&[POSTROUTING.into()], &mut gone);
    assert_eq!(kinds(&gone), [msg::DELCHAIN, msg::DELSET]);
}
