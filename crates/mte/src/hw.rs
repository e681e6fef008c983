//! MTE tag operations with the real instructions (aarch64 only).
//!
//! IRG, STG, ST2G, LDG and DC GZVA, each in a small `unsafe` function, plus
//! [`MteFrames`], a [`TagOps`] over a window of tagged memory that stands in
//! for physical frames (a `PROT_MTE` mapping under Linux, or a server's
//! mapping of the pool on seL4 once the kernel enables MTE for user pages).
//! The assembler needs `.arch_extension memtag`; the CPU needs FEAT_MTE2.
#![allow(unsafe_code)]

use core::arch::asm;

use crate::{
    granule_tag, pointer_tag, set_granule_tag, with_pointer_tag, FrameTags, Pfn, Tag, TagOps,
    FRAME_BYTES, GRANULES_PER_FRAME, GRANULE_BYTES, ZERO_TAGS,
};

/// IRG: `pointer` with a random tag in bits 59:56, never one of `exclude`
/// (bit `t` of the mask excludes tag `t`).
///
/// # Safety
/// Needs FEAT_MTE; it touches no memory.
#[inline]
pub unsafe fn irg(pointer: u64, exclude: u16) -> u64 {
    let tagged: u64;
    // SAFETY: IRG only computes a value; the caller guarantees MTE exists.
    unsafe {
        asm!(".arch_extension memtag", "irg {out}, {ptr}, {mask}",
             out = lateout(reg) tagged, ptr = in(reg) pointer, mask = in(reg) u64::from(exclude),
             options(nomem, nostack, preserves_flags));
    }
    tagged
}

/// STG: sets the allocation tag of the granule at `pointer` to its logical tag.
///
/// # Safety
/// `pointer` must be 16-byte aligned and point into memory mapped with tags
/// (`PROT_MTE`) that the caller may retag.
#[inline]
pub unsafe fn stg(pointer: u64) {
    // SAFETY: the caller guarantees the granule is tagged memory it owns.
    unsafe {
        asm!(".arch_extension memtag", "stg {p}, [{p}]", p = in(reg) pointer, options(nostack, preserves_flags));
    }
}

/// STG with the tag taken from `tagged` and the granule addressed by
/// `address`: for memory whose pointers must keep a zero top byte (a thread
/// without top-byte-ignore, such as a stock seL4 PD).
///
/// # Safety
/// As [`stg`], for the granule at `address`.
#[inline]
pub unsafe fn stg_from(tagged: u64, address: u64) {
    // SAFETY: the caller guarantees the granule is memory it owns.
    unsafe {
        asm!(".arch_extension memtag", "stg {t}, [{a}]", t = in(reg) tagged, a = in(reg) address, options(nostack, preserves_flags));
    }
}

/// ST2G: as [`stg`], for the two granules at `pointer` (32-byte aligned).
///
/// # Safety
/// As [`stg`], for 32 bytes.
#[inline]
pub unsafe fn st2g(pointer: u64) {
    // SAFETY: the caller guarantees both granules are tagged memory it owns.
    unsafe {
        asm!(".arch_extension memtag", "st2g {p}, [{p}]", p = in(reg) pointer, options(nostack, preserves_flags));
    }
}

/// LDG: the allocation tag of the granule at `pointer`.
///
/// # Safety
/// `pointer` must point into tagged memory that is mapped.
#[inline]
pub unsafe fn ldg(pointer: u64) -> Tag {
    let mut value = pointer;
    // SAFETY: the caller guarantees the granule is mapped tagged memory.
    unsafe {
        asm!(".arch_extension memtag", "ldg {v}, [{p}]", v = inout(reg) value, p = in(reg) pointer,
             options(nostack, preserves_flags, readonly));
    }
    pointer_tag(value)
}

/// DC GZVA: zeroes the data *and* the tags of the DC ZVA block at
/// `pointer`, setting every granule's tag to the pointer's logical tag.
///
/// # Safety
/// `pointer` must be aligned to [`zva_block_bytes`] and the block must be
/// tagged memory the caller owns.
#[inline]
pub unsafe fn dc_gzva(pointer: u64) {
    // SAFETY: the caller guarantees the block is tagged memory it owns.
    unsafe {
        asm!(".arch_extension memtag", "dc gzva, {p}", p = in(reg) pointer, options(nostack, preserves_flags));
    }
}

/// The block size DC ZVA and DC GZVA work on, from DCZID_EL0 (readable at EL0).
pub fn zva_block_bytes() -> usize {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effect and is allowed at EL0.
    unsafe {
        asm!("mrs {d}, dczid_el0", d = out(reg) dczid, options(nomem, nostack, preserves_flags));
    }
    4 << (dczid & 0xf)
}

/// CTR_EL0, readable at EL0 where the kernel sets SCTLR_EL1.UCT (Linux
/// does; seL4 does with `AARCH64_USER_CACHE_ENABLE`, as Microkit's QEMU
/// boards are built).
fn cache_type() -> u64 {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effect.
    unsafe {
        asm!("mrs {c}, ctr_el0", c = out(reg) ctr, options(nomem, nostack, preserves_flags));
    }
    ctr
}

/// The smallest data cache line in bytes (CTR_EL0.DminLine).
pub fn data_line_bytes() -> usize {
    4 << ((cache_type() >> 16) & 0xf)
}

/// The data bytes whose allocation tags share the smallest cache line that
/// holds tags (CTR_EL0.TminLine, as the RFC's `tcache_line_size` reads
/// it); the data line where a CPU does not say.
pub fn tag_line_bytes() -> usize {
    match (cache_type() >> 32) & 0x3f {
        0 => data_line_bytes(),
        log2_words => 4 << log2_words,
    }
}

/// DC CIVAC over `[address, address + len)`: cleans and invalidates the
/// data cache lines to the point of coherency.
///
/// # Safety
/// The range must be mapped; at EL0 the kernel must allow cache
/// maintenance (SCTLR_EL1.UCI).
pub unsafe fn clean_invalidate_data(address: u64, len: usize) {
    let line = data_line_bytes() as u64;
    let mut at = address & !(line - 1);
    while at < address + len as u64 {
        // SAFETY: the caller guarantees the line is mapped and the
        // maintenance allowed.
        unsafe { asm!("dc civac, {a}", a = in(reg) at, options(nostack, preserves_flags)) };
        at += line;
    }
    // SAFETY: a barrier only.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// DC CIGVAC over `[address, address + len)`: cleans and invalidates the
/// cache lines of the allocation tags of that tagged memory to the point
/// of coherency (the data lines are left alone).
///
/// # Safety
/// As [`clean_invalidate_data`]; the range should be mapped Tagged, or the
/// operation has no tags to act on.
pub unsafe fn clean_invalidate_tags(address: u64, len: usize) {
    let line = tag_line_bytes() as u64;
    let mut at = address & !(line - 1);
    while at < address + len as u64 {
        // SAFETY: as for `clean_invalidate_data`.
        unsafe {
            asm!(".arch_extension memtag", "dc cigvac, {a}", a = in(reg) at, options(nostack, preserves_flags))
        };
        at += line;
    }
    // SAFETY: a barrier only.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Runs `f` with tag checks overridden (PSTATE.TCO = 1), as a server does to
/// copy or zero a client's frame whatever its tags are.
pub fn without_tag_checks<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: setting TCO only suppresses tag-check faults; it needs FEAT_MTE,
    // which every caller of this module has.
    unsafe {
        asm!(
            ".arch_extension memtag",
            "msr tco, #1",
            options(nomem, nostack, preserves_flags)
        )
    };
    let result = f();
    // SAFETY: as above; restores checking.
    unsafe {
        asm!(
            ".arch_extension memtag",
            "msr tco, #0",
            options(nomem, nostack, preserves_flags)
        )
    };
    result
}

/// PSTATE.TCO: whether tag checks are overridden now.
pub fn tag_checks_overridden() -> bool {
    let tco: u64;
    // SAFETY: reading TCO has no side effect; it needs FEAT_MTE, which every
    // caller of this module has.
    unsafe {
        asm!(
            ".arch_extension memtag",
            "mrs {t}, tco",
            t = out(reg) tco,
            options(nomem, nostack, preserves_flags)
        )
    };
    tco & (1 << 25) != 0
}

/// Sets PSTATE.TCO, leaving tag checks overridden until it is cleared: what
/// a test does to see whether the state survives a restart.
pub fn override_tag_checks() {
    // SAFETY: as in `without_tag_checks`.
    unsafe {
        asm!(
            ".arch_extension memtag",
            "msr tco, #1",
            options(nomem, nostack, preserves_flags)
        )
    };
}

/// A window of tagged memory standing in for physical frames `first_pfn ..
/// first_pfn + frames`: frame `p` is at `base + (p - first_pfn) * 4096`.
#[derive(Debug)]
pub struct MteFrames {
    base: u64,
    first_pfn: Pfn,
    frames: u64,
}

impl MteFrames {
    /// # Safety
    /// `base` must be the page-aligned start of `frames * 4096` bytes mapped
    /// read-write with tags (`PROT_MTE`), owned by the caller for the
    /// lifetime of the value and with tag checking enabled for this thread
    /// only as the caller intends.
    pub unsafe fn new(base: *mut u8, first_pfn: Pfn, frames: u64) -> MteFrames {
        MteFrames {
            base: base as u64,
            first_pfn,
            frames,
        }
    }

    /// The untagged address of frame `pfn`. Panics outside the window.
    pub fn address(&self, pfn: Pfn) -> u64 {
        assert!(
            pfn >= self.first_pfn && pfn < self.first_pfn + self.frames,
            "frame {pfn:#x} outside the MTE window"
        );
        self.base + (pfn - self.first_pfn) * FRAME_BYTES as u64
    }

    /// Zeroes data and tags of frame `pfn` with DC GZVA.
    pub fn zero_frame_and_tags(&mut self, pfn: Pfn) {
        let block = zva_block_bytes();
        let address = self.address(pfn);
        for offset in (0..FRAME_BYTES).step_by(block) {
            // SAFETY: the window is tagged memory we own (constructor), the
            // frame is inside it, and blocks divide the 4 KiB frame.
            unsafe { dc_gzva(address + offset as u64) };
        }
    }
}

impl TagOps for MteFrames {
    fn clean_for_tags(&mut self, tag_frame: Pfn) {
        // SAFETY: the frame is inside our window (address panics otherwise);
        // Linux allows EL0 cache maintenance.
        unsafe { clean_invalidate_data(self.address(tag_frame), FRAME_BYTES) }
    }

    fn clean_tags(&mut self, frame: Pfn) {
        // SAFETY: as above; the window is PROT_MTE memory.
        unsafe { clean_invalidate_tags(self.address(frame), FRAME_BYTES) }
    }

    fn zero_tags(&mut self, frame: Pfn) {
        let address = self.address(frame);
        for offset in (0..FRAME_BYTES).step_by(2 * GRANULE_BYTES) {
            // SAFETY: 32-byte aligned granule pairs inside our tagged window.
            unsafe { st2g(address + offset as u64) };
        }
    }

    fn copy_tags(&mut self, source: Pfn, destination: Pfn) {
        let mut tags = ZERO_TAGS;
        self.read_tags(source, &mut tags);
        self.write_tags(destination, &tags);
    }

    fn read_tags(&mut self, frame: Pfn, tags: &mut FrameTags) {
        let address = self.address(frame);
        for granule in 0..GRANULES_PER_FRAME {
            // SAFETY: an aligned granule inside our tagged window.
            let tag = unsafe { ldg(address + (granule * GRANULE_BYTES) as u64) };
            set_granule_tag(tags, granule, tag);
        }
    }

    fn write_tags(&mut self, frame: Pfn, tags: &FrameTags) {
        let address = self.address(frame);
        for granule in 0..GRANULES_PER_FRAME {
            let pointer = with_pointer_tag(
                address + (granule * GRANULE_BYTES) as u64,
                granule_tag(tags, granule),
            );
            // SAFETY: an aligned granule inside our tagged window.
            unsafe { stg(pointer) };
        }
    }
}
