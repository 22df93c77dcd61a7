//! Hostile configuration: a mutation fuzzer over the loader and validator
//! (deterministic seed; `NETCTX_FUZZ_CASES` and `NETCTX_FUZZ_SEED` run more
//! or other cases), and huge inputs. Properties: no panic, no hang, and
//! every rejection located as `FILE:LINE:COL` inside the file.

use std::path::{Path, PathBuf};

use super::{files, load_sources, ConfigError};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).expect("below n")
    }
}

const TOKENS: &[&str] = &[
    "[context.x]",
    "[[context.x.link]]",
    "[[context.x.route]]",
    "[defaults]",
    "[context.x.guest]",
    "=",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    "\n",
    " ",
    "#",
    ".",
    "-",
    "0",
    "65536",
    "-1",
    "1e9",
    "true",
    "\"veth\"",
    "\"dummy\"",
    "kind = \"veth\"",
    "name = \"eth0\"",
    "host = \"nx-x\"",
    "addresses = [\"10.0.0.2/24\"]",
    "via = \"10.0.0.1\"",
    "to = \"default\"",
    "id = 7",
    "log = [\"input\"]",
    "\"10.0.0.1/33\"",
    "\"fd00::1/64\"",
    "\"::ffff:1.2.3.4/96\"",
    "é",
    "\u{1F600}",
    "\u{0}",
    "\t",
    "\r\n",
    "\"\"\"",
    "inf",
    "nan",
    "1979-05-27T07:32:00Z",
    "[[context]]",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut s = text.to_string();
    for _ in 0..=rng.below(4) {
        let mut at = rng.below(s.len() + 1);
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        match rng.below(5) {
            0 => s.insert_str(at, TOKENS[rng.below(TOKENS.len())]),
            1 => {
                let mut end = (at + rng.below(40)).min(s.len());
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.replace_range(at..end, "");
            }
            2 => {
                let lines: Vec<&str> = s.lines().collect();
                if !lines.is_empty() {
                    let l = lines[rng.below(lines.len())].to_string();
                    s.insert_str(at, &format!("{l}\n"));
                }
            }
            3 => {
                let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
                if lines.len() > 1 {
                    let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                    lines.swap(a, b);
                    s = lines.join("\n");
                }
            }
            _ => {
                let c = char::from(b' ' + u8::try_from(rng.below(95)).expect("below 95"));
                s.insert(at, c);
            }
        }
    }
    s
}

/// The property: no panic; a rejection lists located errors inside the file.
fn check(name: &str, text: &str) {
    let sources = vec![(PathBuf::from(name), text.to_string())];
    let r = std::panic::catch_unwind(|| load_sources(&sources));
    let r = r.unwrap_or_else(|_| panic!("the loader panicked on:\n{text}"));
    if let Err(e) = r {
        let ConfigError::Invalid(diags) = e else {
            panic!("unexpected error {e}")
        };
        assert!(!diags.is_empty());
        let lines = text.split('\n').count();
        for d in diags {
            assert_eq!(d.loc.file, Path::new(name));
            assert!(
                d.loc.line >= 1 && d.loc.line <= lines,
                "{d} outside the file:\n{text}"
            );
            assert!(d.loc.col >= 1, "{d}");
            assert!(d
                .to_string()
                .starts_with(&format!("{name}:{}:{}: ", d.loc.line, d.loc.col)));
        }
    }
}

#[test]
fn mutated_configurations_never_panic_and_errors_are_located() {
    let mut corpus = Vec::new();
    for dir in ["contexts", "contexts/invalid"] {
        for f in files(Path::new(dir)).unwrap() {
            corpus.push(std::fs::read_to_string(f).unwrap());
        }
    }
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let cases = env("NETCTX_FUZZ_CASES", 20_000);
    let mut rng = Rng(env("NETCTX_FUZZ_SEED", 0x6e65_7463_7478) | 1);
    for _ in 0..cases {
        let base = &corpus[rng.below(corpus.len())];
        check("fuzz.toml", &mutate(&mut rng, base));
    }
}

fn many_contexts(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let (a, b) = (i / 250, i % 250);
        let id = i + 1;
        s.push_str(&format!(
            "[context.c{i}]\nid = {id}\n[[context.c{i}.link]]\nkind = \"veth\"\nname = \"eth0\"\n\
             host_addresses = [\"10.{a}.{b}.1/30\"]\naddresses = [\"10.{a}.{b}.2/30\"]\n\
             [[context.c{i}.route]]\nto = \"default\"\nvia = \"10.{a}.{b}.1\"\n"
        ));
    }
    s
}

#[test]
fn ten_thousand_contexts_load() {
    let text = many_contexts(10_000);
    let c = load_sources(&[(PathBuf::from("big.toml"), text)]).unwrap();
    assert_eq!(c.contexts.len(), 10_000);
}

#[test]
fn ten_thousand_errors_are_all_located() {
    // Every context collides with the one before: 9,999 located errors.
    let text = many_contexts(10_000).replace(".2/30\"]", ".2/30\", \"192.168.0.1/32\"]");
    let Err(ConfigError::Invalid(d)) = load_sources(&[(PathBuf::from("big.toml"), text)]) else {
        panic!("accepted");
    };
    assert_eq!(d.len(), 9_999);
    assert!(
        d[0].to_string()
            .starts_with("big.toml:17:29: address 192.168.0.1 is already assigned to context c0"),
        "{}",
        d[0]
    );
}

#[test]
fn megabyte_strings_are_rejected_with_a_location() {
    let long = "x".repeat(1 << 20);
    check(
        "long.toml",
        &format!("[context.a]\nhostname = \"{long}\"\n"),
    );
    let Err(ConfigError::Invalid(d)) = load_sources(&[(
        PathBuf::from("long.toml"),
        format!("[context.a]\nhostname = \"{long}\"\n"),
    )]) else {
        panic!("accepted")
    };
    assert!(
        d[0].to_string().starts_with("long.toml:2:12: hostname"),
        "{}",
        &d[0].to_string()[..60]
    );
    check("key.toml", &format!("[context.a]\n{long} = 1\n"));
    check("garbage.toml", &"\u{1}[=\"".repeat(1 << 18));
}
