//! Exhaustive model checking of the pool core with `stateright`: every
//! sequence of operations by two clients over small layouts, breadth first,
//! with the pool's whole state (its tables and its `PoolHeader`) as the
//! model state, so that equal pool states reached by different sequences
//! are explored once.
//!
//! Properties, checked on every state reached:
//! - `always`: I1–I12 hold (`check_invariants`), and a refused request
//!   changed nothing (I12, compared table by table);
//! - `always`, liveness-style: a pinned order-0 request that memory could
//!   satisfy (a free data frame, or a movable data page and a free frame to
//!   move it to) is granted (defect 1 of the assurance issue: such a request
//!   was refused for ever); and after `reclaim`, the reclaimed client gets
//!   an order-0 page again;
//! - `sometimes`, to show the model reaches them: tag storage lent, a
//!   recall, a migration, a page awaiting tags.
//!
//! The checker stops after `MODEL_STATES` states generated per layout
//! (default 4,000,000; `ASSURE_LONG=1`: 24,000,000), breadth first, so every
//! state above the depth it reports is explored. It prints the distinct
//! states, the depth and the command that reproduces them.

mod common;

use std::hash::{Hash, Hasher};
use std::io::Write;

use common::NoMachine;
use stateright::{Checker, Model, Property};
use tagloan_pool::{
    AllocRequest, BlockState, ClientSpec, ClientState, Config, DeferredSlot, Frame, FrameEntry,
    Layout, LendPolicy, Mode, Pool, PoolError, PoolHeader, RegionSpec, Storage, TagPlacement,
    TagSpec,
};

/// The clients whose every operation the model tries.
const CLIENTS: u8 = 2;
/// A third client holds most of data memory from the start (order-3
/// untagged, movable blocks), so that the two reach lending, recall and
/// migration within a few steps; the model may free its first blocks.
const FILLER: u8 = CLIENTS;
const FILLER_PAGES: u32 = 128;
const FILLER_BLOCK_ORDER: u8 = 3;
const FILLER_FREEABLE: u8 = 2;
/// Data frames the filler leaves free.
const FILL_LEAVE: u32 = 2;
const SLOTS: u8 = 2;
/// Pages per slot: room for an order-1 allocation.
const SLOT_PAGES: u64 = 2;
/// The probe's slot, outside the model's own.
const PROBE_SLOT: u8 = SLOTS;
const WINDOW_PAGES: u32 = ((SLOTS as u64 + 1) * SLOT_PAGES) as u32;
/// Below the two slots' four pages: `out-of-quota` is reachable.
const QUOTA: u32 = 3;
const PAGE: u64 = 4096;

fn vaddr(client: u8, slot: u8) -> u64 {
    let slot_pages = if client == FILLER {
        1 << FILLER_BLOCK_ORDER
    } else {
        SLOT_PAGES
    };
    0x4000_0000 * (u64::from(client) + 1) + u64::from(slot) * slot_pages * PAGE
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Untagged,
    Tagged,
    Pinned,
    Contiguous,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Action {
    Alloc {
        client: u8,
        slot: u8,
        order: u8,
        kind: Kind,
    },
    Free {
        client: u8,
        slot: u8,
    },
    Enable {
        client: u8,
        slot: u8,
    },
    Disable {
        client: u8,
        slot: u8,
    },
    Resolve {
        client: u8,
        slot: u8,
    },
    Pin {
        client: u8,
        slot: u8,
    },
    Unpin {
        client: u8,
        slot: u8,
    },
    Reclaim {
        client: u8,
    },
}

/// A whole pool: its tables and its header.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PoolState {
    header: PoolHeader,
    frames: Vec<FrameEntry>,
    page_map: Vec<u32>,
    map_bits: Vec<u64>,
    deferred: Vec<DeferredSlot>,
    clients: Vec<ClientState>,
    blocks: Vec<BlockState>,
    /// `Pool::fingerprint` of it, for hashing.
    fingerprint: u64,
}

impl PoolState {
    /// Runs `f` on the pool this state is (on a copy of its tables), and
    /// gives the state after it.
    fn with_pool<R>(&self, f: impl FnOnce(&mut Pool<'_>) -> R) -> (PoolState, R) {
        let mut next = self.clone();
        let (header, fingerprint, result) = {
            let mut pool = Pool::resume(
                self.header,
                Storage {
                    frames: &mut next.frames,
                    page_map: &mut next.page_map,
                    map_bits: &mut next.map_bits,
                    deferred: &mut next.deferred,
                    clients: &mut next.clients,
                    blocks: &mut next.blocks,
                },
            )
            .expect("the state's tables fit its header");
            let result = f(&mut pool);
            (pool.header(), pool.fingerprint(), result)
        };
        next.header = header;
        next.fingerprint = fingerprint;
        (next, result)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct State {
    pool: PoolState,
    /// `check_invariants` after the last action, as text if it failed.
    violation: Option<String>,
    /// The last action was refused but changed the pool.
    refusal_changed_state: bool,
    /// The client whose frames the last action reclaimed (if it held any).
    reclaimed: Option<u8>,
    /// What the `sometimes` properties look for, read from the pool when the
    /// state was made.
    seen: Seen,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Seen {
    lent: bool,
    recalled: bool,
    migrated: bool,
    awaiting_tags: bool,
}

impl Seen {
    fn of(pool: &Pool<'_>) -> Seen {
        let stats = pool.stats();
        Seen {
            lent: stats.tag_frames_lent > 0,
            recalled: stats.recalls > 0,
            migrated: stats.migrations > 0,
            awaiting_tags: (0..pool.layout().frames_total()).any(|i| {
                matches!(
                    pool.frame(i).and_then(Result::ok),
                    Some(Frame::Owned(o)) if o.mode == Mode::MetadataNone
                )
            }),
        }
    }
}

impl Hash for State {
    /// The tables' fingerprint (`Eq` compares everything).
    fn hash<H: Hasher>(&self, hasher: &mut H) {
        self.pool.fingerprint.hash(hasher);
        self.reclaimed.hash(hasher);
    }
}

struct PoolModel {
    name: &'static str,
    layout: Layout,
    config: Config,
}

impl PoolModel {
    fn initial(&self) -> PoolState {
        let specs: Vec<ClientSpec> = (0..=FILLER)
            .map(|c| ClientSpec {
                window_base: vaddr(c, 0),
                window_pages: if c == FILLER {
                    FILLER_PAGES
                } else {
                    WINDOW_PAGES
                },
                quota_frames: if c == FILLER { FILLER_PAGES } else { QUOTA },
            })
            .collect();
        let sizes = Pool::storage_sizes(&self.layout, &specs, &self.config);
        let mut frames = vec![FrameEntry::default(); sizes.frames];
        let mut page_map = vec![0; sizes.page_map];
        let mut map_bits = vec![0; sizes.map_bits];
        let mut deferred = vec![DeferredSlot::default(); sizes.deferred];
        let mut clients = vec![ClientState::default(); sizes.clients];
        let mut blocks = vec![BlockState::default(); sizes.blocks];
        let (header, fingerprint) = {
            let pool = Pool::new(
                self.layout,
                &specs,
                self.config,
                Storage {
                    frames: &mut frames,
                    page_map: &mut page_map,
                    map_bits: &mut map_bits,
                    deferred: &mut deferred,
                    clients: &mut clients,
                    blocks: &mut blocks,
                },
            )
            .expect("the model's layout is valid");
            let mut pool = pool;
            let mut slot = 0;
            while pool.stats().data_frames_free > FILL_LEAVE {
                let big = pool.stats().data_frames_free >= FILL_LEAVE + (1 << FILLER_BLOCK_ORDER);
                let request = AllocRequest {
                    vaddr: vaddr(FILLER, slot),
                    order: if big { FILLER_BLOCK_ORDER } else { 0 },
                    tagged: false,
                    pinned: false,
                    contiguous: false,
                };
                if pool.alloc(&mut NoMachine, FILLER, request).is_err() {
                    break;
                }
                slot += 1;
            }
            (pool.header(), pool.fingerprint())
        };
        PoolState {
            header,
            frames,
            page_map,
            map_bits,
            deferred,
            clients,
            blocks,
            fingerprint,
        }
    }
}

/// Applies `action`; gives the frames a reclaim freed (0 for the others).
fn apply(pool: &mut Pool<'_>, action: Action) -> Result<u32, PoolError> {
    let m = &mut NoMachine;
    match action {
        Action::Alloc {
            client,
            slot,
            order,
            kind,
        } => pool
            .alloc(
                m,
                client,
                AllocRequest {
                    vaddr: vaddr(client, slot),
                    order,
                    tagged: kind == Kind::Tagged,
                    pinned: kind == Kind::Pinned,
                    contiguous: kind == Kind::Contiguous,
                },
            )
            .map(|_| 0),
        Action::Free { client, slot } => pool.free(m, client, vaddr(client, slot)).map(|_| 0),
        Action::Enable { client, slot } => pool
            .enable_tagging(m, client, vaddr(client, slot), SLOT_PAGES as u32)
            .map(|_| 0),
        Action::Disable { client, slot } => pool
            .disable_tagging(m, client, vaddr(client, slot), SLOT_PAGES as u32)
            .map(|_| 0),
        Action::Resolve { client, slot } => pool
            .resolve_fault(m, client, vaddr(client, slot))
            .map(|_| 0),
        Action::Pin { client, slot } => pool.pin(m, client, vaddr(client, slot)).map(|_| 0),
        Action::Unpin { client, slot } => pool.unpin(client, vaddr(client, slot)).map(|_| 0),
        Action::Reclaim { client } => pool.reclaim_client(m, client),
    }
}

/// The `always` properties of the model (see `properties`).
const ALWAYS: [&str; 4] = [
    "I1-I12 hold after every operation",
    "a refused request changes nothing (I12)",
    "a satisfiable pinned order-0 request is granted",
    "after reclaim the client gets an order-0 page back",
];

impl Model for PoolModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        vec![State {
            pool: self.initial(),
            violation: None,
            refusal_changed_state: false,
            reclaimed: None,
            seen: Seen::default(),
        }]
    }

    fn actions(&self, _state: &State, actions: &mut Vec<Action>) {
        for client in 0..CLIENTS {
            for slot in 0..SLOTS {
                for order in 0..=1 {
                    for kind in [Kind::Untagged, Kind::Tagged, Kind::Pinned, Kind::Contiguous] {
                        actions.push(Action::Alloc {
                            client,
                            slot,
                            order,
                            kind,
                        });
                    }
                }
                actions.push(Action::Free { client, slot });
                actions.push(Action::Enable { client, slot });
                actions.push(Action::Disable { client, slot });
                actions.push(Action::Resolve { client, slot });
                actions.push(Action::Pin { client, slot });
                actions.push(Action::Unpin { client, slot });
            }
            actions.push(Action::Reclaim { client });
        }
        for slot in 0..FILLER_FREEABLE {
            actions.push(Action::Free {
                client: FILLER,
                slot,
            });
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        // A panic in the pool is a bug found, as a violation is.
        let (pool, result) = last.pool.with_pool(|pool| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let result = apply(pool, action);
                let violation = pool.check_invariants().err().map(|v| format!("{v:?}"));
                (result, violation, Seen::of(pool))
            }))
            .unwrap_or_else(|panic| {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                (
                    Err(PoolError::Unsupported),
                    Some(format!("the pool panicked: {text}")),
                    Seen::default(),
                )
            })
        });
        let (result, violation, seen) = result;
        let refused = result.is_err();
        // As I12 sees it: the tables and what the fingerprint covers (not
        // the evacuation cursor, a placement hint, nor failure counts).
        let refusal_changed_state = refused
            && (pool.fingerprint != last.pool.fingerprint
                || pool.frames != last.pool.frames
                || pool.page_map != last.pool.page_map
                || pool.map_bits != last.pool.map_bits
                || pool.deferred != last.pool.deferred
                || pool.clients != last.pool.clients
                || pool.blocks != last.pool.blocks);
        // A refusal that changed nothing at all leads back to the same
        // state (one that moved the evacuation cursor is a new state).
        if refused && pool == last.pool && violation.is_none() {
            return None;
        }
        Some(State {
            pool,
            violation,
            refusal_changed_state,
            // A reclaim that freed frames: the client must get one back.
            reclaimed: match (action, result) {
                (Action::Reclaim { client }, Ok(frames)) if frames > 0 => Some(client),
                _ => None,
            },
            seen,
        })
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("I1-I12 hold after every operation", |_, s: &State| {
                s.violation.is_none()
            }),
            Property::always("a refused request changes nothing (I12)", |_, s: &State| {
                !s.refusal_changed_state
            }),
            Property::always(
                "a satisfiable pinned order-0 request is granted",
                |_, s: &State| pinned_probe_ok(&s.pool),
            ),
            Property::always(
                "after reclaim the client gets an order-0 page back",
                |_, s: &State| {
                    s.reclaimed
                        .is_none_or(|client| reclaim_probe_ok(&s.pool, client))
                },
            ),
            Property::sometimes("tag storage lent as data", |_, s: &State| s.seen.lent),
            Property::sometimes("a lent block recalled", |_, s: &State| s.seen.recalled),
            Property::sometimes("a page migrated", |_, s: &State| s.seen.migrated),
            Property::sometimes("a page awaiting its tags", |_, s: &State| {
                s.seen.awaiting_tags
            }),
        ]
    }
}

/// Whether a pinned order-0 request could be satisfied: a free data frame,
/// or a movable (not pinned, not contiguous) data page and a free frame to
/// move it to. If so, the pool must grant it.
fn pinned_probe_ok(state: &PoolState) -> bool {
    let (_, ok) = state.with_pool(|pool| {
        let stats = pool.stats();
        let layout = pool.layout();
        let movable_in_data = (0..layout.frames_total()).any(|i| {
            let in_data = layout
                .locate(i)
                .is_some_and(|l| l.pool == tagloan_pool::PoolKind::Data);
            in_data
                && matches!(
                    pool.frame(i).and_then(Result::ok),
                    Some(Frame::Owned(o)) if !o.pinned && !o.contiguous
                )
        });
        let satisfiable = stats.data_frames_free > 0
            || (movable_in_data && stats.data_frames_free + stats.tag_frames_free > 0);
        (0..CLIENTS).all(|client| {
            let quota_left = pool
                .client(client)
                .is_some_and(|c| c.frames_used() < c.quota_frames());
            if !satisfiable || !quota_left {
                return true;
            }
            let granted = pool
                .alloc(
                    &mut NoMachine,
                    client,
                    AllocRequest {
                        vaddr: vaddr(client, PROBE_SLOT),
                        order: 0,
                        tagged: false,
                        pinned: true,
                        contiguous: false,
                    },
                )
                .is_ok();
            // Undo on this copy for the next client's probe.
            if granted {
                pool.free(&mut NoMachine, client, vaddr(client, PROBE_SLOT))
                    .expect("the probe's page frees");
            }
            granted
        })
    });
    ok
}

/// Whether `client`, just reclaimed, gets an order-0 untagged page.
fn reclaim_probe_ok(state: &PoolState, client: u8) -> bool {
    state
        .with_pool(|pool| {
            pool.alloc(
                &mut NoMachine,
                client,
                AllocRequest {
                    vaddr: vaddr(client, 0),
                    order: 0,
                    tagged: false,
                    pinned: false,
                    contiguous: false,
                },
            )
            .is_ok()
        })
        .1
}

fn layouts() -> Vec<PoolModel> {
    let tags = |frames, block| {
        Some(TagSpec {
            base: 0x2000,
            frames,
            block_frames: block,
        })
    };
    let one = |data_frames, tags| {
        Layout::new(&[RegionSpec {
            data_base: 0x1000,
            data_frames,
            tags,
        }])
        .unwrap()
    };
    let balanced = Config {
        lend: LendPolicy::Balanced,
        placement: TagPlacement::Affinity,
        deferred_slots: 1,
    };
    vec![
        PoolModel {
            name: "64 data frames, 2 tag frames, block 1",
            layout: one(64, tags(2, 1)),
            config: balanced,
        },
        PoolModel {
            name: "64 data frames, 2 tag frames, block 2",
            layout: one(64, tags(2, 2)),
            config: Config {
                lend: LendPolicy::LastResort,
                ..balanced
            },
        },
        PoolModel {
            name: "two regions: 96 data frames with a 3-frame tag block, 8 without tags",
            layout: Layout::new(&[
                RegionSpec {
                    data_base: 0x1000,
                    data_frames: 96,
                    tags: Some(TagSpec {
                        base: 0x2000,
                        frames: 3,
                        block_frames: 3,
                    }),
                },
                RegionSpec {
                    data_base: 0x3000,
                    data_frames: 8,
                    tags: None,
                },
            ])
            .unwrap(),
            config: Config {
                placement: TagPlacement::AnyPage,
                ..balanced
            },
        },
    ]
}

/// A line past the test harness's capture, so `make test` shows it.
fn report(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[test]
#[cfg_attr(
    feature = "injected",
    ignore = "an injected bug is on: the teeth tests run instead"
)]
fn every_reachable_state_of_small_layouts_keeps_the_invariants() {
    let long = std::env::var("ASSURE_LONG").is_ok_and(|v| v == "1");
    let states: usize = std::env::var("MODEL_STATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if long { 24_000_000 } else { 4_000_000 });
    let mut total = 0;
    for model in layouts() {
        let name = model.name;
        let checker = model
            .checker()
            .threads(2)
            .target_state_count(states)
            .spawn_bfs()
            .join();
        let explored = checker.unique_state_count();
        total += explored;
        report(format_args!(
            "model check ({name}): {explored} states, depth {}, {} transitions; reproduce: MODEL_STATES={states} cargo test --release -p tagloan-pool --test model",
            checker.max_depth(),
            checker.state_count(),
        ));
        for (property, path) in checker.discoveries() {
            // An `always` property discovered is a counterexample; a
            // `sometimes` one, an example.
            if ALWAYS.contains(&property) {
                panic!(
                    "model check ({name}): `{property}` fails; counterexample: {:?}",
                    path.into_actions()
                );
            }
            report(format_args!(
                "  reached: {property} (in {} actions)",
                path.into_actions().len()
            ));
        }
        for wanted in [
            "tag storage lent as data",
            "a page awaiting its tags",
            "a page migrated",
            "a lent block recalled",
        ] {
            assert!(
                checker.discovery(wanted).is_some(),
                "model check ({name}): the model never reached `{wanted}`: widen it"
            );
        }
    }
    report(format_args!("model check: {total} states in all"));
}

/// Teeth: with a bug injected (a test-only feature of the pool), the model
/// checker finds a counterexample to `property`, and prints it.
#[allow(dead_code)]
fn expect_counterexample(bug: &str, property: &'static str) {
    for model in layouts() {
        let name = model.name;
        let checker = model
            .checker()
            .threads(2)
            .target_state_count(600_000)
            .spawn_bfs()
            .join();
        if let Some(path) = checker.discovery(property) {
            let actions = path.into_actions();
            report(format_args!(
                "teeth: {bug} caught by the model checker ({name}, {} states): `{property}` fails after {} actions: {actions:?}",
                checker.unique_state_count(),
                actions.len()
            ));
            return;
        }
    }
    panic!("the model checker missed {bug}: no counterexample to `{property}`");
}

#[cfg(feature = "inject-skip-recall")]
#[test]
fn teeth_a_reservation_that_leaves_a_borrower_in_its_block_is_caught() {
    expect_counterexample("inject-skip-recall", "I1-I12 hold after every operation");
}

#[cfg(feature = "inject-quota-leak")]
#[test]
fn teeth_a_free_that_keeps_the_quota_is_caught() {
    expect_counterexample("inject-quota-leak", "I1-I12 hold after every operation");
}

#[cfg(feature = "inject-refusal-side-effect")]
#[test]
fn teeth_a_refusal_that_changes_the_pool_is_caught() {
    expect_counterexample(
        "inject-refusal-side-effect",
        "a refused request changes nothing (I12)",
    );
}

#[cfg(feature = "inject-forget-block-ref")]
#[test]
fn teeth_a_free_that_forgets_its_block_reference_is_caught() {
    expect_counterexample(
        "inject-forget-block-ref",
        "I1-I12 hold after every operation",
    );
}
