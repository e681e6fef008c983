/*
 * client_c: a tagloan client PD in C, in the shape of the Microkit examples
 * (init and notified). It allocates a tagged arena from the memory server,
 * gives each 64-byte object of it a random tag (IRG, never 0) stored on its
 * granules (STG), writes and reads the objects through their tagged
 * pointers, "frees" half of them by retagging them, and releases the arena.
 * With its use-after-free flag it then writes through a stale pointer: a
 * tag-check fault, which the fault handler reports before it stops the PD.
 *
 * The same source builds for seL4 (the SDK's microkit.h and libmicrokit,
 * aarch64 with -march=armv8.5-a+memtag; the flag is
 * -DCLIENT_C_USE_AFTER_FREE=1) and for the simulator (the host microkit.h
 * of crates/libmicrokit-host, through pds/client_c/build.rs).
 *
 * Like every tagloan client it is paced by the fault handler: it does one
 * unit of work each time the fault handler notifies it, notifies it back,
 * prints its lines through it (a console PPC, so they come out whole), and
 * says it has finished on its done channel.
 */
#include <stdint.h>
#include <microkit.h>

#include "tagloan.h"
#include "tagloan_client.h"

#ifndef CLIENT_C_USE_AFTER_FREE
#define CLIENT_C_USE_AFTER_FREE 0
#endif

#define SERVER TAGLOAN_CHANNEL_TO_SERVER
#define SUPERVISOR TAGLOAN_CHANNEL_TO_SUPERVISOR
#define DONE TAGLOAN_CHANNEL_DONE

#define PAGE_BYTES 4096u
#define ARENA_ORDER 1
#define ARENA_BYTES (PAGE_BYTES << ARENA_ORDER)
#define OBJECT_BYTES 64u
#define OBJECTS (ARENA_BYTES / OBJECT_BYTES)
#define NAME "client_c"

/* The client table region, where the tool's setvar_vaddr puts it. */
uintptr_t client_table_vaddr;
uintptr_t client_table_size;

enum phase { ALLOCATE, FILL, CHECK, RETAG, USE_AFTER_FREE, RECHECK, RELEASE, FINISHED };

/* All of the PD's mutable state (the simulator keeps one copy per PD). */
struct client_c {
    /* The plan: set before init, kept across restarts. */
    int use_after_free;
    enum phase phase;
    int done;
    uint64_t window;
    /* Each live object's tagged pointer; 0 once freed. */
    uint64_t objects[OBJECTS];
    uint64_t stale;
    uint64_t steps;
    uint64_t objects_tagged;
    uint64_t objects_checked;
    uint64_t objects_freed;
    uint64_t corrupted_bytes;
    uint64_t errors;
    uint64_t use_after_free_attempted;
};

static struct client_c client = { .use_after_free = CLIENT_C_USE_AFTER_FREE };

#ifndef TAGLOAN_HOST_LIBMICROKIT
/* The compiler may call these; seL4 PDs have no libc. */
void *memset(void *s, int c, unsigned long n)
{
    unsigned char *p = s;
    while (n--) {
        *p++ = (unsigned char)c;
    }
    return s;
}

void *memcpy(void *d, const void *s, unsigned long n)
{
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n--) {
        *p++ = *q++;
    }
    return d;
}
#endif

/* ---- console lines, through the fault handler ---- */

struct line {
    char text[TAGLOAN_CONSOLE_MAX_WORDS * 8];
    unsigned len;
};

static void put(struct line *l, const char *s)
{
    while (*s && l->len < sizeof l->text) {
        l->text[l->len++] = *s++;
    }
}

static void put_u64(struct line *l, uint64_t v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n && l->len < sizeof l->text) {
        l->text[l->len++] = digits[--n];
    }
}

static void put_hex(struct line *l, uint64_t v)
{
    int shift = 60;
    put(l, "0x");
    while (shift > 0 && ((v >> shift) & 0xf) == 0) {
        shift -= 4;
    }
    for (; shift >= 0 && l->len < sizeof l->text; shift -= 4) {
        l->text[l->len++] = "0123456789abcdef"[(v >> shift) & 0xf];
    }
}

static void put_counter(struct line *l, const char *name, uint64_t value)
{
    put(l, " ");
    put(l, name);
    put(l, "=");
    put_u64(l, value);
}

/* The line's bytes, little-endian in the message registers (tagloan's
 * console protocol), in one PPC to the fault handler. */
static void print(struct line *l)
{
    unsigned words = (l->len + 7) / 8;
    for (unsigned w = 0; w < words; w++) {
        uint64_t word = 0;
        for (unsigned b = 0; b < 8 && w * 8 + b < l->len; b++) {
            word |= (uint64_t)(unsigned char)l->text[w * 8 + b] << (8 * b);
        }
        microkit_mr_set((seL4_Uint8)w, word);
    }
    microkit_ppcall(SUPERVISOR, microkit_msginfo_new(TAGLOAN_CONSOLE_LABEL, (seL4_Uint16)words));
}

static void print_counters(const char *what)
{
    struct line l = { .len = 0 };
    put(&l, NAME ": ");
    put(&l, what);
    put(&l, ":");
    put_counter(&l, "steps", client.steps);
    put_counter(&l, "done", (uint64_t)client.done);
    put_counter(&l, "objects_tagged", client.objects_tagged);
    put_counter(&l, "objects_checked", client.objects_checked);
    put_counter(&l, "objects_freed", client.objects_freed);
    put_counter(&l, "corrupted_bytes", client.corrupted_bytes);
    put_counter(&l, "errors", client.errors);
    put_counter(&l, "use_after_free_attempted", client.use_after_free_attempted);
    print(&l);
}

/* ---- the client table: this PD's heap window ---- */

static int starts_with(const char *p, const char *end, const char *prefix)
{
    while (*prefix) {
        if (p == end || *p++ != *prefix++) {
            return 0;
        }
    }
    return 1;
}

/* `window=` of the line `client client_c ...`, or 0. */
static uint64_t find_window(void)
{
    const char *p = (const char *)client_table_vaddr;
    const char *end = p + client_table_size;
    while (p && p < end && *p) {
        const char *eol = p;
        while (eol < end && *eol && *eol != '\n') {
            eol++;
        }
        if (starts_with(p, eol, "client " NAME " ")) {
            for (const char *q = p; q < eol; q++) {
                if (starts_with(q, eol, " window=0x")) {
                    uint64_t v = 0;
                    for (q += 10; q < eol; q++) {
                        unsigned d = (unsigned)*q;
                        if (d >= '0' && d <= '9') {
                            d -= '0';
                        } else if (d >= 'a' && d <= 'f') {
                            d = d - 'a' + 10;
                        } else {
                            break;
                        }
                        v = v << 4 | d;
                    }
                    return v;
                }
            }
        }
        p = eol + 1;
    }
    return 0;
}

/* ---- the work ---- */

static uint64_t object_address(unsigned i)
{
    return client.window + (uint64_t)i * OBJECT_BYTES;
}

/* What word `w` of the object at `address` with `tag` holds. */
static uint64_t pattern(uint64_t address, unsigned w, unsigned tag)
{
    return (address + w * 8) * 0x9e3779b97f4a7c15ull ^ tag;
}

static void fill(unsigned i)
{
    uint64_t address = object_address(i);
    /* Exclude tag 0, the tag of untagged pointers. */
    uint64_t pointer = tagloan_irg(address, 1);
    tagloan_set_tags(pointer, OBJECT_BYTES);
    for (unsigned w = 0; w < OBJECT_BYTES / 8; w++) {
        tagloan_store64(pointer + w * 8, pattern(address, w, TAGLOAN_TAG_OF(pointer)));
    }
    client.objects[i] = pointer;
    client.objects_tagged++;
}

/* Reads a live object back through its own pointer. */
static void check(unsigned i)
{
    uint64_t pointer = client.objects[i];
    uint64_t address = object_address(i);
    for (unsigned w = 0; w < OBJECT_BYTES / 8; w++) {
        uint64_t diff = tagloan_load64(pointer + w * 8) ^ pattern(address, w, TAGLOAN_TAG_OF(pointer));
        for (unsigned b = 0; b < 8; b++) {
            client.corrupted_bytes += ((diff >> (8 * b)) & 0xff) != 0;
        }
    }
    client.objects_checked++;
}

/* Frees an object the MTE way: a new tag on its granules, so the old
 * pointer no longer matches. */
static void retag(unsigned i)
{
    uint64_t old = client.objects[i];
    uint64_t pointer = tagloan_irg(object_address(i), 1 | 1ull << TAGLOAN_TAG_OF(old));
    tagloan_set_tags(pointer, OBJECT_BYTES);
    client.objects[i] = 0;
    client.stale = old;
    client.objects_freed++;
}

static void step(void)
{
    switch (client.phase) {
    case ALLOCATE: {
        tagloan_alloc_reply reply;
        uint64_t status = tagloan_alloc(SERVER, client.window, TAGLOAN_SPEC(ARENA_ORDER, TAGLOAN_SPEC_TAGGED), &reply);
        if (client.window == 0 || status != TAGLOAN_STATUS_OK) {
            struct line l = { .len = 0 };
            put(&l, NAME ": tagged alloc at ");
            put_hex(&l, client.window);
            put(&l, " refused with status ");
            put_u64(&l, status);
            print(&l);
            client.errors++;
            client.phase = FINISHED;
            return;
        }
        client.phase = FILL;
        return;
    }
    case FILL:
        for (unsigned i = 0; i < OBJECTS; i++) {
            fill(i);
        }
        client.phase = CHECK;
        return;
    case CHECK:
        for (unsigned i = 0; i < OBJECTS; i++) {
            check(i);
        }
        client.phase = RETAG;
        return;
    case RETAG:
        for (unsigned i = 0; i < OBJECTS; i += 2) {
            retag(i);
        }
        client.phase = client.use_after_free ? USE_AFTER_FREE : RECHECK;
        return;
    case USE_AFTER_FREE:
        client.use_after_free_attempted = 1;
        print_counters("before its use after free");
        /* The bug MTE exists to catch: a write through a pointer whose
         * object was freed (and so retagged). */
        tagloan_store64(client.stale, 0xdeadbeef);
        client.phase = RECHECK;
        return;
    case RECHECK:
        for (unsigned i = 0; i < OBJECTS; i++) {
            if (client.objects[i]) {
                check(i);
            }
        }
        client.phase = RELEASE;
        return;
    case RELEASE: {
        tagloan_free_reply reply;
        if (tagloan_free(SERVER, client.window, &reply) != TAGLOAN_STATUS_OK) {
            client.errors++;
        }
        client.phase = FINISHED;
        return;
    }
    case FINISHED:
        return;
    }
}

void init(void)
{
    /* A restart begins the plan again. */
    int use_after_free = client.use_after_free;
    struct client_c fresh = { .use_after_free = use_after_free };
    client = fresh;
    client.window = find_window();
    struct line l = { .len = 0 };
    put(&l, NAME ": started");
    print(&l);
    microkit_notify(SUPERVISOR);
}

void notified(microkit_channel ch)
{
    if (ch != SUPERVISOR || client.done) {
        return;
    }
    client.steps++;
    step();
    if (client.phase != FINISHED) {
        microkit_notify(SUPERVISOR);
        return;
    }
    client.done = 1;
    print_counters("finished");
    microkit_notify(DONE);
}

#ifdef TAGLOAN_HOST_LIBMICROKIT
/* For the simulator's host libmicrokit (crates/libmicrokit-host). */
unsigned char *client_c_state(unsigned long *size)
{
    *size = sizeof client;
    return (unsigned char *)&client;
}

void client_c_set_use_after_free(int on)
{
    client.use_after_free = on;
}

void client_c_set_client_table(uintptr_t vaddr, uintptr_t size)
{
    client_table_vaddr = vaddr;
    client_table_size = size;
}

/* Its counters, by name, as print_counters prints them. */
void client_c_counters(void (*report)(void *context, const char *name, uint64_t value), void *context)
{
    report(context, "steps", client.steps);
    report(context, "done", (uint64_t)client.done);
    report(context, "objects_tagged", client.objects_tagged);
    report(context, "objects_checked", client.objects_checked);
    report(context, "objects_freed", client.objects_freed);
    report(context, "corrupted_bytes", client.corrupted_bytes);
    report(context, "errors", client.errors);
    report(context, "use_after_free_attempted", client.use_after_free_attempted);
}
#endif
