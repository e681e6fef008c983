//! Crash mid-operation: each client is crashed in the middle of every
//! operation it makes (before the server sees the call, and after it served
//! it, losing the reply), and at memory accesses. The fault handler reclaims
//! and restarts it; nothing leaks: once the clients are done, the free
//! counts are back to their values after start-up.

use tagloan_scenario_tests::{assert_no_leak, assert_sound, report};
use tagloan_scenarios::{crash_campaign, run_plans, BulkPlan, HeapPlan, LazyPlan, Options, Plans};
use tagloan_sim::Injection;

fn plans() -> Plans {
    Plans {
        heap: Some(HeapPlan {
            arenas: 2,
            order: 0,
            operations: 12,
            ..HeapPlan::default()
        }),
        bulk: Some(BulkPlan {
            buffers: 2,
            order: 2,
            verify_rounds: 1,
            ..BulkPlan::default()
        }),
        lazy: Some(LazyPlan {
            rounds: 2,
            order: 1,
            start_delay: 0,
            hold: false,
            linger: 0,
            wait_for_free: 0,
        }),
        rogue: true,
        rogue_touches_unmapped: false,
        c: Some(tagloan_scenarios::CPlan::default()),
        random: None,
    }
}

/// Checks every run of a crash campaign; gives the runs' totals and restarts.
fn check_campaign(
    runs: &[(Injection, tagloan_scenarios::Report)],
) -> (tagloan_scenarios::Report, u64) {
    let mut restarts = 0;
    let mut total = tagloan_scenarios::Report::default();
    for (injection, r) in runs {
        total.summary.steps += r.summary.steps;
        total.ipcs += r.ipcs;
        total.migrations += r.migrations;
        total.recalls += r.recalls;
        total.invariant_checks += r.invariant_checks;
        total.faults_other += r.faults_other;
        total.faults_resolved += r.faults_resolved;
        assert_sound(r);
        assert_no_leak(r);
        let Injection::CrashAtCall { pd, .. } = injection else {
            unreachable!()
        };
        assert_eq!(r.summary.injections, 1, "{injection:?}");
        assert_eq!(
            r.faults_other, 1,
            "{injection:?}: the crash reaches the fault handler"
        );
        // Restarted clean, it ran its plan again to the end.
        assert!(
            r.clients
                .iter()
                .any(|c| &c.name == pd && c.running && c.counters.contains(&("done".into(), 1))),
            "{injection:?}: {pd} did not finish after its restart"
        );
        restarts += r.summary.restarts;
    }
    (total, restarts)
}

#[test]
fn a_client_crashed_in_the_middle_of_any_operation_leaks_nothing() {
    let options = Options::default();
    let runs = crash_campaign(plans(), &options).unwrap();
    let (total, restarts) = check_campaign(&runs);
    assert!(runs.len() >= 100, "only {} crash points", runs.len());
    report(&format!(
        "scenario crash: {} runs, one crash each (every PPC of 5 clients, the C client's among them, before and after the server serves it): {} steps, {} IPCs, {} faults ({} crashes, {} lazy-tag), {} migrations, {} recalls, {restarts} restarts, {} invariant checks, 0 violations, 0 frames leaked",
        runs.len(),
        total.summary.steps,
        total.ipcs,
        total.faults_other + total.faults_resolved,
        total.faults_other,
        total.faults_resolved,
        total.migrations,
        total.recalls,
        total.invariant_checks
    ));
}

/// Wider plans: more allocations, tag-enable rounds and buffers, so more
/// crash points, each in another state (a scheduling seed would not do: the
/// fault handler's pacing makes runs under other seeds identical, step for
/// step).
fn wide_plans(order: u8) -> Plans {
    Plans {
        heap: Some(HeapPlan {
            arenas: 4,
            order: order.min(2),
            operations: 20,
            ..HeapPlan::default()
        }),
        bulk: Some(BulkPlan {
            buffers: 6,
            order: order + 1,
            verify_rounds: 1,
            ..BulkPlan::default()
        }),
        lazy: Some(LazyPlan {
            rounds: 6,
            order,
            start_delay: 0,
            hold: false,
            linger: 0,
            wait_for_free: 0,
        }),
        ..plans()
    }
}

#[test]
fn crash_campaigns_over_wider_plans_bring_the_runs_past_a_thousand_and_leak_nothing() {
    let options = Options::default();
    let mut runs_total = crash_campaign(plans(), &options).unwrap().len();
    let mut checks = 0;
    let mut restarts_total = 0;
    for order in [0, 1, 2] {
        let runs = crash_campaign(wide_plans(order), &options).unwrap();
        let (total, restarts) = check_campaign(&runs);
        runs_total += runs.len();
        checks += total.invariant_checks;
        restarts_total += restarts;
    }
    assert!(runs_total >= 1000, "only {runs_total} runs");
    report(&format!(
        "scenario crash campaigns: {runs_total} runs in all (the campaign above and three wider plans), one crash each; in the wider ones {restarts_total} restarts, {checks} invariant checks, 0 violations, 0 frames leaked"
    ));
}

#[test]
fn a_crash_during_a_lazy_tagging_fault_leaks_nothing() {
    // Crash the lazy client right after each of its tag-enable faults was
    // resolved (block reserved, page mapped tagged) and before it retries
    // the access; and at every third kernel step of its run.
    let lazy = || Plans {
        lazy: plans().lazy,
        ..Plans::default()
    };
    let clean = run_plans("lazy (clean)", lazy(), &Options::default()).unwrap();
    assert!(clean.faults_resolved >= 4);
    let mut crashed = 0;
    let mut injections = Vec::new();
    for fault in 0..clean.faults_resolved {
        injections.push(Injection::CrashAfterFault {
            pd: "client_lazy".into(),
            fault,
        });
    }
    for step in (1..clean.summary.steps).step_by(3) {
        injections.push(Injection::CrashAtStep {
            pd: "client_lazy".into(),
            step,
        });
    }
    let runs = injections.len();
    for injection in injections {
        let o = Options {
            injections: vec![injection.clone()],
            ..Options::default()
        };
        let r = run_plans("crash-in-lazy", lazy(), &o).unwrap();
        assert_sound(&r);
        assert_no_leak(&r);
        // A crash at a step fires at the client's first kernel event from
        // that step on: none if it had finished by then.
        if let Injection::CrashAfterFault { .. } = injection {
            assert_eq!(r.summary.injections, 1, "{injection:?} did not fire");
        }
        assert_eq!(r.summary.restarts, r.summary.injections, "{injection:?}");
        crashed += r.summary.injections;
    }
    assert!(
        crashed > clean.faults_resolved + 10,
        "{crashed} of {runs} fired"
    );
    report(&format!(
        "scenario crash-in-lazy: {runs} runs, {crashed} crashes of client_lazy: after each of its {} resolved tag-enable faults, and at every third kernel step while it ran; 0 leaks, 0 violations",
        clean.faults_resolved
    ));
}

#[test]
fn a_client_that_keeps_crashing_is_restarted_three_times_then_stopped() {
    // Four crashes, each at the client's first kernel event after the last.
    let injections = (0..4)
        .map(|_| Injection::CrashAtStep {
            pd: "client_bulk".into(),
            step: 1,
        })
        .collect();
    let options = Options {
        injections,
        keep_trace: true,
        ..Options::default()
    };
    let r = run_plans("crash-loop", plans(), &options).unwrap();
    assert_sound(&r);
    assert_no_leak(&r);
    assert_eq!(r.summary.injections, 4);
    assert_eq!(r.faults_other, 4);
    assert_eq!(r.summary.restarts, fault_handler::MAX_RESTARTS as u64);
    let bulk = r.clients.iter().find(|c| c.name == "client_bulk").unwrap();
    assert!(!bulk.running, "stopped after its last restart");
    assert_eq!(bulk.frames_held, 0, "and reclaimed");
    assert!(r
        .trace
        .contains("client_bulk faulted after 3 restarts; stopping it"));
    report(&format!(
        "scenario crash-loop: client_bulk crashed 4 times: restarted {} times, then stopped and reclaimed; 0 leaks",
        r.summary.restarts
    ));
}
