//! A fault that lazy tagging does not explain is a real fault: the fault
//! handler must not resume the client on it (on seL4 the access would fault
//! again for ever).

use tagloan_mte::Kernel;
use tagloan_scenario_tests::{assert_sound, report};
use tagloan_scenarios::{HeapPlan, Options, Plans, Run};

#[test]
fn a_permission_fault_on_a_tagged_page_restarts_the_client_and_never_resumes_it() {
    let options = Options {
        keep_trace: true,
        ..Options::default()
    };
    let plans = Plans {
        heap: Some(HeapPlan {
            arenas: 2,
            operations: 200,
            ..HeapPlan::default()
        }),
        ..Plans::default()
    };
    let mut run = Run::start("permission-fault", plans, &options).unwrap();
    // Run until the heap's first arena is mapped tagged (client 0 in the
    // client table, its window at 0x40000000).
    let (heap, arena) = (0u8, 0x4000_0000u64);
    let frame = loop {
        assert!(
            run.advance(1),
            "the system went idle before the arena was mapped"
        );
        let mapped = run.sim.machine().unwrap().mapping(heap, arena);
        if let Some((frame, tagloan_mte::Access::Tagged)) = mapped {
            break frame;
        }
    };
    // What a stray permission fault looks like: the page stays tagged in the
    // pool, but the MMU now refuses access to it.
    {
        let mut machine = run.sim.machine_mut().unwrap();
        machine.unmap(heap, arena);
        machine.map(heap, arena, frame, tagloan_mte::Access::NoAccess);
    }
    run.advance(options.max_steps);
    let r = run.finish();
    report(&r.one_line());
    assert_sound(&r);
    assert_eq!(r.summary.livelocks, 0, "never resumed on the same fault");
    assert!(
        r.trace
            .contains("on a page that is not awaiting tags (AlreadyTagged); a real fault"),
        "the fault handler says why it did not resume"
    );
    assert!(r.summary.restarts >= 1, "the client is restarted clean");
    assert!(r.faults_other >= 1, "counted as a real fault");
    assert_eq!(r.faults_resolved, 0, "nothing was resolved as lazy tagging");
}
