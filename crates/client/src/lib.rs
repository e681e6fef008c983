//! The client side of the tagloan protocol: a typed handle on the memory
//! server for client PDs (and the fault handler).
//!
//! ```ignore
//! use tagloan_client::{Api, Server, AllocSpec};
//! let buffer = Server::for_client().alloc(env, vaddr, AllocSpec::order(0))??;
//! ```
//!
//! [`Server`] is the protocol's [`Transport`] over a Microkit channel; the
//! methods (`alloc`, `free`, ..., one per operation) are the protocol's
//! generated [`Api`], so import it. Each call returns `Err(Stopped)` if this
//! PD was stopped while blocked, `Ok(Err(error))` for a refusal (typed:
//! status and details), and `Ok(Ok(reply))` on success. A reply that does
//! not decode is reported as `Status::Malformed` with the decode error's
//! detail words.
#![no_std]

pub use tagloan_microkit::{Channel, Env, MessageInfo, Stopped};
pub use tagloan_proto::{
    channels, console, AllocFlags, AllocSpec, Allocated, Api, ClientEntry, ClientId, ClientTable,
    Error, FaultKind, FaultReply, Freed, Op, PageInfo, PageState, Reclaimed, Request, Response,
    StatsReply, Status, Transport, MAX_MESSAGE_WORDS, MAX_TABLE_CLIENTS, MICROKIT_DEFAULT_ENTRY,
    PROTOCOL_VERSION,
};

/// The result of one call.
pub type Reply<T> = Result<Result<T, Error>, Stopped>;

/// A handle on the memory server through one channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Server {
    channel: Channel,
}

impl Server {
    /// The server behind `channel`.
    pub const fn new(channel: Channel) -> Server {
        Server { channel }
    }

    /// The client's usual handle (channel [`channels::CLIENT_TO_SERVER`]).
    pub const fn for_client() -> Server {
        Server::new(Channel::new(channels::CLIENT_TO_SERVER as usize))
    }

    /// Sends raw words under `label` and returns the raw reply: for clients
    /// that test the server's defences (the rogue example).
    pub fn call_raw(
        &self,
        env: &mut dyn Env,
        label: u64,
        words: &[u64],
    ) -> Result<(MessageInfo, [u64; MAX_MESSAGE_WORDS]), Stopped> {
        for (i, w) in words.iter().enumerate() {
            env.set_mr(i, *w);
        }
        let reply = env.ppcall(self.channel, MessageInfo::new(label, words.len()))?;
        let mut out = [0u64; MAX_MESSAGE_WORDS];
        for (i, w) in out.iter_mut().enumerate().take(reply.count()) {
            *w = env.mr(i);
        }
        Ok((reply, out))
    }
}

impl Transport for Server {
    type Context<'c> = dyn Env + 'c;
    type Stopped = Stopped;

    fn transact(&self, env: &mut (dyn Env + '_), request: Request) -> Reply<Response> {
        let mut words = [0u64; MAX_MESSAGE_WORDS];
        let (label, count) = request.encode_unchecked(&mut words);
        let (info, out) = self.call_raw(env, label, &words[..count])?;
        let count = info.count().min(MAX_MESSAGE_WORDS);
        Ok(
            match Response::decode(request.op(), info.label(), &out[..count]) {
                Ok(result) => result,
                Err(decode) => Err(Error::malformed(decode)),
            },
        )
    }
}

/// This PD's entry in the client table (mapped as region `client_table`).
pub fn my_entry(env: &dyn Env) -> Option<(u8, ClientEntry)> {
    let table = ClientTable::parse(env.region("client_table")?).ok()?;
    let (id, entry) = table.by_name(env.pd_name())?;
    Some((id, entry.clone()))
}

/// A u64 load through a (tagged) pointer.
pub fn load_u64(env: &mut dyn Env, pointer: u64) -> Result<u64, Stopped> {
    let mut bytes = [0u8; 8];
    env.load(pointer, &mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// A u64 store through a (tagged) pointer.
pub fn store_u64(env: &mut dyn Env, pointer: u64, value: u64) -> Result<(), Stopped> {
    env.store(pointer, &value.to_le_bytes())
}

/// What a unit of a client's work says about the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// More to do: ask to be paced again.
    More,
    /// Finished: stay idle.
    Done,
}

/// A client program in units of work, run by [`Paced`].
pub trait Worker {
    /// (Re)starts the program: clear every state, as after `pd_restart`.
    fn start(&mut self, env: &mut dyn Env);
    /// One unit of work.
    fn step(&mut self, env: &mut dyn Env) -> Result<Progress, Stopped>;
    /// The program's counters, by name (read by whoever observes the PD:
    /// the simulator's report, a test).
    fn counters(&self, report: &mut dyn FnMut(&str, u64));
}

/// Runs a [`Worker`] as a Microkit PD paced by its supervisor: `init` starts
/// it and announces it; each notification from the supervisor runs one unit
/// and yields back. Clients of equal priority so interleave, on seL4 (each
/// yield is a notification) and in the simulator (which picks among them
/// with its seed).
pub struct Paced<W: Worker> {
    pub worker: W,
    steps: u64,
    done: bool,
}

impl<W: Worker> Paced<W> {
    pub const fn new(worker: W) -> Paced<W> {
        Paced {
            worker,
            steps: 0,
            done: false,
        }
    }
}

fn supervisor() -> Channel {
    Channel::new(channels::CLIENT_TO_SUPERVISOR as usize)
}

/// Prints `text` as one whole line through the supervisor (see
/// [`tagloan_proto::console`]).
pub fn console_line(env: &mut dyn Env, text: &str) -> Result<(), Stopped> {
    let mut words = [0u64; tagloan_proto::console::MAX_WORDS];
    let count = tagloan_proto::console::pack(text, &mut words);
    for (i, word) in words[..count].iter().enumerate() {
        env.set_mr(i, *word);
    }
    env.ppcall(
        supervisor(),
        MessageInfo::new(tagloan_proto::console::LABEL, count),
    )?;
    Ok(())
}

/// Reports counters one by one, by name (as [`Worker::counters`] does).
pub type Counters<'a> = &'a dyn Fn(&mut dyn FnMut(&str, u64));

/// One console line of `name: what: counter=value ...`.
pub fn print_counters(env: &mut dyn Env, what: &str, counters: Counters) -> Result<(), Stopped> {
    let mut line = tagloan_microkit::DebugLine::new();
    let _ = core::fmt::Write::write_fmt(&mut line, format_args!("{}: {what}:", env.pd_name()));
    counters(&mut |name, value| {
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!(" {name}={value}"));
    });
    console_line(env, line.as_str())
}

impl<W: Worker> Paced<W> {
    /// The pacing counters and the worker's, by name.
    pub fn counters(&self, report: &mut dyn FnMut(&str, u64)) {
        report("steps", self.steps);
        report("done", u64::from(self.done));
        self.worker.counters(report);
    }
}

impl<W: Worker> tagloan_microkit::Handler for Paced<W> {
    type Error = tagloan_microkit::Infallible;

    fn init(&mut self, env: &mut dyn Env) -> Result<(), Self::Error> {
        self.steps = 0;
        self.done = false;
        self.worker.start(env);
        let mut line = tagloan_microkit::DebugLine::new();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!("{}: started", env.pd_name()));
        if console_line(env, line.as_str()).is_err() {
            // Stopped or restarted while blocked: return at once.
            return Ok(());
        }
        env.notify(supervisor());
        Ok(())
    }

    fn notified(
        &mut self,
        env: &mut dyn Env,
        channels: tagloan_microkit::ChannelSet,
    ) -> Result<(), Self::Error> {
        if !channels.contains(supervisor()) || self.done {
            return Ok(());
        }
        self.steps += 1;
        match self.worker.step(env) {
            Ok(Progress::More) => env.notify(supervisor()),
            Ok(Progress::Done) => {
                self.done = true;
                if print_counters(env, "finished", &|report| self.counters(report)).is_ok() {
                    env.notify(Channel::new(channels::CLIENT_DONE as usize));
                }
            }
            // Stopped or restarted while blocked: return at once.
            Err(Stopped) => {}
        }
        Ok(())
    }
}

/// xorshift64*: a client's own deterministic choices (which object to free).
#[derive(Clone, Copy, Debug)]
pub struct Choice(u64);

impl Choice {
    pub const fn new(seed: u64) -> Choice {
        Choice(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The pattern word a client writes at `vaddr` in generation `generation`.
pub fn pattern(vaddr: u64, generation: u64) -> u64 {
    let mut z = vaddr ^ generation.rotate_left(48) ^ 0x7a91_6c3b_0000_0000;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl<W: Worker + Default> Default for Paced<W> {
    fn default() -> Paced<W> {
        Paced::new(W::default())
    }
}
