//! The memory server's request handler under scripted clients: every client
//! PD of `system.xml` plays records of a byte script (the `server_requests`
//! fuzz target's input), well formed or not, and touches its window. Here the
//! scripts are the fuzz target's seed corpus and seeded random ones; the
//! fuzz target (`make test-fuzz`) searches further.

use std::path::Path;

use tagloan_scenario_tests::report;
use tagloan_scenarios::{check_scripted, run_script, Options, Report};

/// xorshift64*: the scripts must not depend on a crate's RNG changing.
fn random_script(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn counter(r: &Report, name: &str) -> u64 {
    r.clients
        .iter()
        .map(|c| {
            c.counters
                .iter()
                .find(|(k, _)| k == name)
                .map_or(0, |(_, v)| *v)
        })
        .sum()
}

#[test]
fn scripted_clients_from_every_badge_leave_the_pool_sound_and_lose_no_frame() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/server_requests");
    let mut scripts: Vec<(String, Vec<u8>)> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    scripts.sort();
    assert!(!scripts.is_empty(), "{}: no seed scripts", corpus.display());
    let seeds = scripts.len();
    for seed in 0..60u64 {
        scripts.push((format!("random script {seed}"), random_script(seed, 1500)));
    }
    let (mut requests, mut refused, mut accesses, mut recalls, mut faults, mut stopped) =
        (0, 0, 0, 0, 0, 0);
    for (name, script) in &scripts {
        let r = run_script(script, &Options::default()).unwrap();
        if let Err(why) = check_scripted(&r) {
            panic!("{name}: {why}");
        }
        requests += counter(&r, "requests");
        refused += counter(&r, "refused");
        accesses += counter(&r, "accesses");
        recalls += r.recalls;
        faults += r.faults_resolved + r.faults_tag_check + r.faults_other;
        stopped += r.clients.iter().filter(|c| !c.running).count();
    }
    report(&format!(
        "scenario scripted: {} scripts ({seeds} seeds of the server_requests fuzz target, 60 random): {requests} requests ({refused} refused), {accesses} accesses, {faults} faults, {recalls} recalls, {stopped} clients stopped; 0 violations, 0 frames lost",
        scripts.len()
    ));
    assert!(requests > 0 && refused > 0 && requests > refused);
}
