/*
 * microkit.h for the tagloan simulator (crates/libmicrokit-host): the part
 * of Microkit 2.3.0's C API a client PD uses, with the same names and types
 * as the SDK's header, backed by the simulator instead of seL4. A PD's
 * source compiles unchanged against this header (host cc, in the simulator)
 * or against the SDK's (aarch64, on seL4).
 *
 * Limits, by design:
 * - A PD's own memory (its globals, stack, the regions it maps, such as the
 *   client table) is host memory. Memory the memory server maps into it (its
 *   heap window) is simulated: reach it with tagloan_load64/tagloan_store64
 *   and the tag helpers of tagloan_client.h, which go through the simulated
 *   MMU and tag checks. A plain dereference of a window address would touch
 *   host memory that does not exist.
 * - Once the PD is stopped (for example by its fault handler, after a
 *   tag-check fault), every call is a no-op and every read returns 0 until
 *   the entry point returns; the simulator then runs it no more.
 * - No IRQs, no child PDs, no fault entry point, no microkit_pd_*.
 */
#pragma once

#include <stdint.h>

#define TAGLOAN_HOST_LIBMICROKIT 1

typedef uint8_t seL4_Uint8;
typedef uint16_t seL4_Uint16;
typedef uint64_t seL4_Word;
typedef unsigned int microkit_channel;
typedef unsigned int microkit_child;
/* seL4's layout: the label in bits 63:12, the length in bits 6:0. */
typedef struct { seL4_Word words[1]; } microkit_msginfo;

#define MICROKIT_MAX_CHANNELS 62
#define MICROKIT_PD_NAME_LENGTH 64

/* The PD's entry points, as with the SDK. */
void init(void);
void notified(microkit_channel ch);

/* Backed by the simulator (crates/libmicrokit-host/src/lib.rs). */
void microkit_dbg_puts(const char *s);
void microkit_notify(microkit_channel ch);
seL4_Word tagloan_host_ppcall(microkit_channel ch, seL4_Word info);
void microkit_mr_set(seL4_Uint8 mr, seL4_Word value);
seL4_Word microkit_mr_get(seL4_Uint8 mr);

static inline microkit_msginfo microkit_msginfo_new(seL4_Word label, seL4_Uint16 count)
{
    microkit_msginfo info = { { label << 12 | (count & 0x7f) } };
    return info;
}

static inline seL4_Word microkit_msginfo_get_label(microkit_msginfo info)
{
    return info.words[0] >> 12;
}

static inline seL4_Word microkit_msginfo_get_count(microkit_msginfo info)
{
    return info.words[0] & 0x7f;
}

static inline microkit_msginfo microkit_ppcall(microkit_channel ch, microkit_msginfo info)
{
    microkit_msginfo reply = { { tagloan_host_ppcall(ch, info.words[0]) } };
    return reply;
}

/* tagloan_client.h's accessors, on the simulated MMU. */
uint64_t tagloan_host_load64(uint64_t pointer);
void tagloan_host_store64(uint64_t pointer, uint64_t value);
uint64_t tagloan_host_irg(uint64_t pointer, uint64_t exclude);
void tagloan_host_stg(uint64_t pointer);
