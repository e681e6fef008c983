//! The simulated kernel's rules, one test each, on small plain Microkit
//! systems (no tagloan PDs): SDF checks, PPC, notifications, faults,
//! restarts and fault injection.

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use tagloan_microkit::{Channel, ChannelSet, Child, Env, Fault, Handler, MessageInfo};
use tagloan_sim::{Config, Injection, Registry, Sdf, Sim};

fn sdf(text: &str) -> Result<Sdf, tagloan_sim::SdfError> {
    Sdf::parse(text, Path::new("test.xml"), &[])
}

fn error_of(text: &str) -> String {
    sdf(text).unwrap_err().to_string()
}

const PAIR: &str = r#"<system>
    <protection_domain name="server" priority="200" passive="true">
        <program_image path="server.elf" />
    </protection_domain>
    <protection_domain name="parent" priority="150">
        <program_image path="parent.elf" />
        <protection_domain name="client" priority="100" id="7">
            <program_image path="client.elf" />
        </protection_domain>
    </protection_domain>
    <channel>
        <end pd="client" id="3" pp="true" />
        <end pd="server" id="5" />
    </channel>
    <channel>
        <end pd="client" id="1" />
        <end pd="parent" id="2" />
    </channel>
</system>"#;

#[test]
fn a_ppc_to_an_equal_or_lower_priority_is_rejected_at_load_with_the_element_named() {
    for server_priority in ["100", "50"] {
        let text = PAIR.replace(
            "priority=\"200\"",
            &format!("priority=\"{server_priority}\""),
        );
        let message = error_of(&text);
        assert!(
            message.starts_with("test.xml:11:5: <channel>:"),
            "{message}"
        );
        assert!(
            message.contains("a PPC must go to a strictly higher priority"),
            "{message}"
        );
        assert!(
            message.contains("`client` (priority 100) may call `server`"),
            "{message}"
        );
    }
    assert!(sdf(PAIR).is_ok());
}

#[test]
fn sdf_errors_are_located_and_say_the_rule() {
    let cases = [
        (
            PAIR.replace("name=\"parent\" priority", "name=\"server\" priority"),
            "already exists; names are unique",
        ),
        (
            PAIR.replace(
                "<end pd=\"server\" id=\"5\" />",
                "<end pd=\"nobody\" id=\"5\" />",
            ),
            "pd `nobody` is not a protection domain",
        ),
        (
            PAIR.replace("<end pd=\"server\" id=\"5\" />", ""),
            "exactly two <end> elements",
        ),
        (
            PAIR.replace(
                "<end pd=\"parent\" id=\"2\" />",
                "<end pd=\"parent\" id=\"2\" pp=\"true\" />",
            ),
            "a PPC must go to a strictly higher priority",
        ),
        (
            PAIR.replace("id=\"1\" />", "id=\"3\" />"),
            "channel id 3 is already used in `client`",
        ),
        (
            PAIR.replace(" id=\"7\"", ""),
            "a child protection domain needs `id`",
        ),
        (
            PAIR.replace("passive=\"true\"", "passive=\"yes\""),
            "must be \"true\" or \"false\"",
        ),
        (
            PAIR.replace("priority=\"150\"", "priority=\"255\""),
            "above 254",
        ),
        (
            PAIR.replace("priority=\"150\"", "priority=\"90\""),
            "a fault handler must outrank its children",
        ),
        (
            PAIR.replace(
                "<program_image path=\"server.elf\" />",
                "<program_image path=\"server.elf\" /><irq irq=\"33\" id=\"1\" />",
            ),
            "<irq> is not an element",
        ),
        (
            PAIR.replace("<system>", "<system colour=\"red\">"),
            "attribute `colour` is not a Microkit attribute",
        ),
        (
            PAIR.replace(
                "<end pd=\"client\" id=\"3\" pp=\"true\" />",
                "<end pd=\"client\" id=\"3\" />",
            ),
            "a passive PD runs only on its callers' PPCs",
        ),
        (
            "<system><protection_domain name=\"a\"></system>".to_string(),
            "not well-formed",
        ),
        (
            PAIR.replace(
                "</system>",
                "<memory_region name=\"m\" size=\"0x1001\" /></system>",
            ),
            "not a non-zero multiple of the page size",
        ),
    ];
    for (text, expected) in cases {
        let message = match sdf(&text) {
            Ok(_) => panic!("accepted, want `{expected}`:\n{text}"),
            Err(e) => e.to_string(),
        };
        assert!(
            message.contains(expected),
            "want `{expected}`, got `{message}`"
        );
        assert!(message.starts_with("test.xml:"), "not located: {message}");
    }
}

type Log = Rc<RefCell<Vec<String>>>;

/// Echoes a PPC: the reply's label is the channel id it arrived on, and its
/// one register is the first request register plus one.
struct Echo(Log);
impl Handler for Echo {
    type Error = String;
    fn init(&mut self, _env: &mut dyn Env) -> Result<(), String> {
        Ok(())
    }
    fn protected(
        &mut self,
        env: &mut dyn Env,
        channel: Channel,
        info: MessageInfo,
    ) -> Result<MessageInfo, String> {
        let value = env.mr(0);
        self.0.borrow_mut().push(format!(
            "protected ch{} label{} count{} mr0={value}",
            channel.index(),
            info.label(),
            info.count()
        ));
        if value == 666 {
            return Err(format!(
                "mr0 holds {value}, which this server refuses to serve"
            ));
        }
        env.set_mr(0, value + 1);
        Ok(MessageInfo::new(channel.index() as u64, 1))
    }
}

/// The client: on init it calls the server, then loads from an unmapped
/// address (a VM fault), then notifies its parent.
struct Caller(Log, u64);
impl Handler for Caller {
    type Error = String;
    fn init(&mut self, env: &mut dyn Env) -> Result<(), String> {
        env.set_mr(0, self.1);
        match env.ppcall(Channel::new(3), MessageInfo::new(9, 1)) {
            Ok(reply) => {
                self.0
                    .borrow_mut()
                    .push(format!("reply label{} mr0={}", reply.label(), env.mr(0)))
            }
            Err(_) => {
                self.0.borrow_mut().push("call stopped".into());
                return Ok(());
            }
        }
        let mut byte = [0u8; 1];
        match env.load(0x1000, &mut byte) {
            Ok(()) => self.0.borrow_mut().push("load resumed".into()),
            Err(_) => {
                self.0.borrow_mut().push("load stopped".into());
                return Ok(());
            }
        }
        env.notify(Channel::new(1));
        Ok(())
    }
}

/// The parent: resumes the first `resume` faults, then stops the child (or
/// restarts it once, if `restart`).
struct Parent {
    log: Log,
    resume: u32,
    restart: bool,
    faults: u32,
}
impl Handler for Parent {
    type Error = core::convert::Infallible;
    fn init(&mut self, _env: &mut dyn Env) -> Result<(), Self::Error> {
        Ok(())
    }
    fn notified(&mut self, _env: &mut dyn Env, channels: ChannelSet) -> Result<(), Self::Error> {
        self.log
            .borrow_mut()
            .push(format!("notified badge {:#x}", channels.badge()));
        Ok(())
    }
    fn fault(
        &mut self,
        env: &mut dyn Env,
        child: Child,
        info: MessageInfo,
    ) -> Result<Option<MessageInfo>, Self::Error> {
        let fault = Fault::decode(info, &[env.mr(0), env.mr(1), env.mr(2), env.mr(3)]);
        self.faults += 1;
        self.log.borrow_mut().push(format!(
            "fault child{} {}",
            child.index(),
            match fault {
                Fault::VmFault { addr, .. } => format!("vm {addr:#x}"),
                Fault::UserException { .. } => "user-exception".into(),
                other => format!("{other:?}"),
            }
        ));
        if self.faults <= self.resume {
            return Ok(Some(MessageInfo::new(0, 0)));
        }
        if self.restart {
            self.restart = false;
            env.pd_restart(child, 0x200000);
        } else {
            env.pd_stop(child);
        }
        Ok(None)
    }
}

fn system(resume: u32, restart: bool, config: Config) -> (Sim, Log) {
    system_with(41, resume, restart, config)
}

fn system_with(first_word: u64, resume: u32, restart: bool, config: Config) -> (Sim, Log) {
    let log: Log = Rc::default();
    let mut registry = Registry::new();
    let l = log.clone();
    registry.register_handler("server", move || Echo(l.clone()));
    let l = log.clone();
    registry.register_handler("client", move || Caller(l.clone(), first_word));
    let l = log.clone();
    registry.register_handler("parent", move || Parent {
        log: l.clone(),
        resume,
        restart,
        faults: 0,
    });
    let sim = Sim::new(sdf(PAIR).unwrap(), &registry, config).unwrap();
    (sim, log)
}

#[test]
fn a_ppc_runs_the_callee_at_once_with_the_badge_and_registers_and_a_fault_reaches_the_parent_which_stops_the_child(
) {
    let (mut sim, log) = system(0, false, Config::default());
    sim.run(100);
    assert_eq!(
        *log.borrow(),
        [
            "protected ch5 label9 count1 mr0=41",
            "reply label5 mr0=42",
            "fault child7 vm 0x1000",
            "load stopped",
        ]
    );
    assert!(!sim.is_running("client"));
    let summary = sim.summary();
    assert_eq!((summary.calls, summary.faults_vm, summary.stops), (1, 1, 1));
}

#[test]
fn a_handler_that_returns_an_error_ends_its_pd_and_its_caller_blocks_for_ever() {
    // The server refuses to serve 666 by failing its handler: on seL4 the PD
    // ends (sel4-microkit panics), no reply comes, and the caller blocks.
    let (mut sim, log) = system_with(666, 0, false, Config::default());
    sim.run(100);
    assert_eq!(
        *log.borrow(),
        ["protected ch5 label9 count1 mr0=666", "call stopped"]
    );
    assert!(!sim.is_running("server"), "the failed handler ends its PD");
    assert!(!sim.is_running("client"), "its caller blocks for ever");
    let summary = sim.summary();
    assert_eq!((summary.calls, summary.stops), (1, 2));
}

#[test]
fn a_fault_reply_resumes_the_child_which_retries_and_is_stopped_for_a_livelock() {
    // The parent resumes without fixing anything: the access faults again.
    // The simulator allows 16 resumed identical faults, then stops the PD.
    let (mut sim, log) = system(100, false, Config::default());
    sim.run(1000);
    let faults = log
        .borrow()
        .iter()
        .filter(|l| l.starts_with("fault"))
        .count();
    assert_eq!(faults, 16);
    assert_eq!(log.borrow().last().unwrap(), "load stopped");
    assert!(!sim.is_running("client"));
    assert_eq!(sim.summary().livelocks, 1, "the livelock is counted");
}

#[test]
fn a_restarted_child_runs_init_again() {
    let (mut sim, log) = system(0, true, Config::default());
    sim.run(1000);
    let log = log.borrow();
    assert_eq!(
        log.iter().filter(|l| l.starts_with("protected")).count(),
        2,
        "{log:?}"
    );
    assert_eq!(sim.summary().restarts, 1);
    assert!(!sim.is_running("client"), "the second fault stops it");
}

#[test]
fn notifications_set_badge_bits_and_an_injected_drop_loses_one() {
    // A client that only signals its parent, twice.
    struct Notifier;
    impl Handler for Notifier {
        type Error = core::convert::Infallible;
        fn init(&mut self, env: &mut dyn Env) -> Result<(), Self::Error> {
            env.notify(Channel::new(1));
            env.notify(Channel::new(1));
            Ok(())
        }
    }
    let text = PAIR;
    let build = |injections: Vec<Injection>| {
        let log: Log = Rc::default();
        let mut registry = Registry::new();
        let l = log.clone();
        registry.register_handler("server", move || Echo(l.clone()));
        registry.register_handler("client", || Notifier);
        let l = log.clone();
        registry.register_handler("parent", move || Parent {
            log: l.clone(),
            resume: 0,
            restart: false,
            faults: 0,
        });
        let mut sim = Sim::new(
            sdf(text).unwrap(),
            &registry,
            Config {
                injections,
                ..Config::default()
            },
        )
        .unwrap();
        sim.run(100);
        let entries = log.borrow().clone();
        (sim.summary(), entries)
    };
    let (summary, log) = build(Vec::new());
    // Two signals on one channel before delivery coalesce into one wakeup.
    assert_eq!(log, ["notified badge 0x4"]);
    assert_eq!(summary.notifications, 2);
    let (summary, log) = build(vec![
        Injection::DropNotification {
            pd: "client".into(),
            index: 0,
        },
        Injection::DropNotification {
            pd: "client".into(),
            index: 1,
        },
    ]);
    assert!(log.is_empty());
    assert_eq!(
        (summary.notifications, summary.notifications_dropped),
        (0, 2)
    );
}

#[test]
fn an_injected_crash_mid_call_reaches_the_parent_and_the_reply_is_lost() {
    for after_serve in [false, true] {
        let (mut sim, log) = system(
            0,
            false,
            Config {
                injections: vec![Injection::CrashAtCall {
                    pd: "client".into(),
                    call: 0,
                    after_serve,
                }],
                ..Config::default()
            },
        );
        sim.run(100);
        let log = log.borrow();
        let served = log.iter().any(|l| l.starts_with("protected"));
        assert_eq!(served, after_serve, "{log:?}");
        assert!(
            log.contains(&"fault child7 user-exception".to_string()),
            "{log:?}"
        );
        assert_eq!(log.last().unwrap(), "call stopped");
    }
}

#[test]
fn an_injected_corruption_flips_one_bit_of_the_call() {
    let (mut sim, log) = system(
        0,
        false,
        Config {
            injections: vec![Injection::CorruptCall {
                pd: "client".into(),
                call: 0,
            }],
            keep_trace: true,
            ..Config::default()
        },
    );
    sim.run(100);
    let first = log.borrow()[0].clone();
    assert_ne!(
        first, "protected ch5 label9 count1 mr0=41",
        "the call must differ"
    );
    assert!(sim.trace().text().contains("inject client corrupt call 0"));
}

#[test]
fn one_seed_gives_one_trace() {
    let run = |seed| {
        let (mut sim, _) = system(
            2,
            true,
            Config {
                seed,
                keep_trace: true,
                ..Config::default()
            },
        );
        sim.run(1000);
        (sim.trace().text().to_string(), sim.trace().hash())
    };
    let (a, ha) = run(5);
    let (b, hb) = run(5);
    assert_eq!(a, b);
    assert_eq!(ha, hb);
    assert!(a.contains("call client -> server ch5 label=9"), "{a}");
}

#[test]
fn an_injected_stop_ends_the_pd_silently_at_its_step() {
    // The client's first kernel event is its PPC (step 1): stopped there,
    // the server never sees the call and the parent is not told.
    let (mut sim, log) = system(
        0,
        false,
        Config {
            injections: vec![Injection::StopAtStep {
                pd: "client".into(),
                step: 1,
            }],
            ..Config::default()
        },
    );
    sim.run(100);
    assert_eq!(*log.borrow(), ["call stopped"]);
    assert!(!sim.is_running("client"));
    let summary = sim.summary();
    assert_eq!(
        (
            summary.calls,
            summary.faults(),
            summary.stops,
            summary.injections
        ),
        (0, 0, 1, 1)
    );
}

#[test]
fn a_call_to_a_stopped_server_and_a_fault_to_a_stopped_parent_block_the_caller() {
    // The server is stopped: the client's PPC finds no receiver and blocks.
    let (mut sim, log) = system(0, false, Config::default());
    assert!(sim.stop_now("server"));
    sim.run(100);
    assert_eq!(*log.borrow(), ["call stopped"]);
    assert!(!sim.is_running("client"));
    // The parent is stopped: the client's fault goes nowhere and it blocks.
    let (mut sim, log) = system(0, false, Config::default());
    assert!(sim.stop_now("parent"));
    sim.run(100);
    assert_eq!(
        *log.borrow(),
        [
            "protected ch5 label9 count1 mr0=41",
            "reply label5 mr0=42",
            "load stopped"
        ]
    );
    assert_eq!(
        sim.summary().faults_vm,
        1,
        "the fault is raised, but no handler runs"
    );
}

#[test]
fn a_mapping_that_leaves_the_address_space_is_refused() {
    let text = PAIR
        .replace(
            "<program_image path=\"client.elf\" />",
            "<program_image path=\"client.elf\" /><map mr=\"m\" vaddr=\"0xfffffffffffff000\" />",
        )
        .replace(
            "<system>",
            "<system><memory_region name=\"m\" size=\"0x2000\" />",
        );
    let message = error_of(&text);
    assert!(
        message.contains("leaves the user address space"),
        "{message}"
    );
}
