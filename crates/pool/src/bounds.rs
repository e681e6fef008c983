//! The documented worst-case work of every operation (DESIGN §9), in the
//! units of [`Work`]: what `tests/bounds.rs` holds each operation to.
//!
//! Every bound is a function of the layout's block and group sizes, the
//! request, the deferred store and (for reclaim) what the client holds and a
//! word per 4,096 pages of its window; none grows with the size of the
//! platform. The terms:
//!
//! - `B`, the largest tag block (frames), and `G = 32 * B`, its group;
//! - `T(order)`, the tag blocks `2^order` data frames can touch, at most
//!   `ceil(2^order / G_min) + 1` with `G_min` the smallest group;
//! - a **split** (taking a free block down to the order asked for) reads
//!   at most `2 * MAX_ORDER * T(MAX_ORDER)` blocks to choose the sub-block
//!   whose tag blocks suit the request (affinity inside a split block) and
//!   `MAX_ORDER * T(MAX_ORDER)` to file the halves, after at most
//!   `MAX_ORDER + 1` entry reads to find the block containing a frame;
//! - a **refile** of one group, done only when its block's class changes
//!   (reserved, released, first frame lent, last frame returned): one read
//!   of the block's state, the group's `G` entries, the two free blocks that
//!   straddle its ends, and the tag blocks every free block found touches;
//! - a **release** of one page: filing its frame, a refile if it was lent
//!   tag storage, and, for a tagged page whose block it held last, filing
//!   the block's `B` frames and a refile;
//! - a **reservation** of one block: two reads of its `B` tag frames, the
//!   free ones taken (a split each) and the borrowers moved (a split and a
//!   refile each), and a refile; and a tag storage clean of each of its
//!   `B` tag frames;
//! - a tag storage clean for each frame that stops being tagged.

use crate::frame::MAX_ORDER;
use crate::layout::Layout;
use crate::ops::EVACUATION_CANDIDATES;
use crate::placement::{LENT_CANDIDATES, SWAP_BLOCKS, SWAP_FRAMES};
use crate::{Config, Work};

/// Entry reads to find the free block containing a frame.
const CONTAINING: u64 = MAX_ORDER as u64 + 1;

/// The bounds of one layout and configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// The largest tag block, in frames (`B`).
    pub block: u64,
    /// The largest group, in data frames (`G`).
    pub group: u64,
    /// The smallest group, in data frames.
    pub group_min: u64,
    /// Slots of the deferred-tag store.
    pub deferred: u64,
}

impl Bounds {
    /// The bounds of a pool over `layout` with `config`.
    pub fn new(layout: &Layout, config: &Config) -> Bounds {
        let tagged = (0..layout.region_count()).filter(|&r| layout.region(r).tag_frames > 0);
        let blocks = tagged.clone().map(|r| u64::from(layout.block_frames(r)));
        let block = blocks.clone().max().unwrap_or(0);
        Bounds {
            block,
            group: 32 * block,
            group_min: 32 * blocks.min().unwrap_or(0).max(1),
            deferred: u64::from(config.deferred_slots),
        }
    }

    /// Tag blocks `2^order` data frames can touch.
    pub fn touched(&self, order: u8) -> u64 {
        (1u64 << order).div_ceil(self.group_min) + 1
    }

    /// Choosing the sub-block (two halves classified per halving), finding
    /// the free block around it, and filing the halves split off.
    fn split(&self) -> u64 {
        2 * CONTAINING + 3 * u64::from(MAX_ORDER) * self.touched(MAX_ORDER)
    }

    fn file(&self) -> u64 {
        self.touched(MAX_ORDER)
    }

    fn refile(&self) -> u64 {
        let edges = 2 * (CONTAINING + self.touched(MAX_ORDER));
        let inner = (self.group + (1 << MAX_ORDER)).div_ceil(self.group_min) + 2 * self.group;
        1 + self.group + edges + inner
    }

    /// Entries a release of one page reads (the term reclaim pays per page).
    pub fn release(&self) -> u64 {
        self.file() + self.refile() + self.block * self.file() + self.refile()
    }

    fn reservation(&self) -> u64 {
        2 * self.block
            + self.block * self.split()
            + self.block * (self.split() + self.refile())
            + self.refile()
    }

    /// An untagged, movable allocation of `order` (it may borrow tag storage).
    pub fn alloc_untagged(&self, order: u8) -> Work {
        let lent_blocks = (1u64 << order).div_ceil(self.block.max(1)) + 1;
        Work {
            frames_scanned: self.split() + lent_blocks * self.refile(),
            splits: u64::from(MAX_ORDER),
            merges: 0,
            pages_copied: 0,
            pages_zeroed: 1 << order,
            tag_writes: 0,
            tag_cleans: 0,
        }
    }

    /// A pinned or contiguous allocation of `order`, which may evacuate an
    /// aligned range: every page of it may move, a tagged one parking its
    /// tags and releasing its block.
    pub fn alloc_evacuating(&self, order: u8) -> Work {
        let pages = 1u64 << order;
        let plan = u64::from(EVACUATION_CANDIDATES) * (pages + self.deferred);
        let take = pages * self.split();
        let movers = pages * (self.split() + self.deferred + self.release());
        Work {
            frames_scanned: plan + take + movers,
            splits: pages * 2 * u64::from(MAX_ORDER),
            merges: pages * (1 + self.block) * u64::from(MAX_ORDER),
            pages_copied: pages,
            pages_zeroed: pages,
            tag_writes: pages,
            // Each tagged mover stops being tagged on its old frame.
            tag_cleans: pages,
        }
    }

    /// A tagged allocation of `order`: a swap out of a reserved group, or a
    /// free frame whose touched blocks are reserved, each recalling its
    /// borrowers.
    pub fn alloc_tagged(&self, order: u8) -> Work {
        let blocks = self.touched(order);
        let search = u64::from(SWAP_BLOCKS + SWAP_FRAMES + LENT_CANDIDATES);
        Work {
            frames_scanned: search + self.split() + self.refile() + blocks * self.reservation(),
            splits: u64::from(MAX_ORDER) * (2 + blocks * 2 * self.block),
            merges: 0,
            pages_copied: 1 + blocks * self.block,
            pages_zeroed: 1 << order,
            tag_writes: 1 << order,
            tag_cleans: blocks * self.block,
        }
    }

    /// The free of an allocation of `order`.
    pub fn free(&self, order: u8) -> Work {
        let pages = 1u64 << order;
        Work {
            frames_scanned: pages * self.release(),
            splits: 0,
            merges: pages * (1 + self.block) * u64::from(MAX_ORDER),
            tag_cleans: pages,
            ..Work::default()
        }
    }

    /// enable_tagging of `pages` pages: a state change per page, no scan.
    pub fn enable_tagging(&self, _pages: u32) -> Work {
        Work::default()
    }

    /// disable_tagging of `pages` pages: each may release its block.
    pub fn disable_tagging(&self, pages: u32) -> Work {
        let pages = u64::from(pages);
        Work {
            frames_scanned: pages * (self.block * self.file() + self.refile()),
            merges: pages * self.block * u64::from(MAX_ORDER),
            tag_cleans: pages,
            ..Work::default()
        }
    }

    /// resolve_fault: reserve the page's block, or move the page out of tag
    /// storage (or untaggable memory) into a taggable frame first.
    pub fn resolve_fault(&self) -> Work {
        Work {
            frames_scanned: u64::from(LENT_CANDIDATES)
                + self.split()
                + self.reservation()
                + self.file()
                + self.refile(),
            splits: u64::from(MAX_ORDER) * (1 + 2 * self.block),
            merges: u64::from(MAX_ORDER),
            pages_copied: 1 + self.block,
            pages_zeroed: 0,
            tag_writes: 1,
            tag_cleans: self.block,
        }
    }

    /// pin: a page in tag storage moves to the data pool first.
    pub fn pin(&self) -> Work {
        Work {
            frames_scanned: self.split() + self.file() + self.refile(),
            splits: u64::from(MAX_ORDER),
            merges: u64::from(MAX_ORDER),
            pages_copied: 1,
            ..Work::default()
        }
    }

    /// unpin and query: a lookup, no scan.
    pub fn lookup(&self) -> Work {
        Work::default()
    }

    /// The reclaim of a client with a window of `window_pages` holding
    /// `held` frames: the window's summary words once, three bitmap words
    /// per frame held and three more for the search that finds nothing,
    /// and a release per frame held.
    pub fn reclaim(&self, window_pages: u32, held: u32) -> Work {
        let held = u64::from(held);
        let summary = u64::from(crate::mapped::summary_words(window_pages));
        Work {
            frames_scanned: summary + 3 * (held + 1) + held * self.release(),
            merges: held * (1 + self.block) * u64::from(MAX_ORDER),
            tag_cleans: held,
            ..Work::default()
        }
    }

    /// take_server_frame: as a tagged or untagged order-0 allocation.
    pub fn server_frame(&self, tagged: bool) -> Work {
        if tagged {
            self.alloc_tagged(0)
        } else {
            self.alloc_untagged(0)
        }
    }
}

impl Work {
    /// The first counter of `self` over `bound`, by name, if any.
    pub fn exceeds(&self, bound: &Work) -> Option<(&'static str, u64, u64)> {
        [
            ("frames_scanned", self.frames_scanned, bound.frames_scanned),
            ("splits", self.splits, bound.splits),
            ("merges", self.merges, bound.merges),
            ("pages_copied", self.pages_copied, bound.pages_copied),
            ("pages_zeroed", self.pages_zeroed, bound.pages_zeroed),
            ("tag_writes", self.tag_writes, bound.tag_writes),
            ("tag_cleans", self.tag_cleans, bound.tag_cleans),
        ]
        .into_iter()
        .find(|&(_, used, allowed)| used > allowed)
    }
}
