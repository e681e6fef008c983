//! The criterion suite (`make bench`): the rows of `tagloan bench` that are
//! times, each beside its baseline in the same group, so criterion's
//! reports put them side by side, and the operations at each of the three
//! platform sizes. Counts (lending, bookkeeping) are not here: `tagloan
//! bench` prints them, and the CLI test asserts them.
//!
//! Operations that change the pool run as a pair with their inverse where
//! one exists (a reservation with the free that releases the block), so
//! the pool returns to its state and nothing needs copying between
//! iterations; `tagloan bench` times them alone, from frozen states.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use tagloan_criterion::rig::*;
use tagloan_pool::{AllocRequest, Config, Pool};

/// Order-0 alloc+free, the pool against `buddy_system_allocator` over the
/// same 128 MiB of frames: on an empty pool, a warm one (one other page
/// held), a half-full fragmented one (every other frame held) and a full
/// one (every data frame but one held), as `tagloan bench`'s rows.
fn fast_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("order-0 untagged alloc+free");
    for fill in Fill::ALL {
        let name = match fill {
            Fill::Empty => "empty",
            Fill::Warm => "warm",
            Fill::Fragmented => "fragmented",
            Fill::Full => "full",
        };
        let data = 32_768u64;
        let layout = layout(data, 1);
        let clients = one_client(data as u32 + 8);
        let mut tables = Tables::new(&layout, &clients, &Config::default());
        let mut pool = tables.pool(layout, &clients, Config::default());
        let mut buddy = Baseline::new();
        fill_pool_and_baseline(&mut pool, &mut buddy, fill, data);
        group.bench_function(BenchmarkId::new("pool", name), |b| {
            b.iter(|| {
                pool.alloc(&mut NullMachine, 0, request(0, false)).unwrap();
                pool.free(&mut NullMachine, 0, WINDOW).unwrap();
            })
        });
        group.bench_function(BenchmarkId::new("buddy_system_allocator", name), |b| {
            b.iter(|| {
                let frame = buddy.alloc(1).unwrap();
                buddy.dealloc(std::hint::black_box(frame), 1);
            })
        });
    }
    group.finish();
}

/// A tagged pair with the block reserved, against the untagged pair.
fn tagged_pair(c: &mut Criterion) {
    let mut group = c.benchmark_group("order-0 alloc+free, block reserved");
    for tagged in [false, true] {
        let layout = layout(32_768, 1);
        let clients = one_client(16);
        let mut tables = Tables::new(&layout, &clients, &Config::default());
        let mut pool = tables.pool(layout, &clients, Config::default());
        pool.alloc(&mut NullMachine, 0, request(1, tagged)).unwrap();
        let name = if tagged { "tagged" } else { "untagged" };
        group.bench_function(name, |b| {
            b.iter(|| {
                pool.alloc(&mut NullMachine, 0, request(0, tagged)).unwrap();
                pool.free(&mut NullMachine, 0, WINDOW).unwrap();
            })
        });
    }
    group.finish();
}

/// A tagged alloc that recalls a fully lent block of 1, 8 and 32 frames,
/// with real page copies, beside `memcpy` of that many 4 KiB pages.
fn recall(c: &mut Criterion) {
    let mut group = c.benchmark_group("recall of a lent block");
    for block in [1u64, 8, 32] {
        let data = 32_768u64;
        let pages = (data + data / 32 + 1) as u32;
        let frozen = Frozen::prepare(
            layout(data, block),
            &one_client(pages),
            Config::default(),
            |pool| {
                let mut n = 0;
                while pool
                    .alloc(
                        &mut NullMachine,
                        0,
                        AllocRequest {
                            order: 9,
                            ..request(n, false)
                        },
                    )
                    .is_ok()
                {
                    n += 512;
                }
                pool.free(&mut NullMachine, 0, WINDOW).unwrap();
            },
        );
        let vaddr_page = data + data / 32;
        let mut machine = CopyMachine::new();
        group.bench_function(BenchmarkId::new("tagged alloc", block), |b| {
            b.iter_batched_ref(
                || frozen.tables(),
                |tables| {
                    let mut pool: Pool<'_> = frozen.resume(tables);
                    pool.alloc(&mut machine, 0, request(vaddr_page, true))
                        .unwrap();
                },
                BatchSize::LargeInput,
            )
        });
        let source = vec![0x5au8; 4096 * block as usize];
        let mut destination = vec![0u8; 4096 * block as usize];
        group.bench_function(BenchmarkId::new("memcpy 4 KiB x pages", block), |b| {
            b.iter(|| destination.copy_from_slice(std::hint::black_box(&source)))
        });
    }
    group.finish();
}

/// The time of `iterations` runs of `op` on `pool`, each after an untimed
/// `setup` (criterion's batched setup cannot share the pool with `op`).
fn timed_after_setup(
    iterations: u64,
    pool: &mut Pool<'_>,
    mut setup: impl FnMut(&mut Pool<'_>),
    mut op: impl FnMut(&mut Pool<'_>),
) -> std::time::Duration {
    let mut total = std::time::Duration::ZERO;
    for _ in 0..iterations {
        setup(pool);
        let start = std::time::Instant::now();
        op(pool);
        total += start.elapsed();
    }
    total
}

/// The operations at 128 MiB, 2 GiB and 16 GiB of data (1-frame blocks):
/// what the scale rows of `tagloan bench` compare.
fn scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("scale");
    for (data, size) in SCALES {
        let layout = layout(data, 1);
        let clients = one_client(16_384);
        let config = Config::default();
        let mut tables = Tables::new(&layout, &clients, &config);
        let mut pool = tables.pool(layout, &clients, config);
        let pair = |pool: &mut Pool<'_>, page: u64, tagged: bool| {
            pool.alloc(&mut NullMachine, 0, request(page, tagged))
                .unwrap();
            pool.free(&mut NullMachine, 0, WINDOW + page * PAGE)
                .unwrap();
        };
        // Page 1 holds a page of the pair's kind: the warm pair; a tagged
        // one keeps its block reserved for the tagged pair.
        for tagged in [false, true] {
            pool.alloc(&mut NullMachine, 0, request(1, tagged)).unwrap();
            let name = if tagged {
                "tagged alloc+free, block reserved"
            } else {
                "untagged alloc+free, warm"
            };
            group.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter(|| pair(&mut pool, 0, tagged))
            });
            pool.free(&mut NullMachine, 0, WINDOW + PAGE).unwrap();
        }
        // With no block reserved, a tagged alloc reserves a free block and
        // its free releases it (checked once here, outside the timing).
        assert_eq!(pool.stats().blocks_reserved, 0);
        pool.alloc(&mut NullMachine, 0, request(0, true)).unwrap();
        assert_eq!(pool.stats().blocks_reserved, 1);
        pool.free(&mut NullMachine, 0, WINDOW).unwrap();
        assert_eq!(pool.stats().blocks_reserved, 0);
        group.bench_function(
            BenchmarkId::new("tagged alloc reserving a free block, +free", size),
            |b| b.iter(|| pair(&mut pool, 0, true)),
        );
        // The same for a held page whose tagging is enabled: the resolve
        // of its fault reserves the block, disabling releases it.
        pool.alloc(&mut NullMachine, 0, request(2, false)).unwrap();
        let vaddr = WINDOW + 2 * PAGE;
        pool.enable_tagging(&mut NullMachine, 0, vaddr, 1).unwrap();
        pool.resolve_fault(&mut NullMachine, 0, vaddr).unwrap();
        assert_eq!(pool.stats().blocks_reserved, 1);
        pool.disable_tagging(&mut NullMachine, 0, vaddr, 1).unwrap();
        assert_eq!(pool.stats().blocks_reserved, 0);
        group.bench_function(
            BenchmarkId::new("enable_tagging + resolve_fault + disable_tagging", size),
            |b| {
                b.iter(|| {
                    pool.enable_tagging(&mut NullMachine, 0, vaddr, 1).unwrap();
                    pool.resolve_fault(&mut NullMachine, 0, vaddr).unwrap();
                    pool.disable_tagging(&mut NullMachine, 0, vaddr, 1).unwrap();
                })
            },
        );
        pool.free(&mut NullMachine, 0, WINDOW + 2 * PAGE).unwrap();
        group.bench_function(BenchmarkId::new("reclaim of 10,000 frames", size), |b| {
            b.iter_custom(|iterations| {
                timed_after_setup(
                    iterations,
                    &mut pool,
                    |pool| {
                        for n in 2..10_002 {
                            pool.alloc(&mut NullMachine, 0, request(n, false)).unwrap();
                        }
                    },
                    |pool| {
                        pool.reclaim_client(&mut NullMachine, 0).unwrap();
                    },
                )
            })
        });
    }
    group.finish();
}

/// Reclaim of a client holding 10 frames in a window of 2^22 pages,
/// beside the walk of that window's page map it replaced.
fn sparse_reclaim(c: &mut Criterion) {
    let mut group = c.benchmark_group("reclaim, 10 frames in a 4,194,304-page window");
    let window: u32 = 1 << 22;
    let stride = u64::from(window) / 10;
    let layout = layout(32_768, 1);
    let clients = one_client(window);
    let mut tables = Tables::new(&layout, &clients, &Config::default());
    let mut pool = tables.pool(layout, &clients, Config::default());
    group.bench_function("reclaim", |b| {
        b.iter_custom(|iterations| {
            timed_after_setup(
                iterations,
                &mut pool,
                |pool| {
                    for n in 0..10 {
                        pool.alloc(&mut NullMachine, 0, request(n * stride, false))
                            .unwrap();
                    }
                },
                |pool| {
                    pool.reclaim_client(&mut NullMachine, 0).unwrap();
                },
            )
        })
    });
    let mut page_map = vec![u32::MAX; window as usize];
    for n in 0..10 {
        page_map[(n * stride) as usize] = n as u32;
    }
    group.bench_function("walk of the page map", |b| {
        b.iter(|| {
            std::hint::black_box(&page_map)
                .iter()
                .filter(|&&frame| frame != u32::MAX)
                .count()
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    fast_path,
    tagged_pair,
    recall,
    scale,
    sparse_reclaim
);
criterion_main!(benches);
