//! Which pages of each client's window are mapped, as a two-level bitmap
//! beside the page map, so that reclaim visits the pages a client holds
//! rather than its whole window.
//!
//! A client's words in the table are its summary words, then its page words:
//! bit `p % 64` of page word `p / 64` is set when window page `p` is mapped,
//! and bit `w % 64` of summary word `w / 64` is set when page word `w` is not
//! zero. The page map stays the one record of where a page is; these bits
//! follow it (`set_map` is their only writer, and `check_invariants()`
//! compares them with the page map).
//!
//! The cost is a bit per window page and 1/64 of that again: 1/32 of the
//! page map's 4 bytes. What it buys: reclaiming a client that holds `h`
//! pages reads `summary_words + 3·(h + 1)` words, not the whole window: a
//! summary word covers 4,096 pages, so a 49,152-page window has 12.

use crate::{ClientId, Pool};

/// Page words of a window of `window_pages` pages.
const fn page_words(window_pages: u32) -> u32 {
    window_pages.div_ceil(64)
}

/// Summary words of a window of `window_pages` pages.
pub(crate) const fn summary_words(window_pages: u32) -> u32 {
    page_words(window_pages).div_ceil(64)
}

/// All the words of a window of `window_pages` pages.
pub(crate) const fn words(window_pages: u32) -> usize {
    (summary_words(window_pages) + page_words(window_pages)) as usize
}

impl Pool<'_> {
    /// Where `client`'s summary words and page words start in the table.
    fn bit_words(&self, client: ClientId) -> (usize, usize) {
        let state = &self.clients[usize::from(client)];
        let summary = state.bits_first as usize;
        (summary, summary + state.summary_words as usize)
    }

    /// Records whether `page` of `client`'s window is mapped.
    pub(crate) fn mark_mapped(&mut self, client: ClientId, page: u32, mapped: bool) {
        let (summary, pages) = self.bit_words(client);
        let word_index = (page / 64) as usize;
        let bit = 1u64 << (page % 64);
        let word = &mut self.map_bits[pages + word_index];
        if mapped {
            *word |= bit;
        } else {
            *word &= !bit;
        }
        let word_in_use = *word != 0;
        let summary_bit = 1u64 << (word_index % 64);
        let summary_word = &mut self.map_bits[summary + word_index / 64];
        if word_in_use {
            *summary_word |= summary_bit;
        } else {
            *summary_word &= !summary_bit;
        }
    }

    /// The first mapped page of `client`'s window at or after `from`, each
    /// word read counted as a frame scanned. A caller that walks forward
    /// (`from` one past the last page found) reads at most three words per
    /// page found, plus the summary words once.
    pub(crate) fn next_mapped(&mut self, client: ClientId, from: u32) -> Option<u32> {
        let (summary, pages) = self.bit_words(client);
        let summary_words = pages - summary;
        let page_words = page_words(self.clients[usize::from(client)].window_pages) as usize;
        let word_index = (from / 64) as usize;
        if word_index >= page_words {
            return None;
        }
        self.work.frames_scanned += 1;
        let rest = self.map_bits[pages + word_index] & (!0u64 << (from % 64));
        if rest != 0 {
            return Some(first_page(word_index, rest));
        }
        // The next page word in use, from the summary.
        let after = word_index + 1;
        let mut mask = !0u64 << (after % 64);
        for at in after / 64..summary_words {
            self.work.frames_scanned += 1;
            let in_use = self.map_bits[summary + at] & mask;
            if in_use != 0 {
                let found = at * 64 + in_use.trailing_zeros() as usize;
                // check_invariants() requires no summary bit past the last
                // page word; one there would lead into the next client's.
                assert!(
                    found < page_words,
                    "client {client}: stray summary bit {found}"
                );
                self.work.frames_scanned += 1;
                return Some(first_page(found, self.map_bits[pages + found]));
            }
            mask = !0;
        }
        None
    }
}

/// The window page of the lowest bit set in page word `word_index`.
fn first_page(word_index: usize, word: u64) -> u32 {
    (word_index * 64) as u32 + word.trailing_zeros()
}
