//! Property suite: random operation sequences across clients, with
//! `check_invariants()` and a shadow model of every client page's data and
//! tags checked after every step (I1–I12).
//!
//! `TAGLOAN_CASES` sets the number of sequences (default 10,000) and
//! `TAGLOAN_SEED` the seed (default fixed, so CI is reproducible; any
//! failure prints the shrunk sequence and the seed replays it).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};
use tagloan_mte::{granule_tag, uniform_tags, with_pointer_tag, FrameTags, Tag, ZERO_TAGS};
use tagloan_pool::{
    Access, AllocRequest, ClientSpec, Config, Layout, LendPolicy, PageState, Pool, PoolError,
    RegionSpec, TagPlacement, TagSpec,
};
use tagloan_ram::{AccessFault, SimMachine};

const CLIENTS: u8 = 3;
const WINDOW_PAGES: u32 = 128;
/// Pages between slots: room for the largest allocation, order 3.
const SLOT_PAGES: u64 = 8;
const SLOTS: u8 = 16;
/// Where the data stamps are written in a page: first, middle and last granule.
const STAMP_OFFSETS: [usize; 3] = [0, 2048, 4088];

static STEPS: AtomicU64 = AtomicU64::new(0);
static FAILED_REQUESTS: AtomicU64 = AtomicU64::new(0);
static RECALLS: AtomicU64 = AtomicU64::new(0);
static PARKED: AtomicU64 = AtomicU64::new(0);
static LENT_STEPS: AtomicU64 = AtomicU64::new(0);
static MIGRATIONS: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        client: u8,
        slot: u8,
        order: u8,
        tagged: bool,
        pinned: bool,
        contiguous: bool,
    },
    Free {
        client: u8,
        slot: u8,
    },
    Write {
        client: u8,
        slot: u8,
        page: u8,
        value: u8,
    },
    Retag {
        client: u8,
        slot: u8,
        page: u8,
        tag: u8,
    },
    Enable {
        client: u8,
        slot: u8,
        page: u8,
        pages: u8,
    },
    Disable {
        client: u8,
        slot: u8,
        page: u8,
        pages: u8,
    },
    Touch {
        client: u8,
        slot: u8,
        page: u8,
    },
    Pin {
        client: u8,
        slot: u8,
        page: u8,
    },
    Unpin {
        client: u8,
        slot: u8,
        page: u8,
    },
    Reclaim {
        client: u8,
    },
    /// Free a slot and allocate it again at once, tagged or not at even
    /// odds (contiguous at times): churn at full memory, which is what makes
    /// the pool lend, recall, migrate and park tags. A third of the weight:
    /// before it, recalls came once in 10,000 steps.
    Churn {
        client: u8,
        slot: u8,
        order: u8,
        tagged: bool,
        contiguous: bool,
    },
    Rogue {
        client: u8,
        slot: u8,
        kind: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let c = 0..CLIENTS;
    let s = 0..SLOTS;
    let p = 0u8..8;
    prop_oneof![
        40 => (c.clone(), s.clone(), 0u8..=3, prop::bool::weighted(0.3), prop::bool::weighted(0.15), prop::bool::weighted(0.15))
            .prop_map(|(client, slot, order, tagged, pinned, contiguous)| Op::Alloc { client, slot, order, tagged, pinned, contiguous }),
        3 => (c.clone(), s.clone()).prop_map(|(client, slot)| Op::Free { client, slot }),
        14 => (c.clone(), s.clone(), p.clone(), any::<u8>()).prop_map(|(client, slot, page, value)| Op::Write { client, slot, page, value }),
        5 => (c.clone(), s.clone(), p.clone(), 0u8..16).prop_map(|(client, slot, page, tag)| Op::Retag { client, slot, page, tag }),
        8 => (c.clone(), s.clone(), p.clone(), 1u8..=8).prop_map(|(client, slot, page, pages)| Op::Enable { client, slot, page, pages }),
        4 => (c.clone(), s.clone(), p.clone(), 1u8..=8).prop_map(|(client, slot, page, pages)| Op::Disable { client, slot, page, pages }),
        10 => (c.clone(), s.clone(), p.clone()).prop_map(|(client, slot, page)| Op::Touch { client, slot, page }),
        4 => (c.clone(), s.clone(), p.clone()).prop_map(|(client, slot, page)| Op::Pin { client, slot, page }),
        3 => (c.clone(), s.clone(), p.clone()).prop_map(|(client, slot, page)| Op::Unpin { client, slot, page }),
        1 => c.clone().prop_map(|client| Op::Reclaim { client }),
        40 => (c.clone(), s.clone(), 0u8..=1, prop::bool::weighted(0.5), prop::bool::weighted(0.35))
            .prop_map(|(client, slot, order, tagged, contiguous)| Op::Churn { client, slot, order, tagged, contiguous }),
        5 => (c, s, 0u8..7).prop_map(|(client, slot, kind)| Op::Rogue { client, slot, kind }),
    ]
}

#[derive(Clone, Copy, Debug)]
struct Setup {
    lend: LendPolicy,
    placement: TagPlacement,
    deferred_slots: u16,
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        // Balanced lends before the data pool is exhausted, so it reaches
        // lending and recall more often than LastResort; both stay covered.
        prop::bool::weighted(0.75),
        prop::bool::weighted(0.25),
        // Deferred-tag slots: none (evacuation must refuse a range holding
        // a tagged page) to enough to park several tag sets.
        0u16..=6,
    )
        .prop_map(|(balanced, any_page, deferred_slots)| Setup {
            lend: if balanced {
                LendPolicy::Balanced
            } else {
                LendPolicy::LastResort
            },
            placement: if any_page {
                TagPlacement::AnyPage
            } else {
                TagPlacement::Affinity
            },
            deferred_slots,
        })
}

/// Three regions: block size 1, block size 3 (a 96-frame group, not a
/// power of two), and memory without tag storage.
fn layout() -> Layout {
    Layout::new(&[
        RegionSpec {
            data_base: 0x1000,
            data_frames: 64,
            tags: Some(TagSpec {
                base: 0x2000,
                frames: 2,
                block_frames: 1,
            }),
        },
        RegionSpec {
            data_base: 0x3000,
            data_frames: 96,
            tags: Some(TagSpec {
                base: 0x4000,
                frames: 3,
                block_frames: 3,
            }),
        },
        RegionSpec {
            data_base: 0x5000,
            data_frames: 8,
            tags: None,
        },
    ])
    .unwrap()
}

#[derive(Clone, Copy, Debug)]
struct ShadowPage {
    stamp: u64,
    tags: FrameTags,
}

fn vaddr(client: u8, slot: u8, page: u8) -> u64 {
    window(client) + (u64::from(slot) * SLOT_PAGES + u64::from(page)) * PAGE
}

struct World<'a> {
    pool: Pool<'a>,
    machine: SimMachine,
    shadow: BTreeMap<(u8, u64), ShadowPage>,
    stamp: u64,
}

impl World<'_> {
    /// Runs a request; a refusal must leave pool and machine unchanged (I12).
    fn attempt<T>(
        &mut self,
        f: impl FnOnce(&mut Pool<'_>, &mut SimMachine) -> Result<T, PoolError>,
    ) -> Option<T> {
        let before = (self.pool.fingerprint(), machine_print(&self.machine));
        match f(&mut self.pool, &mut self.machine) {
            Ok(value) => Some(value),
            Err(_) => {
                let after = (self.pool.fingerprint(), machine_print(&self.machine));
                assert_eq!(
                    before, after,
                    "I12: a refused request changed the pool or the machine"
                );
                FAILED_REQUESTS.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn state(&mut self, client: u8, address: u64) -> Option<PageState> {
        self.pool.query(client, address).ok().map(|info| info.state)
    }

    fn pointer(&self, client: u8, address: u64, offset: usize) -> u64 {
        let tags = self
            .shadow
            .get(&(client, address / PAGE))
            .map_or(ZERO_TAGS, |p| p.tags);
        with_pointer_tag(address + offset as u64, granule_tag(&tags, offset / 16))
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Alloc {
                client,
                slot,
                order,
                tagged,
                pinned,
                contiguous,
            } => {
                let address = vaddr(client, slot, 0);
                let request = AllocRequest {
                    vaddr: address,
                    order,
                    tagged,
                    pinned,
                    contiguous,
                };
                if let Some(a) = self.attempt(|p, m| p.alloc(m, client, request)) {
                    for i in 0..u64::from(a.pages) {
                        let pfn = a.first_frame + i;
                        assert!(
                            self.machine.ram.is_zero(pfn),
                            "I10: frame {pfn:#x} handed out dirty"
                        );
                        if tagged {
                            let mut tags = ZERO_TAGS;
                            self.machine.read_frame_tags(pfn, &mut tags);
                            assert_eq!(
                                tags, ZERO_TAGS,
                                "I10: tagged frame handed out with stale tags"
                            );
                        }
                        self.shadow.insert(
                            (client, address / PAGE + i),
                            ShadowPage {
                                stamp: 0,
                                tags: ZERO_TAGS,
                            },
                        );
                    }
                }
            }
            Op::Free { client, slot } => {
                let address = vaddr(client, slot, 0);
                if let Some(pages) = self.attempt(|p, m| p.free(m, client, address)) {
                    for i in 0..u64::from(pages) {
                        self.shadow.remove(&(client, address / PAGE + i));
                    }
                }
            }
            Op::Write {
                client,
                slot,
                page,
                value,
            } => {
                let address = vaddr(client, slot, page);
                if !self.shadow.contains_key(&(client, address / PAGE)) {
                    return;
                }
                self.stamp += 1;
                let stamp = (u64::from(value) << 56) | self.stamp;
                let mut stored = true;
                for offset in STAMP_OFFSETS {
                    let pointer = self.pointer(client, address, offset);
                    match self.machine.store(client, pointer, &stamp.to_le_bytes()) {
                        Ok(()) => {}
                        Err(AccessFault::Vm { .. }) => {
                            assert_eq!(self.state(client, address), Some(PageState::MetadataNone));
                            stored = false;
                            break;
                        }
                        Err(fault) => {
                            panic!("I9: a store with the page's own tags faulted: {fault:?}")
                        }
                    }
                }
                if stored {
                    self.shadow
                        .get_mut(&(client, address / PAGE))
                        .unwrap()
                        .stamp = stamp;
                }
            }
            Op::Retag {
                client,
                slot,
                page,
                tag,
            } => {
                let address = vaddr(client, slot, page);
                if self.state(client, address) == Some(PageState::Tagged) {
                    let tags = uniform_tags(Tag::from_low_bits(tag));
                    self.machine
                        .store_page_tags(client, address, &tags)
                        .unwrap();
                    self.shadow.get_mut(&(client, address / PAGE)).unwrap().tags = tags;
                }
            }
            Op::Enable {
                client,
                slot,
                page,
                pages,
            } => {
                let address = vaddr(client, slot, page);
                let before: Vec<_> = (0..u64::from(pages))
                    .map(|i| self.state(client, address + i * PAGE))
                    .collect();
                if self
                    .attempt(|p, m| p.enable_tagging(m, client, address, u32::from(pages)))
                    .is_some()
                {
                    for (i, state) in before.into_iter().enumerate() {
                        if state == Some(PageState::Untagged) {
                            // Tags come up zero on the first access.
                            self.shadow
                                .get_mut(&(client, address / PAGE + i as u64))
                                .unwrap()
                                .tags = ZERO_TAGS;
                        }
                    }
                }
            }
            Op::Disable {
                client,
                slot,
                page,
                pages,
            } => {
                let address = vaddr(client, slot, page);
                if self
                    .attempt(|p, m| p.disable_tagging(m, client, address, u32::from(pages)))
                    .is_some()
                {
                    for i in 0..u64::from(pages) {
                        self.shadow
                            .get_mut(&(client, address / PAGE + i))
                            .unwrap()
                            .tags = ZERO_TAGS;
                    }
                }
            }
            Op::Touch { client, slot, page } => {
                let address = vaddr(client, slot, page);
                let pointer = self.pointer(client, address, 0);
                let mut out = [0u8; 8];
                match self.machine.load(client, pointer, &mut out) {
                    Ok(()) => {
                        let expected = self.shadow[&(client, address / PAGE)].stamp;
                        assert_eq!(
                            u64::from_le_bytes(out),
                            expected,
                            "I9: data changed under the client"
                        );
                    }
                    Err(AccessFault::Vm { .. }) => {
                        // The fault handler's path: resolve for the client.
                        if self.state(client, address) == Some(PageState::MetadataNone) {
                            self.attempt(|p, m| p.resolve_fault(m, client, address));
                        }
                    }
                    Err(fault) => panic!("I9: a load with the page's own tags faulted: {fault:?}"),
                }
            }
            Op::Pin { client, slot, page } => {
                self.attempt(|p, m| p.pin(m, client, vaddr(client, slot, page)));
            }
            Op::Unpin { client, slot, page } => {
                self.attempt(|p, _| p.unpin(client, vaddr(client, slot, page)));
            }
            Op::Reclaim { client } => {
                if self.attempt(|p, m| p.reclaim_client(m, client)).is_some() {
                    self.shadow.retain(|&(c, _), _| c != client);
                }
            }
            Op::Churn {
                client,
                slot,
                order,
                tagged,
                contiguous,
            } => {
                // The new allocation has the old one's size, so the pool
                // stays as full as it was.
                let first = vaddr(client, slot, 0) / PAGE;
                let held = (0..SLOT_PAGES)
                    .take_while(|i| self.shadow.contains_key(&(client, first + i)))
                    .count() as u32;
                let order = if held == 0 {
                    order
                } else {
                    self.step(&Op::Free { client, slot });
                    held.ilog2() as u8
                };
                self.step(&Op::Alloc {
                    client,
                    slot,
                    order,
                    tagged,
                    pinned: false,
                    contiguous,
                });
            }
            Op::Rogue { client, slot, kind } => {
                let other = (client + 1) % CLIENTS;
                let result = match kind {
                    0 => self.attempt(|p, m| p.free(m, client, vaddr(other, slot, 0)).map(|_| ())),
                    1 => self.attempt(|p, m| {
                        p.alloc(m, client, untagged(vaddr(client, slot, 0), 10))
                            .map(|_| ())
                    }),
                    2 => self.attempt(|p, m| {
                        p.alloc(m, client, untagged(vaddr(client, slot, 0) + 8, 0))
                            .map(|_| ())
                    }),
                    3 => self.attempt(|p, m| {
                        p.alloc(m, 7, untagged(vaddr(client, slot, 0), 0))
                            .map(|_| ())
                    }),
                    4 => self.attempt(|p, m| p.pin(m, client, 0x1000)),
                    5 => {
                        self.attempt(|p, m| p.enable_tagging(m, client, vaddr(client, slot, 0), 0))
                    }
                    _ => self.attempt(|p, m| {
                        p.alloc(
                            m,
                            client,
                            untagged(window(client) + (u64::from(WINDOW_PAGES) - 2) * PAGE, 2),
                        )
                        .map(|_| ())
                    }),
                };
                assert!(result.is_none(), "rogue request {kind} was accepted");
            }
        }
    }

    /// The shadow check: every page a client holds is mapped as the pool
    /// says (I6), and its data and tags are what the client last wrote (I9).
    fn check_shadow(&mut self) {
        let pages: Vec<_> = self.shadow.iter().map(|(&k, &v)| (k, v)).collect();
        for ((client, vpage), expected) in pages {
            let address = vpage * PAGE;
            let info = self
                .pool
                .query(client, address)
                .unwrap_or_else(|e| panic!("page {address:#x} of client {client} lost: {e}"));
            let access = match info.state {
                PageState::Untagged => Access::Normal,
                PageState::Tagged => Access::Tagged,
                PageState::MetadataNone => Access::NoAccess,
            };
            assert_eq!(
                self.machine.mapping(client, address),
                Some((info.frame, access)),
                "I6: mapping disagrees with the pool"
            );
            for offset in STAMP_OFFSETS {
                let mut bytes = [0u8; 8];
                self.machine.ram.read(info.frame, offset, &mut bytes);
                assert_eq!(
                    u64::from_le_bytes(bytes),
                    expected.stamp,
                    "I9: data of {address:#x} changed"
                );
            }
            if info.state == PageState::Tagged {
                let mut tags = ZERO_TAGS;
                self.machine.read_frame_tags(info.frame, &mut tags);
                assert_eq!(tags, expected.tags, "I9: tags of {address:#x} changed");
            }
        }
        assert_eq!(
            self.machine.mapping_count(),
            self.shadow.len(),
            "a mapping exists that no client holds"
        );
        let held: u32 = (0..CLIENTS)
            .map(|c| self.pool.client(c).unwrap().frames_used())
            .sum();
        assert_eq!(held as usize, self.shadow.len());
    }
}

fn run_sequence(setup: Setup, ops: &[Op]) {
    let layout = layout();
    let specs: Vec<ClientSpec> = clients(CLIENTS, WINDOW_PAGES, 96);
    let config = Config {
        lend: setup.lend,
        placement: setup.placement,
        deferred_slots: setup.deferred_slots,
    };
    let mut tables = Tables::new(&layout, &specs, &config);
    let pool = Pool::new(layout, &specs, config, tables.storage()).unwrap();
    let mut world = World {
        pool,
        machine: SimMachine::new(layout.tag_regions()),
        shadow: BTreeMap::new(),
        stamp: 0,
    };
    // As the memory server does at start-up: a tagged frame of its own (its
    // tag probe), which holds its tag block for ever, so every sequence runs
    // with a permanent hold in the pool.
    world
        .pool
        .take_server_frame(&mut world.machine, true)
        .expect("a fresh pool has a frame for the server");
    if let Err(violation) = world.pool.check_invariants() {
        panic!("after the server's frame: {violation}");
    }
    for op in ops {
        world.step(op);
        if let Err(violation) = world.pool.check_invariants() {
            panic!("after {op:?}: {violation}");
        }
        world.check_shadow();
        STEPS.fetch_add(1, Ordering::Relaxed);
        if world.pool.stats().tag_frames_lent > 0 {
            LENT_STEPS.fetch_add(1, Ordering::Relaxed);
        }
    }
    let stats = world.pool.stats();
    RECALLS.fetch_add(stats.recalls, Ordering::Relaxed);
    PARKED.fetch_add(stats.deferred_parked, Ordering::Relaxed);
    MIGRATIONS.fetch_add(stats.migrations, Ordering::Relaxed);
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => {
            let text = text.trim();
            let parsed = match text.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => text.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("{name}={text} is not a number"))
        }
        Err(_) => default,
    }
}

#[test]
#[cfg_attr(
    feature = "injected",
    ignore = "an injected bug is on: the teeth tests run instead"
)]
fn random_sequences_keep_every_invariant_and_every_byte() {
    let cases = env_number("TAGLOAN_CASES", 10_000) as u32;
    let seed = env_number("TAGLOAN_SEED", 0x7a61_6c6f_616e);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = RunnerConfig {
        cases,
        failure_persistence: None,
        ..RunnerConfig::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    // Each sequence starts with the data pool nearly full: clients 2, 1 and
    // 0 hold 48-64, 32-64 and 0-40 untagged pages of its 168 frames (the
    // quotas, 96 each, allow more than the pool). Tag storage is only lent
    // once the data pool runs short, and only recalled when a tagged request
    // follows, so a pool that starts half empty rarely reaches either.
    let strategy = (
        setup(),
        6u8..=8,
        4u8..=8,
        0u8..=5,
        prop::collection::vec(op(), 200..=260),
    );
    let result = runner.run(
        &strategy,
        |(setup, prefill_2, prefill_1, prefill_0, random)| {
            let bulk = |client: u8, slots: u8| {
                (0..slots).map(move |slot| Op::Alloc {
                    client,
                    slot: 15 - slot,
                    order: 3,
                    tagged: false,
                    pinned: false,
                    contiguous: false,
                })
            };
            let bulk = bulk(2, prefill_2)
                .chain(bulk(1, prefill_1))
                .chain(bulk(0, prefill_0));
            let ops: Vec<Op> = bulk.chain(random).collect();
            run_sequence(setup, &ops);
            Ok(())
        },
    );
    if let Err(error) = result {
        panic!("seed {seed:#x}: {error}");
    }
    report(&format!(
        "pool properties: {cases} sequences, {} steps checked (invariants and shadow after each), {} refused requests left no trace, {} steps with tag storage lent, {} migrations, {} recalls, {} tag sets parked; seed {seed:#x}",
        STEPS.load(Ordering::Relaxed),
        FAILED_REQUESTS.load(Ordering::Relaxed),
        LENT_STEPS.load(Ordering::Relaxed),
        MIGRATIONS.load(Ordering::Relaxed),
        RECALLS.load(Ordering::Relaxed),
        PARKED.load(Ordering::Relaxed),
    ));
}

/// Runs the property suite's sequences (from a fixed seed) until one fails,
/// as an injected bug must make one do; returns the failure's message, the
/// sequences run and the steps checked.
#[cfg(feature = "injected")]
fn first_failure(what: &str) -> (String, u64, u64) {
    let mut runner = TestRunner::new_with_rng(
        RunnerConfig {
            cases: 10_000,
            failure_persistence: None,
            max_shrink_iters: 0,
            ..RunnerConfig::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let sequences = AtomicU64::new(0);
    let strategy = (setup(), prop::collection::vec(op(), 200..=260));
    let result = runner.run(&strategy, |(setup, ops)| {
        sequences.fetch_add(1, Ordering::Relaxed);
        run_sequence(setup, &ops);
        Ok(())
    });
    let error = result.expect_err(what);
    (
        error.to_string(),
        sequences.load(Ordering::Relaxed),
        STEPS.load(Ordering::Relaxed),
    )
}

/// Teeth: with tagged frames handed out with their old tags (a test-only
/// feature of the pool), the property suite fails, and says after how many
/// sequences and steps.
#[cfg(feature = "inject-stale-tags")]
#[test]
fn teeth_a_tagged_frame_handed_out_with_stale_tags_is_caught() {
    let (message, sequences, steps) = first_failure("the property suite must notice stale tags");
    assert!(message.contains("I10"), "{message}");
    report(&format!(
        "teeth: inject-stale-tags caught by the property suite after {sequences} sequences ({steps} steps): I10, a tagged frame handed out with stale tags"
    ));
}

/// Teeth: with the pool's tag arithmetic off by one block (every table
/// consistent with itself, so no invariant sees it), tags land in lent tag
/// storage or data in reserved: the machine keeps tags physically in its
/// RAM's tag storage, so the shadow of data and tags, or its cache model,
/// notices.
#[cfg(feature = "inject-tag-block-offset")]
#[test]
fn teeth_tag_arithmetic_off_by_a_block_is_caught() {
    let (message, sequences, steps) =
        first_failure("the property suite must notice tags in the wrong block");
    let caught_by = if message.contains("tag storage clean") {
        "the machine's cache model (tags and data in one tag frame)"
    } else if message.contains("I9") || message.contains("I10") {
        "the data and tag shadow"
    } else {
        panic!("an unexpected failure: {message}")
    };
    report(&format!(
        "teeth: inject-tag-block-offset caught by {caught_by} after {sequences} sequences ({steps} steps)"
    ));
}

/// Teeth: with the tag storage cleans left out, the machine's cache model
/// (tags stored over a tag frame that may hold dirty data lines, or data
/// over tags whose lines may be dirty) fails the suite.
#[cfg(feature = "inject-skip-tag-storage-clean")]
#[test]
fn teeth_a_missing_tag_storage_clean_is_caught() {
    let (message, sequences, steps) =
        first_failure("the cache model must notice a missing tag storage clean");
    assert!(message.contains("tag storage clean"), "{message}");
    report(&format!(
        "teeth: inject-skip-tag-storage-clean caught by the machine's cache model after {sequences} sequences ({steps} steps)"
    ));
}
