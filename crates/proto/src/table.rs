//! The client table: which PDs are clients, how the server and the fault
//! handler know them, and each one's heap window and quota.
//!
//! Microkit's SDF has no element for a heap window that a server fills at run
//! time, so `system.xml` declares a memory region `client_table` whose
//! `prefill_path` is a small text file. The server and the fault handler map
//! it read-only and parse it at `init`; `tagloan check` parses the same file.
//!
//! ```text
//! # comment
//! fault_handler fault_handler channel=0
//! client client_bulk channel=2 child=2 window=0x60000000 pages=40960 quota=36864
//! ```
//!
//! `channel` is the id of the channel's end at the server (the badge the
//! server sees); `child` is the child id under the fault handler.

use heapless::{String, Vec};

/// Most clients one table declares.
pub const MAX_TABLE_CLIENTS: usize = 16;
/// Longest PD name (Microkit's limit).
pub const MAX_NAME: usize = 64;
const PAGE: u64 = 4096;

/// One client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientEntry {
    /// The PD's name in `system.xml`.
    pub name: String<MAX_NAME>,
    /// The channel id at the server's end.
    pub channel: u8,
    /// The child id under the fault handler.
    pub child: u8,
    /// First address of the heap window.
    pub window_base: u64,
    /// Pages in the window.
    pub window_pages: u32,
    /// Most frames held at once.
    pub quota_frames: u32,
    /// The entry point of its program image, for `pd_restart` (key
    /// `entry=`; `make image` writes it from the ELF). Without it, Microkit's
    /// conventional 0x200000 (its C PDs' `_start`).
    pub entry_point: Option<u64>,
}

/// Where a Microkit PD's program starts when its image gives no other entry:
/// libmicrokit's C PDs link `_start` there.
pub const MICROKIT_DEFAULT_ENTRY: u64 = 0x200000;

impl ClientEntry {
    /// The entry point `pd_restart` starts the client at.
    pub fn restart_entry(&self) -> u64 {
        self.entry_point.unwrap_or(MICROKIT_DEFAULT_ENTRY)
    }

    /// The heap window.
    pub const fn window(&self) -> tagloan_mte::Window {
        tagloan_mte::Window {
            base: self.window_base,
            pages: self.window_pages,
        }
    }
}

/// The parsed table. The client's index is its pool client id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTable {
    /// The fault handler's PD name and its channel id at the server.
    pub fault_handler: Option<(String<MAX_NAME>, u8)>,
    pub clients: Vec<ClientEntry, MAX_TABLE_CLIENTS>,
}

/// A table error: the 1-based line, and the rule broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableError {
    pub line: usize,
    pub rule: TableRule,
}

/// The rules of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableRule {
    NotText,
    UnknownDirective,
    MissingName,
    NameTooLong,
    MissingKey(&'static str),
    UnknownKey,
    BadNumber(&'static str),
    TooManyClients,
    DuplicateName,
    DuplicateChannel,
    DuplicateChild,
    ChannelOutOfRange,
    /// A child id whose done channel (`FAULT_HANDLER_DONE_BASE` + child)
    /// would be past Microkit's last channel id, or another client's
    /// supervisor channel, or which is the fault handler's channel to the
    /// server.
    ChildOutOfRange,
    WindowMisaligned,
    WindowEmpty,
    WindowOutOfRange,
    WindowsOverlap {
        other_line: usize,
    },
    QuotaZero,
    QuotaAboveWindow,
    TwoFaultHandlers,
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "client table line {}: ", self.line)?;
        match self.rule {
            TableRule::NotText => f.write_str("the table is not UTF-8 text"),
            TableRule::UnknownDirective => {
                f.write_str("a line starts with `client` or `fault_handler`")
            }
            TableRule::MissingName => f.write_str("the PD name is missing"),
            TableRule::NameTooLong => write!(f, "PD names have at most {MAX_NAME} bytes"),
            TableRule::MissingKey(key) => write!(f, "`{key}=` is missing"),
            TableRule::UnknownKey => f.write_str(
                "unknown key; a client has channel=, child=, window=, pages=, quota= and optionally entry=",
            ),
            TableRule::BadNumber(key) => {
                write!(f, "`{key}=` is not a number (decimal, or hex with 0x)")
            }
            TableRule::TooManyClients => write!(f, "at most {MAX_TABLE_CLIENTS} clients"),
            TableRule::DuplicateName => f.write_str("this PD is already listed"),
            TableRule::DuplicateChannel => f.write_str("this server channel id is already used"),
            TableRule::DuplicateChild => f.write_str("this child id is already used"),
            TableRule::ChannelOutOfRange => write!(
                f,
                "channel and child ids are 0 to {} (Microkit)",
                tagloan_microkit::MAX_CHANNEL_ID
            ),
            TableRule::ChildOutOfRange => write!(
                f,
                "child ids are 1 to {}: the fault handler hears a client's `done` on channel {} + its child id, and Microkit's channel ids stop at {}; its channel {} is the memory server's",
                MAX_CLIENT_CHILD_ID,
                crate::channels::FAULT_HANDLER_DONE_BASE,
                tagloan_microkit::MAX_CHANNEL_ID,
                crate::channels::FAULT_HANDLER_TO_SERVER
            ),
            TableRule::WindowMisaligned => f.write_str("the window base is not 4 KiB aligned"),
            TableRule::WindowEmpty => f.write_str("the window has no pages"),
            TableRule::WindowOutOfRange => {
                f.write_str("the window leaves the 40-bit user address space (below 0x10000000000)")
            }
            TableRule::WindowsOverlap { other_line } => {
                write!(f, "the window overlaps the one on line {other_line}")
            }
            TableRule::QuotaZero => f.write_str("the quota is zero"),
            TableRule::QuotaAboveWindow => {
                f.write_str("the quota is above the window's pages, which it can never use")
            }
            TableRule::TwoFaultHandlers => f.write_str("only one fault_handler line is allowed"),
        }
    }
}

fn number(key: &'static str, text: &str) -> Result<u64, TableRule> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse::<u64>(),
    };
    parsed.map_err(|_| TableRule::BadNumber(key))
}

fn name(text: Option<&str>) -> Result<String<MAX_NAME>, TableRule> {
    let text = text.ok_or(TableRule::MissingName)?;
    if text.contains('=') {
        return Err(TableRule::MissingName);
    }
    String::try_from(text).map_err(|_| TableRule::NameTooLong)
}

/// The largest child id: its done channel, `FAULT_HANDLER_DONE_BASE` + id,
/// is Microkit's last channel id, and no child's supervisor channel (its
/// id) reaches the done channels.
pub const MAX_CLIENT_CHILD_ID: u8 =
    tagloan_microkit::MAX_CHANNEL_ID as u8 - crate::channels::FAULT_HANDLER_DONE_BASE;

fn id(key: &'static str, text: &str) -> Result<u8, TableRule> {
    match number(key, text)? {
        v if v <= tagloan_microkit::MAX_CHANNEL_ID as u64 => Ok(v as u8),
        _ => Err(TableRule::ChannelOutOfRange),
    }
}

impl ClientTable {
    /// Parses a table. Trailing NUL bytes (the rest of a prefilled region)
    /// are ignored.
    pub fn parse(bytes: &[u8]) -> Result<ClientTable, TableError> {
        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        let text = core::str::from_utf8(&bytes[..end]).map_err(|e| TableError {
            line: 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count(),
            rule: TableRule::NotText,
        })?;
        let mut table = ClientTable {
            fault_handler: None,
            clients: Vec::new(),
        };
        let mut lines: Vec<usize, MAX_TABLE_CLIENTS> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let fail = |rule| TableError { line, rule };
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            let mut fields = content.split_whitespace();
            match fields.next() {
                Some("fault_handler") => {
                    let pd = name(fields.next()).map_err(fail)?;
                    let mut channel = None;
                    for field in fields {
                        match field.split_once('=') {
                            Some(("channel", v)) => channel = Some(id("channel", v).map_err(fail)?),
                            _ => return Err(fail(TableRule::UnknownKey)),
                        }
                    }
                    if table.fault_handler.is_some() {
                        return Err(fail(TableRule::TwoFaultHandlers));
                    }
                    let channel = channel.ok_or(fail(TableRule::MissingKey("channel")))?;
                    if table.clients.iter().any(|c| c.channel == channel) {
                        return Err(fail(TableRule::DuplicateChannel));
                    }
                    table.fault_handler = Some((pd, channel));
                }
                Some("client") => {
                    let entry = parse_client(fields).map_err(fail)?;
                    check_client(&table, &lines, &entry).map_err(fail)?;
                    table
                        .clients
                        .push(entry)
                        .map_err(|_| fail(TableRule::TooManyClients))?;
                    lines
                        .push(line)
                        .map_err(|_| fail(TableRule::TooManyClients))?;
                }
                _ => return Err(fail(TableRule::UnknownDirective)),
            }
        }
        Ok(table)
    }

    /// The client served on server channel `channel`.
    pub fn by_channel(&self, channel: u8) -> Option<(u8, &ClientEntry)> {
        self.clients
            .iter()
            .enumerate()
            .find(|(_, c)| c.channel == channel)
            .map(|(i, c)| (i as u8, c))
    }

    /// The client with child id `child`.
    pub fn by_child(&self, child: u8) -> Option<(u8, &ClientEntry)> {
        self.clients
            .iter()
            .enumerate()
            .find(|(_, c)| c.child == child)
            .map(|(i, c)| (i as u8, c))
    }

    /// The client named `name`.
    pub fn by_name(&self, name: &str) -> Option<(u8, &ClientEntry)> {
        self.clients
            .iter()
            .enumerate()
            .find(|(_, c)| c.name == name)
            .map(|(i, c)| (i as u8, c))
    }

    /// Sum of the quotas.
    pub fn quota_total(&self) -> u64 {
        self.clients.iter().map(|c| u64::from(c.quota_frames)).sum()
    }
}

fn parse_client<'t>(fields: impl Iterator<Item = &'t str>) -> Result<ClientEntry, TableRule> {
    let mut fields = fields.peekable();
    let pd = name(fields.next())?;
    let (mut channel, mut child, mut window, mut pages, mut quota) = (None, None, None, None, None);
    let mut entry_point = None;
    for field in fields {
        match field.split_once('=') {
            Some(("channel", v)) => channel = Some(id("channel", v)?),
            Some(("child", v)) => child = Some(id("child", v)?),
            Some(("window", v)) => window = Some(number("window", v)?),
            Some(("pages", v)) => pages = Some(number("pages", v)?),
            Some(("quota", v)) => quota = Some(number("quota", v)?),
            Some(("entry", v)) => entry_point = Some(number("entry", v)?),
            _ => return Err(TableRule::UnknownKey),
        }
    }
    let window_base = window.ok_or(TableRule::MissingKey("window"))?;
    let pages = pages.ok_or(TableRule::MissingKey("pages"))?;
    let quota = quota.ok_or(TableRule::MissingKey("quota"))?;
    let window_pages = u32::try_from(pages).map_err(|_| TableRule::WindowOutOfRange)?;
    let quota_frames = u32::try_from(quota).map_err(|_| TableRule::QuotaAboveWindow)?;
    if !window_base.is_multiple_of(PAGE) {
        return Err(TableRule::WindowMisaligned);
    }
    if window_pages == 0 {
        return Err(TableRule::WindowEmpty);
    }
    let window = tagloan_mte::Window {
        base: window_base,
        pages: window_pages,
    };
    if window
        .end()
        .is_none_or(|end| end > crate::MAX_USER_VADDR + 1)
    {
        return Err(TableRule::WindowOutOfRange);
    }
    if quota_frames == 0 {
        return Err(TableRule::QuotaZero);
    }
    if quota_frames > window_pages {
        return Err(TableRule::QuotaAboveWindow);
    }
    let child = child.ok_or(TableRule::MissingKey("child"))?;
    if child == crate::channels::FAULT_HANDLER_TO_SERVER || child > MAX_CLIENT_CHILD_ID {
        return Err(TableRule::ChildOutOfRange);
    }
    Ok(ClientEntry {
        name: pd,
        channel: channel.ok_or(TableRule::MissingKey("channel"))?,
        child,
        window_base,
        window_pages,
        quota_frames,
        entry_point,
    })
}

fn check_client(
    table: &ClientTable,
    lines: &[usize],
    entry: &ClientEntry,
) -> Result<(), TableRule> {
    for (other, &line) in table.clients.iter().zip(lines) {
        if other.name == entry.name {
            return Err(TableRule::DuplicateName);
        }
        if other.channel == entry.channel {
            return Err(TableRule::DuplicateChannel);
        }
        if other.child == entry.child {
            return Err(TableRule::DuplicateChild);
        }
        if other.window().overlaps_window(&entry.window()) {
            return Err(TableRule::WindowsOverlap { other_line: line });
        }
    }
    if table
        .fault_handler
        .as_ref()
        .is_some_and(|(_, channel)| *channel == entry.channel)
    {
        return Err(TableRule::DuplicateChannel);
    }
    Ok(())
}
