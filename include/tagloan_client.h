/*
 * tagloan_client.h: what a C client PD needs beside tagloan.h (the
 * protocol, generated) and microkit.h: loads and stores to the heap window
 * the memory server maps, and the MTE tag helpers. Written by hand; the
 * same source builds for seL4 (the SDK's microkit.h, aarch64 with
 * -march=armv8.5-a+memtag) and for the simulator (the host microkit.h of
 * crates/libmicrokit-host, which defines TAGLOAN_HOST_LIBMICROKIT).
 */
#pragma once

#include <stdint.h>

/* Bits 59:56 of a pointer carry its MTE tag. */
#define TAGLOAN_TAG_SHIFT 56
#define TAGLOAN_GRANULE 16
#define TAGLOAN_WITH_TAG(pointer, tag) \
    (((uint64_t)(pointer) & ~(0xfull << TAGLOAN_TAG_SHIFT)) | ((uint64_t)(tag) & 0xf) << TAGLOAN_TAG_SHIFT)
#define TAGLOAN_TAG_OF(pointer) ((unsigned)(((uint64_t)(pointer) >> TAGLOAN_TAG_SHIFT) & 0xf))

#ifdef TAGLOAN_HOST_LIBMICROKIT

/* In the simulator: through the simulated MMU, its faults and tag checks. */
static inline uint64_t tagloan_load64(uint64_t pointer) { return tagloan_host_load64(pointer); }
static inline void tagloan_store64(uint64_t pointer, uint64_t value) { tagloan_host_store64(pointer, value); }
static inline uint64_t tagloan_irg(uint64_t pointer, uint64_t exclude) { return tagloan_host_irg(pointer, exclude); }
static inline void tagloan_stg(uint64_t pointer) { tagloan_host_stg(pointer); }

#else

/* On seL4: the real accesses and instructions. A fault is a VMFault to the
 * fault handler, which resumes the access or stops the PD. With a kernel
 * that gives EL0 no tag access (stock seL4), IRG gives tag 0 and STG stores
 * nothing. */
static inline uint64_t tagloan_load64(uint64_t pointer)
{
    return *(volatile uint64_t *)pointer;
}

static inline void tagloan_store64(uint64_t pointer, uint64_t value)
{
    *(volatile uint64_t *)pointer = value;
}

/* IRG: `pointer` with a random tag not in `exclude` (a bit mask of tags). */
static inline uint64_t tagloan_irg(uint64_t pointer, uint64_t exclude)
{
    uint64_t tagged;
    __asm__ volatile("irg %0, %1, %2" : "=r"(tagged) : "r"(pointer), "r"(exclude));
    return tagged;
}

/* STG: the granule at `pointer` gets the pointer's tag. */
static inline void tagloan_stg(uint64_t pointer)
{
    __asm__ volatile("stg %0, [%0]" : : "r"(pointer) : "memory");
}

#endif

/* Tags `len` bytes (a multiple of the granule) at `pointer` with its tag. */
static inline void tagloan_set_tags(uint64_t pointer, uint64_t len)
{
    for (uint64_t offset = 0; offset < len; offset += TAGLOAN_GRANULE) {
        tagloan_stg(pointer + offset);
    }
}
