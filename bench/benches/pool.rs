//! The criterion suite (`make bench`): the rows of `tagloan bench` that are
//! times, each beside its baseline in the same group, so criterion's
//! reports put them side by side. Counts (lending, bookkeeping) are not
//! here: `tagloan bench` prints them, and the CLI test asserts them.

use buddy_system_allocator::FrameAllocator;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use tagloan_criterion::rig::*;
use tagloan_pool::{AllocRequest, Config, Pool};

/// Order-0 alloc+free, the pool against `buddy_system_allocator` over the
/// same 128 MiB of frames, on an empty and a warm pool.
fn fast_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("order-0 untagged alloc+free");
    for warm in [false, true] {
        let name = if warm { "warm" } else { "empty" };
        let layout = layout(32_768, 1);
        let clients = one_client(16);
        let mut tables = Tables::new(&layout, &clients, &Config::default());
        let mut pool = tables.pool(layout, &clients, Config::default());
        let mut buddy = FrameAllocator::<10>::new();
        buddy.add_frame(0x80000, 0x80000 + 32_768);
        if warm {
            pool.alloc(&mut NullMachine, 0, request(1, false)).unwrap();
            buddy.alloc(1).unwrap();
        }
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

criterion_group!(benches, fast_path, tagged_pair, recall);
criterion_main!(benches);
