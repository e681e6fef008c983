//! The protocol in C: `include/tagloan.h`, generated from the table
//! (`ops.rs`), never written by hand. `tagloan header` writes it; a test
//! checks that the committed file is what the table gives, and another
//! compiles a C program against it and compares every constant and layout
//! with the Rust values ([`for_each_constant`]).
//!
//! The header is in the style of `microkit.h`: `static inline` functions
//! over `microkit_ppcall` and the message registers, one per operation a
//! client may ask for, each returning the reply's status label and filling
//! a reply struct.

use core::fmt::{self, Write};

use crate::{busy, channels, console, values, ArgumentRule, CallerKind, Op, Status};
use crate::{MAX_MESSAGE_WORDS, MAX_ORDER, MAX_TABLE_CLIENTS, MAX_USER_VADDR, PROTOCOL_VERSION};

/// A C identifier: `prefix` then `name` in capitals, words split by `_`
/// (`not-owner`, `not_owner` and `NotOwner` all give `NOT_OWNER`).
struct Upper<'a>(&'a str, &'a str);

impl fmt::Display for Upper<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)?;
        let mut previous_lower = false;
        for c in self.1.chars() {
            if c.is_ascii_uppercase() && previous_lower {
                f.write_char('_')?;
            }
            previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            f.write_char(match c {
                '-' => '_',
                c => c.to_ascii_uppercase(),
            })?;
        }
        Ok(())
    }
}

/// Every constant of the C header and its value, in the header's order:
/// `f(name, value)`. The C side prints the same list (offsets included) for
/// the comparison test.
pub fn for_each_constant(f: &mut dyn FnMut(&dyn fmt::Display, u64)) {
    f(&"TAGLOAN_PROTOCOL_VERSION", PROTOCOL_VERSION);
    f(&"TAGLOAN_MAX_MESSAGE_WORDS", MAX_MESSAGE_WORDS as u64);
    f(&"TAGLOAN_MAX_ORDER", u64::from(MAX_ORDER));
    f(&"TAGLOAN_MAX_USER_VADDR", MAX_USER_VADDR);
    f(&"TAGLOAN_MAX_TABLE_CLIENTS", MAX_TABLE_CLIENTS as u64);
    f(
        &"TAGLOAN_CHANNEL_TO_SERVER",
        u64::from(channels::CLIENT_TO_SERVER),
    );
    f(
        &"TAGLOAN_CHANNEL_TO_SUPERVISOR",
        u64::from(channels::CLIENT_TO_SUPERVISOR),
    );
    f(&"TAGLOAN_CHANNEL_DONE", u64::from(channels::CLIENT_DONE));
    f(&"TAGLOAN_CONSOLE_LABEL", console::LABEL);
    f(&"TAGLOAN_CONSOLE_MAX_WORDS", console::MAX_WORDS as u64);
    f(&"TAGLOAN_SPEC_ORDER_MASK", values::SPEC_ORDER_MASK);
    f(&"TAGLOAN_SPEC_TAGGED", values::SPEC_TAGGED);
    f(&"TAGLOAN_SPEC_PINNED", values::SPEC_PINNED);
    f(&"TAGLOAN_SPEC_CONTIGUOUS", values::SPEC_CONTIGUOUS);
    f(&"TAGLOAN_BUSY_PINNED", busy::PINNED);
    f(
        &"TAGLOAN_BUSY_DEFERRED_STORE_FULL",
        busy::DEFERRED_STORE_FULL,
    );
    for status in Status::ALL {
        f(&Upper("TAGLOAN_STATUS_", status.name()), status as u64);
    }
    for rule in ArgumentRule::ALL {
        let mut name = heapless::String::<32>::new();
        let _ = write!(name, "{rule:?}");
        f(&Upper("TAGLOAN_RULE_", name.as_str()), rule as u64);
    }
    for op in Op::ALL {
        f(&Upper("TAGLOAN_OP_", op.name()), *op as u64);
        let mut words = heapless::String::<48>::new();
        let _ = write!(words, "{}_request_words", op.name());
        f(
            &Upper("TAGLOAN_", words.as_str()),
            op.request_words() as u64,
        );
        // Reply structs exist for the clients' operations.
        if op.caller() != CallerKind::Client {
            continue;
        }
        for (i, word) in op.reply_layout().iter().enumerate() {
            let mut name = heapless::String::<64>::new();
            let _ = write!(name, "{}_reply_{word}_offset", op.name());
            f(&Upper("TAGLOAN_", name.as_str()), (i * 8) as u64);
        }
    }
}

/// Writes `include/tagloan.h`.
pub fn write_c_header(out: &mut dyn Write) -> fmt::Result {
    for line in [
        "/*",
        " * tagloan.h: the client API of the tagloan memory server, in C.",
        " *",
        " * GENERATED from the protocol table (crates/proto/src/ops.rs) by",
        " * `tagloan header`; do not edit. A test keeps it equal to the table.",
        " *",
        " * Each function makes one protected procedure call on `ch` (the",
        " * client's channel to the server, TAGLOAN_CHANNEL_TO_SERVER), returns",
        " * the reply's status (TAGLOAN_STATUS_*), and on TAGLOAN_STATUS_OK",
        " * fills `reply`. On a refusal, tagloan_detail(0) and tagloan_detail(1)",
        " * are its two detail words.",
        " */",
        "#pragma once",
        "",
        "#include <stdint.h>",
        "#include <microkit.h>",
        "",
    ] {
        writeln!(out, "{line}")?;
    }
    let mut result = Ok(());
    for_each_constant(&mut |name, value| {
        if result.is_ok() {
            result = writeln!(out, "#define {name} {value:#x}ull");
        }
    });
    result?;
    out.write_str(
        "\n/* The `alloc` spec word: 2^order pages, with flags. */\n\
         #define TAGLOAN_SPEC(order, flags) ((uint64_t)(order) | (uint64_t)(flags))\n\n\
         /* A refusal's detail word `i` (0 or 1), right after the call. */\n\
         static inline uint64_t tagloan_detail(int i)\n{\n    return microkit_mr_get((seL4_Uint8)i);\n}\n",
    )?;
    for op in Op::ALL
        .iter()
        .filter(|op| op.caller() == CallerKind::Client)
    {
        let name = op.name();
        let reply = op.reply_layout();
        out.write_str("\n")?;
        if !reply.is_empty() {
            writeln!(out, "typedef struct {{")?;
            for word in reply {
                writeln!(out, "    uint64_t {word};")?;
            }
            writeln!(out, "}} tagloan_{name}_reply;\n")?;
        }
        write!(
            out,
            "static inline uint64_t tagloan_{name}(microkit_channel ch"
        )?;
        for word in &op.request_layout()[1..] {
            write!(out, ", uint64_t {word}")?;
        }
        if !reply.is_empty() {
            write!(out, ", tagloan_{name}_reply *reply")?;
        }
        out.write_str(")\n{\n    microkit_mr_set(0, TAGLOAN_PROTOCOL_VERSION);\n")?;
        for (i, word) in op.request_layout().iter().enumerate().skip(1) {
            writeln!(out, "    microkit_mr_set({i}, {word});")?;
        }
        writeln!(
            out,
            "    microkit_msginfo info = microkit_ppcall(ch, microkit_msginfo_new({}, {}));",
            Upper("TAGLOAN_OP_", name),
            op.request_words()
        )?;
        out.write_str("    uint64_t status = microkit_msginfo_get_label(info);\n")?;
        if !reply.is_empty() {
            writeln!(
                out,
                "    if (status == TAGLOAN_STATUS_OK && microkit_msginfo_get_count(info) == {} && reply) {{",
                reply.len()
            )?;
            for (i, word) in reply.iter().enumerate() {
                writeln!(out, "        reply->{word} = microkit_mr_get({i});")?;
            }
            out.write_str("    }\n")?;
        }
        out.write_str("    return status;\n}\n")?;
    }
    Ok(())
}
