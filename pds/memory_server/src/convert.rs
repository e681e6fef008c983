//! The pool's answers in the protocol's words. The pool core and the
//! protocol are independent crates (a client links the protocol, never the
//! pool), so the server, which knows both, maps one onto the other here.

use tagloan_pool::{ArgumentRule as PoolRule, BusyReason, PageState as PoolState, PoolError};
use tagloan_proto::{busy, ArgumentRule, Error, PageInfo, PageState, Status};

/// The protocol's code for a pool argument rule.
pub fn argument_rule(rule: PoolRule) -> ArgumentRule {
    match rule {
        PoolRule::UnknownClient => ArgumentRule::UnknownClient,
        PoolRule::OrderTooLarge => ArgumentRule::OrderTooLarge,
        PoolRule::Misaligned => ArgumentRule::Misaligned,
        PoolRule::OutsideWindow => ArgumentRule::OutsideWindow,
        PoolRule::NotAllocationHead => ArgumentRule::NotAllocationHead,
        PoolRule::BadPageCount => ArgumentRule::BadPageCount,
        PoolRule::NotAwaitingTags => ArgumentRule::NotAwaitingTags,
        PoolRule::AlreadyPinned => ArgumentRule::AlreadyPinned,
        PoolRule::NotPinned => ArgumentRule::NotPinned,
        PoolRule::Contiguous => ArgumentRule::Contiguous,
    }
}

/// The refusal a client sees for a pool error: the status and two details.
pub fn refusal(error: PoolError) -> Error {
    let (status, detail) = match error {
        PoolError::InvalidArgument { rule, value } => {
            (Status::InvalidArgument, [argument_rule(rule) as u64, value])
        }
        PoolError::NotOwner { vaddr, owner, .. } => (Status::NotOwner, [vaddr, u64::from(owner)]),
        PoolError::OutOfQuota {
            used,
            requested,
            quota,
            ..
        } => (
            Status::OutOfQuota,
            [u64::from(used) + u64::from(requested), u64::from(quota)],
        ),
        PoolError::NoMemory { frames } => (Status::NoMemory, [u64::from(frames), 0]),
        PoolError::AlreadyMapped { vaddr } => (Status::AlreadyMapped, [vaddr, 0]),
        PoolError::NotMapped { vaddr } => (Status::NotMapped, [vaddr, 0]),
        PoolError::Busy {
            vaddr,
            reason: BusyReason::Pinned,
        } => (Status::Busy, [vaddr, busy::PINNED]),
        PoolError::Unsupported => (Status::Unsupported, [0, 0]),
        PoolError::DeferredStoreFull { slots } => {
            (Status::Busy, [u64::from(slots), busy::DEFERRED_STORE_FULL])
        }
    };
    Error { status, detail }
}

/// What `query` reports of a pool page.
pub fn page_info(info: tagloan_pool::PageInfo) -> PageInfo {
    PageInfo {
        state: match info.state {
            PoolState::Untagged => PageState::Untagged,
            PoolState::Tagged => PageState::Tagged,
            PoolState::MetadataNone => PageState::MetadataNone,
        },
        pinned: info.pinned,
        contiguous: info.contiguous,
        in_tag_storage: info.in_tag_storage,
        deferred_tags: info.deferred_tags,
        frame: info.frame,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pool_rule_has_its_own_protocol_code() {
        let rules = [
            PoolRule::UnknownClient,
            PoolRule::OrderTooLarge,
            PoolRule::Misaligned,
            PoolRule::OutsideWindow,
            PoolRule::NotAllocationHead,
            PoolRule::BadPageCount,
            PoolRule::NotAwaitingTags,
            PoolRule::AlreadyPinned,
            PoolRule::NotPinned,
            PoolRule::Contiguous,
        ];
        for (i, a) in rules.iter().enumerate() {
            for b in &rules[i + 1..] {
                assert_ne!(argument_rule(*a) as u64, argument_rule(*b) as u64);
            }
        }
        let error = refusal(PoolError::NoMemory { frames: 512 });
        assert_eq!((error.status, error.detail), (Status::NoMemory, [512, 0]));
        let error = refusal(PoolError::DeferredStoreFull { slots: 64 });
        assert_eq!(error.detail, [64, busy::DEFERRED_STORE_FULL]);
    }
}
