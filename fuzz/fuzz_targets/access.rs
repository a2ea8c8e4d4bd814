//! The access(5) lookup: key generation for sender, HELO and client, result
//! parsing, over a table the fuzzer writes.
#![no_main]

#[path = "common/mod.rs"]
mod common;

use arbitrary::Arbitrary;
use deliver::policy::access::{self, AccessOptions};

#[derive(Arbitrary, Debug)]
struct In {
    kind: u8,
    table: Vec<u8>,
    delimiter: String,
    parent: bool,
    address: String,
    helo: String,
    hostname: Option<String>,
    client: Option<String>,
}

libfuzzer_sys::fuzz_target!(|i: In| {
    let _ = access::parse_action(&i.address);
    let kind = ["texthash", "cidr", "regexp", "pcre"][i.kind as usize % 4];
    let Some(t) = common::open(kind, &i.table) else {
        return;
    };
    let tables = vec![t];
    let opts = AccessOptions {
        recipient_delimiter: i.delimiter.chars().take(4).collect(),
        parent_domain_matches_subdomains: i.parent,
    };
    let mut probes = Vec::new();
    for hits in [
        access::check_address(&tables, &i.address, &opts, &mut probes),
        access::check_helo(&tables, &i.helo, &opts, &mut probes),
        access::check_client(
            &tables,
            i.hostname.as_deref(),
            i.client.as_deref(),
            &opts,
            &mut probes,
        ),
    ]
    .into_iter()
    .flatten()
    {
        for h in hits {
            let _ = h.action.is_terminal();
            let again = access::parse_action(&h.raw);
            assert_eq!(format!("{:?}", again), format!("{:?}", h.action));
        }
    }
});
