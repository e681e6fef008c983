//! One seed, one run: the trace is byte-identical; another seed gives
//! another trace. And corrupted messages and lost notifications leave the
//! system sound.

use tagloan_scenario_tests::{assert_sound, report};
use tagloan_scenarios::{run, Options, Scenario};
use tagloan_sim::Injection;

fn random(seed: u64, steps: u64, injections: Vec<Injection>) -> tagloan_scenarios::Report {
    let options = Options {
        seed,
        max_steps: steps,
        keep_trace: true,
        injections,
        ..Options::default()
    };
    run(Scenario::Random, &options).unwrap()
}

#[test]
fn one_seed_gives_a_byte_identical_trace_and_another_seed_another() {
    let a = random(7, 20_000, Vec::new());
    let b = random(7, 20_000, Vec::new());
    let c = random(8, 20_000, Vec::new());
    assert!(
        a.trace.len() > 100_000,
        "the trace is real: {} bytes",
        a.trace.len()
    );
    assert!(a.trace == b.trace, "same seed, different traces");
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_ne!(a.trace, c.trace);
    assert_ne!(a.trace_hash, c.trace_hash);
    for r in [&a, &c] {
        assert_sound(r);
        assert_eq!(
            r.faults_tag_check, 0,
            "the random clients never misuse their own tags"
        );
        assert_eq!(r.client_counter("client_bulk", "unexpected"), 0);
    }
    report(&format!(
        "determinism: seed 7 twice gives {} identical trace bytes (hash {:#018x}); seed 8 differs",
        a.trace.len(),
        a.trace_hash
    ));
}

#[test]
fn random_workloads_keep_every_invariant_for_several_seeds() {
    let mut lines = Vec::new();
    for seed in 1..=3 {
        let r = random(seed, 30_000, Vec::new());
        assert_sound(&r);
        for client in &r.clients {
            assert_eq!(
                client
                    .counters
                    .iter()
                    .find(|(n, _)| n == "unexpected")
                    .map(|(_, v)| *v),
                Some(0),
                "seed {seed}: {} saw an answer its shadow did not predict: {:?}",
                client.name,
                client.counters
            );
        }
        lines.push(r.one_line());
    }
    for line in lines {
        report(&line);
    }
}

#[test]
fn corrupted_messages_and_lost_notifications_leave_the_system_sound() {
    let mut injections = Vec::new();
    for call in (5..400).step_by(7) {
        for pd in [
            "client_tagged_heap",
            "client_bulk",
            "client_lazy",
            "client_rogue",
        ] {
            injections.push(Injection::CorruptCall {
                pd: pd.into(),
                call,
            });
        }
    }
    injections.push(Injection::DropNotification {
        pd: "client_lazy".into(),
        index: 30,
    });
    let r = random(11, 30_000, injections);
    assert_sound(&r);
    assert!(
        r.summary.injections > 100,
        "{} injections fired",
        r.summary.injections
    );
    assert_eq!(r.summary.notifications_dropped, 1);
    // The corrupted calls were refused or served as what they decoded to;
    // either way the server held its invariants after every one.
    assert!(r.server_counter("refused_malformed") > 0);
    report(&format!(
        "fault injection: {} corrupted calls and 1 lost notification; {} refused as malformed; {} invariant checks, {} violations",
        r.summary.injections,
        r.server_counter("refused_malformed"),
        r.invariant_checks,
        r.violations
    ));
}
