/*
 * tagloan's fault protocol (DESIGN §5), in Promela, checked with spin
 * (tests/assure/spin-test): a client's access faults, the kernel sends the
 * fault to the fault handler, which asks the memory server to resolve it
 * (lazy tagging) and resumes the client, or stops it and has the server
 * reclaim its frames. assure/fault_protocol.md maps each process and
 * message to the code.
 *
 * Checked: no deadlock (no invalid end state), the assertions below, and
 * the LTL property `done`: every faulting client ends either resumed with
 * its page mapped tagged, or stopped with its frames reclaimed.
 */

#define CLIENTS 2
#define ACCESSES 2

/* What a client's page is, as the server's pool records it. */
mtype = { unmapped, awaiting_tags, tagged };
/* Faults as the fault handler sees them (the DFSC of the VMFault). */
mtype = { lazy, tag_check, other };
/* The server's answers to resolve_fault. */
mtype = { now_tagged, no_memory, not_awaiting };
/* The fault handler's reply to the faulting thread. */
mtype = { resume, stop };
/* Requests to the server (PPCs). */
mtype = { resolve, reclaim, enable };

mtype page[CLIENTS];
bool stopped[CLIENTS];
bool reclaimed[CLIENTS];
/* The fault the client is blocked on, and how it ended. */
bool faulting[CLIENTS];
bool resumed_tagged[CLIENTS];
/* Ghost: the server mapped the client's page tagged in answer to its
 * fault (the only fault a resume may follow). */
bool just_tagged[CLIENTS];
/* Whether the server has memory for the tags (it may run out). */
bool server_has_memory = true;

chan fault_ep = [0] of { byte, mtype };           /* the kernel -> fault handler */
chan fault_reply[CLIENTS] = [0] of { mtype };     /* fault handler -> the faulting thread */
chan server_ep = [0] of { mtype, byte };          /* PPC to the memory server */
chan server_reply = [0] of { mtype };

/* The memory server: passive, one call at a time (a PPC). */
active proctype MemoryServer()
{
    byte c;
end_serving:
    do
    :: server_ep ? resolve, c ->
        if
        :: page[c] == awaiting_tags && server_has_memory ->
            page[c] = tagged; just_tagged[c] = true; server_reply ! now_tagged
        :: page[c] == awaiting_tags && !server_has_memory ->
            server_reply ! no_memory
        :: page[c] != awaiting_tags ->
            server_reply ! not_awaiting
        fi
    :: server_ep ? reclaim, c ->
        page[c] = unmapped; reclaimed[c] = true; server_reply ! now_tagged
    :: server_ep ? enable, c ->
        /* enable_tagging: the page is mapped no-access until its tags exist */
        if
        :: page[c] == unmapped -> page[c] = awaiting_tags
        :: else -> skip
        fi;
        server_reply ! now_tagged
    od
}

/* The server may run out of memory at any time (other clients). */
active proctype OtherClients()
{
end_idle:
    do
    :: server_has_memory -> server_has_memory = false
    :: !server_has_memory -> server_has_memory = true
    :: break
    od
}

/* The fault handler: the parent of every client. */
active proctype FaultHandler()
{
    byte c;
    mtype kind, answer;
end_waiting:
    do
    :: fault_ep ? c, kind ->
        if
        :: kind == lazy ->
            server_ep ! resolve, c; server_reply ? answer;
            if
            :: answer == now_tagged ->
                /* Resume only what lazy tagging explains, now mapped tagged. */
                assert(page[c] == tagged);
                fault_reply[c] ! resume
            :: answer == no_memory ->
                /* VM_FAULT_OOM: stop it, then reclaim its frames. */
                fault_reply[c] ! stop;
                server_ep ! reclaim, c; server_reply ? answer
            :: answer == not_awaiting ->
                /* A permission fault on a tagged page: resuming would fault
                 * for ever; it is a real fault. */
                fault_reply[c] ! stop;
                server_ep ! reclaim, c; server_reply ? answer
            fi
        :: kind == tag_check || kind == other ->
            /* Reported, then stopped and reclaimed (a restart is a stop
             * followed by a fresh start, not a resume). */
            fault_reply[c] ! stop;
            server_ep ! reclaim, c; server_reply ? answer
        fi
    od
}

/* A client: it enables tagging on its page (or not), then accesses it; an
 * access faults as the page and the pointer say. */
proctype Client(byte c)
{
    byte n = 0;
    mtype answer;
    if
    :: server_ep ! enable, c; server_reply ? answer
    :: skip
    fi;
    do
    :: n < ACCESSES && !stopped[c] ->
        n++;
        if
        /* An access through the right pointer to a tagged page: no fault. */
        :: page[c] == tagged -> skip
        /* The same page, through a stale pointer: a tag-check fault. */
        :: page[c] == tagged -> faulting[c] = true; fault_ep ! c, tag_check
        /* A page awaiting its tags: a permission fault lazy tagging explains. */
        :: page[c] == awaiting_tags -> faulting[c] = true; fault_ep ! c, lazy
        /* A permission fault on a page already tagged (a write where the
         * page is read-only, say): the same DFSC, but nothing to resolve. */
        :: page[c] == tagged -> faulting[c] = true; fault_ep ! c, lazy
        /* A page never allocated: a fault lazy tagging does not explain. */
        :: page[c] == unmapped -> faulting[c] = true; fault_ep ! c, other
        fi;
        if
        :: faulting[c] ->
            fault_reply[c] ? answer;
            faulting[c] = false;
            if
            :: answer == resume ->
                /* Resumed only with its page mapped tagged, in answer to
                 * the fault it took. */
                assert(page[c] == tagged && just_tagged[c]);
                just_tagged[c] = false;
                resumed_tagged[c] = true
            :: answer == stop ->
                /* Stopped mid-way: it runs no more. */
                stopped[c] = true
            fi
        :: else -> skip
        fi
    :: n == ACCESSES || stopped[c] -> break
    od
}

init {
    byte c;
    atomic {
        for (c : 0 .. CLIENTS - 1) {
            page[c] = unmapped;
            run Client(c)
        }
    }
}

/* Every client that was stopped has its frames reclaimed eventually, and a
 * stopped client is never also resumed afterwards. */
ltl done {
    [] ((stopped[0] -> <> reclaimed[0]) && (stopped[1] -> <> reclaimed[1]))
}
