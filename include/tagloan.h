/*
 * tagloan.h: the client API of the tagloan memory server, in C.
 *
 * GENERATED from the protocol table (crates/proto/src/ops.rs) by
 * `tagloan header`; do not edit. A test keeps it equal to the table.
 *
 * Each function makes one protected procedure call on `ch` (the
 * client's channel to the server, TAGLOAN_CHANNEL_TO_SERVER), returns
 * the reply's status (TAGLOAN_STATUS_*), and on TAGLOAN_STATUS_OK
 * fills `reply`. On a refusal, tagloan_detail(0) and tagloan_detail(1)
 * are its two detail words.
 */
#pragma once

#include <stdint.h>
#include <microkit.h>

#define TAGLOAN_PROTOCOL_VERSION 0x1ull
#define TAGLOAN_MAX_MESSAGE_WORDS 0xaull
#define TAGLOAN_MAX_ORDER 0x9ull
#define TAGLOAN_MAX_USER_VADDR 0xffffffffffull
#define TAGLOAN_MAX_TABLE_CLIENTS 0x10ull
#define TAGLOAN_CHANNEL_TO_SERVER 0x0ull
#define TAGLOAN_CHANNEL_TO_SUPERVISOR 0x1ull
#define TAGLOAN_CHANNEL_DONE 0x2ull
#define TAGLOAN_CONSOLE_LABEL 0xc0ull
#define TAGLOAN_CONSOLE_MAX_WORDS 0x28ull
#define TAGLOAN_SPEC_ORDER_MASK 0xfull
#define TAGLOAN_SPEC_TAGGED 0x100ull
#define TAGLOAN_SPEC_PINNED 0x200ull
#define TAGLOAN_SPEC_CONTIGUOUS 0x400ull
#define TAGLOAN_BUSY_PINNED 0x1ull
#define TAGLOAN_BUSY_DEFERRED_STORE_FULL 0x64ull
#define TAGLOAN_STATUS_OK 0x0ull
#define TAGLOAN_STATUS_INVALID_ARGUMENT 0x1ull
#define TAGLOAN_STATUS_MALFORMED 0x2ull
#define TAGLOAN_STATUS_NOT_OWNER 0x3ull
#define TAGLOAN_STATUS_PERMISSION_DENIED 0x4ull
#define TAGLOAN_STATUS_OUT_OF_QUOTA 0x5ull
#define TAGLOAN_STATUS_NO_MEMORY 0x6ull
#define TAGLOAN_STATUS_ALREADY_MAPPED 0x7ull
#define TAGLOAN_STATUS_NOT_MAPPED 0x8ull
#define TAGLOAN_STATUS_BUSY 0x9ull
#define TAGLOAN_STATUS_UNSUPPORTED 0xaull
#define TAGLOAN_RULE_UNKNOWN_CLIENT 0x1ull
#define TAGLOAN_RULE_ORDER_TOO_LARGE 0x2ull
#define TAGLOAN_RULE_MISALIGNED 0x3ull
#define TAGLOAN_RULE_OUTSIDE_WINDOW 0x4ull
#define TAGLOAN_RULE_NOT_ALLOCATION_HEAD 0x5ull
#define TAGLOAN_RULE_BAD_PAGE_COUNT 0x6ull
#define TAGLOAN_RULE_NOT_AWAITING_TAGS 0x7ull
#define TAGLOAN_RULE_ALREADY_PINNED 0x8ull
#define TAGLOAN_RULE_NOT_PINNED 0x9ull
#define TAGLOAN_RULE_CONTIGUOUS 0xaull
#define TAGLOAN_OP_ALLOC 0x1ull
#define TAGLOAN_ALLOC_REQUEST_WORDS 0x3ull
#define TAGLOAN_ALLOC_REPLY_PAGES_OFFSET 0x0ull
#define TAGLOAN_ALLOC_REPLY_FIRST_FRAME_OFFSET 0x8ull
#define TAGLOAN_ALLOC_REPLY_IN_TAG_STORAGE_OFFSET 0x10ull
#define TAGLOAN_OP_FREE 0x2ull
#define TAGLOAN_FREE_REQUEST_WORDS 0x2ull
#define TAGLOAN_FREE_REPLY_PAGES_OFFSET 0x0ull
#define TAGLOAN_OP_ENABLE_TAGGING 0x3ull
#define TAGLOAN_ENABLE_TAGGING_REQUEST_WORDS 0x3ull
#define TAGLOAN_OP_DISABLE_TAGGING 0x4ull
#define TAGLOAN_DISABLE_TAGGING_REQUEST_WORDS 0x3ull
#define TAGLOAN_OP_PIN 0x5ull
#define TAGLOAN_PIN_REQUEST_WORDS 0x2ull
#define TAGLOAN_OP_UNPIN 0x6ull
#define TAGLOAN_UNPIN_REQUEST_WORDS 0x2ull
#define TAGLOAN_OP_QUERY 0x7ull
#define TAGLOAN_QUERY_REQUEST_WORDS 0x2ull
#define TAGLOAN_QUERY_REPLY_FLAGS_OFFSET 0x0ull
#define TAGLOAN_QUERY_REPLY_FRAME_OFFSET 0x8ull
#define TAGLOAN_OP_STATS 0x8ull
#define TAGLOAN_STATS_REQUEST_WORDS 0x1ull
#define TAGLOAN_STATS_REPLY_METADATA_TOTAL_OFFSET 0x0ull
#define TAGLOAN_STATS_REPLY_METADATA_FREE_OFFSET 0x8ull
#define TAGLOAN_STATS_REPLY_LENT_OFFSET 0x10ull
#define TAGLOAN_STATS_REPLY_RESERVED_BLOCKS_OFFSET 0x18ull
#define TAGLOAN_STATS_REPLY_MIGRATIONS_OFFSET 0x20ull
#define TAGLOAN_STATS_REPLY_RECALLS_OFFSET 0x28ull
#define TAGLOAN_STATS_REPLY_FAILURES_OFFSET 0x30ull
#define TAGLOAN_STATS_REPLY_DATA_TOTAL_OFFSET 0x38ull
#define TAGLOAN_STATS_REPLY_DATA_FREE_OFFSET 0x40ull
#define TAGLOAN_OP_RESOLVE_FAULT 0x10ull
#define TAGLOAN_RESOLVE_FAULT_REQUEST_WORDS 0x4ull
#define TAGLOAN_OP_RECLAIM_CLIENT 0x11ull
#define TAGLOAN_RECLAIM_CLIENT_REQUEST_WORDS 0x2ull

/* The `alloc` spec word: 2^order pages, with flags. */
#define TAGLOAN_SPEC(order, flags) ((uint64_t)(order) | (uint64_t)(flags))

/* A refusal's detail word `i` (0 or 1), right after the call. */
static inline uint64_t tagloan_detail(int i)
{
    return microkit_mr_get((seL4_Uint8)i);
}

typedef struct {
    uint64_t pages;
    uint64_t first_frame;
    uint64_t in_tag_storage;
} tagloan_alloc_reply;

static inline uint64_t tagloan_alloc(microkit_channel ch, uint64_t vaddr, uint64_t spec, tagloan_alloc_reply *reply)
{
    microkit_mr_set(0, TAGLOAN_PROTOCOL_VERSION);
    microkit_mr_set(1, vaddr);
    microkit_mr_set(2, spec);
    microkit_msginfo info = microkit_ppcall(ch, microkit_msginfo_new(TAGLOAN_OP_ALLOC, 3));
    uint64_t status = microkit_msginfo_get_label(info);
    if (status == TAGLOAN_STATUS_OK && microkit_msginfo_get_count(info) == 3 && reply) {
        reply->pages = microkit_mr_get(0);
        reply->first_frame = microkit_mr_get(1);
        reply->in_tag_storage = microkit_mr_get(2);
    }
    return status;
}

typedef struct {
    uint64_t pages;
} tagloan_free_reply;

static inline uint64_t tagloan_free(microkit_channel ch, uint64_t vaddr, tagloan_free_reply *reply)
{
    microkit_mr_set(0, TAGLOAN_PROTOCOL_VERSION);
    microkit_mr_set(1, vaddr);
    microkit_msginfo info = microkit_ppcall(ch, microkit_msginfo_new(TAGLOAN_OP_FREE, 2));
    uint64_t status = microkit_msginfo_get_label(info);
    if (status == TAGLOAN_STATUS_OK && microkit_msginfo_get_count(info) == 1 && reply) {
        reply->pages = microkit_mr_get(0);
    }
    return status;
}

static inline uint64_t tagloan_enable_tagging(microkit_channel ch, uint64_t vaddr, uint64_t pages)
{
    microkit_mr_set(0, TAGLOAN_PROTOCOL_VERSION);
    microkit_mr_set(1, vaddr);
    microkit_mr_set(2, pages);
    microkit_msginfo info = microkit_ppcall(ch, microkit_msginfo_new(TAGLOAN_OP_ENABLE_TAGGING, 3));
    uint64_t status = microkit_msginfo_get_label(info);
    return status;
}

static inline uint64_t tagloan_disable_tagging(microkit_channel ch, uint64_t vaddr, uint64_t pages)
{
    microkit_mr_set(0, TAGLOAN_PROTOCOL_VERSION);
    microkit_mr_set(1, vaddr);
    microkit_mr_set(2, pages);
    microkit_msginfo info = microkit_ppcall(ch, microkit_msginfo_new(TAGLOAN_OP_DISABLE_TAGGING, 3));
    uint64_t status = microkit_msginfo_get_label(info);
    return status;
}

static inline uint64_t tagloan_pin(microkit_channel ch, uint64_t vaddr)
{
    microkit_mr_set(0, TAGLOAN_PROTOCOL_VERSION);
    microkit_mr_set(1, vaddr);
    microkit_msginfo info = microkit_ppcall(ch, microkit_msginfo_new(TAGLOAN_OP_PIN, 2));
    uint64_t status = microkit_msginfo_get_label(info);
    return status;
}

static inline uint64_t tagloan_unpin(microkit_channel ch, uint64_t vaddr)
{
    microkit_mr_set(0, TAGLOAN_PROTOCOL_VERSION);
    microkit_mr_set(1, vaddr);
    microkit_msginfo info = microkit_ppcall(ch, microkit_msginfo_new(TAGLOAN_OP_UNPIN, 2));
    uint64_t status = microkit_msginfo_get_label(info);
    return status;
}

typedef struct {
    uint64_t flags;
    uint64_t frame;
} tagloan_query_reply;

static inline uint64_t tagloan_query(microkit_channel ch, uint64_t vaddr, tagloan_query_reply *reply)
{
    microkit_mr_set(0, TAGLOAN_PROTOCOL_VERSION);
    microkit_mr_set(1, vaddr);
    microkit_msginfo info = microkit_ppcall(ch, microkit_msginfo_new(TAGLOAN_OP_QUERY, 2));
    uint64_t status = microkit_msginfo_get_label(info);
    if (status == TAGLOAN_STATUS_OK && microkit_msginfo_get_count(info) == 2 && reply) {
        reply->flags = microkit_mr_get(0);
        reply->frame = microkit_mr_get(1);
    }
    return status;
}

typedef struct {
    uint64_t metadata_total;
    uint64_t metadata_free;
    uint64_t lent;
    uint64_t reserved_blocks;
    uint64_t migrations;
    uint64_t recalls;
    uint64_t failures;
    uint64_t data_total;
    uint64_t data_free;
} tagloan_stats_reply;

static inline uint64_t tagloan_stats(microkit_channel ch, tagloan_stats_reply *reply)
{
    microkit_mr_set(0, TAGLOAN_PROTOCOL_VERSION);
    microkit_msginfo info = microkit_ppcall(ch, microkit_msginfo_new(TAGLOAN_OP_STATS, 1));
    uint64_t status = microkit_msginfo_get_label(info);
    if (status == TAGLOAN_STATUS_OK && microkit_msginfo_get_count(info) == 9 && reply) {
        reply->metadata_total = microkit_mr_get(0);
        reply->metadata_free = microkit_mr_get(1);
        reply->lent = microkit_mr_get(2);
        reply->reserved_blocks = microkit_mr_get(3);
        reply->migrations = microkit_mr_get(4);
        reply->recalls = microkit_mr_get(5);
        reply->failures = microkit_mr_get(6);
        reply->data_total = microkit_mr_get(7);
        reply->data_free = microkit_mr_get(8);
    }
    return status;
}
