//! Finder benchmark: relay hints extracted per second from 100,000 realistic events
//! (`relay_hints_from_row`: NIP-65 `r` tags, kind 3/2 content, e/p/a/q hints, 30166 `d` tags,
//! each parsed through `RelayUrl`).
//!
//! `cargo bench -p brotr-probe --bench hints`

use std::time::Instant;

use brotr_probe::model::EventRow;
use brotr_probe::model::relay_hints::relay_hints_from_row;
use nostr::{EventBuilder, Keys, Kind, Tag};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn main() {
    let n = 100_000;
    let mut rng = StdRng::seed_from_u64(7);
    let keys = Keys::generate();
    let relays: Vec<String> = (0..200)
        .map(|i| format!("wss://relay{i}.example.com"))
        .collect();
    let hex = "ab".repeat(32);
    let events: Vec<EventRow> = (0..n)
        .map(|i| {
            let relay = |rng: &mut StdRng| relays[rng.random_range(0..relays.len())].clone();
            let (kind, content, tags): (u16, String, Vec<Vec<String>>) =
                match rng.random_range(0..100) {
                    0..60 => (
                        1,
                        "hello nostr".into(),
                        (0..rng.random_range(0..5))
                            .map(|j| {
                                if j % 2 == 0 {
                                    vec!["e".into(), hex.clone(), relay(&mut rng)]
                                } else {
                                    vec!["p".into(), hex.clone()]
                                }
                            })
                            .collect(),
                    ),
                    60..75 => (
                        7,
                        "+".into(),
                        vec![
                            vec!["e".into(), hex.clone(), relay(&mut rng)],
                            vec!["p".into(), hex.clone()],
                        ],
                    ),
                    75..85 => (
                        10002,
                        String::new(),
                        (0..rng.random_range(2..10))
                            .map(|_| vec!["r".into(), relay(&mut rng)])
                            .collect(),
                    ),
                    85..92 => {
                        let content = format!(
                            "{{{}}}",
                            (0..10)
                                .map(|_| format!(
                                    "\"{}\":{{\"read\":true,\"write\":true}}",
                                    relay(&mut rng)
                                ))
                                .collect::<Vec<_>>()
                                .join(",")
                        );
                        (
                            3,
                            content,
                            (0..20).map(|_| vec!["p".into(), hex.clone()]).collect(),
                        )
                    }
                    92..95 => (
                        30166,
                        String::new(),
                        vec![
                            vec!["d".into(), relay(&mut rng)],
                            vec!["n".into(), "clearnet".into()],
                        ],
                    ),
                    _ => (2, relay(&mut rng), vec![]),
                };
            let tags: Vec<Tag> = tags
                .into_iter()
                .map(|t| Tag::parse(t).expect("tag"))
                .collect();
            let ev = EventBuilder::new(Kind::from(kind), content)
                .tags(tags)
                .custom_created_at(nostr::Timestamp::from(1_700_000_000 + i as u64))
                .sign_with_keys(&keys)
                .expect("sign");
            EventRow::from_event(&ev).expect("valid")
        })
        .collect();
    let start = Instant::now();
    let mut urls = 0usize;
    let mut rejected = 0usize;
    for e in &events {
        let h = relay_hints_from_row(e, false);
        urls += h.urls.len();
        rejected += h.rejected;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "relay hints: {n} events in {secs:.3} s = {:.0} events/s; {urls} relay URLs ({:.0} URLs/s), {rejected} rejected",
        n as f64 / secs,
        urls as f64 / secs
    );
}
