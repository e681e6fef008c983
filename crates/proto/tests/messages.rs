//! The protocol: round trips, every malformed-message rule, the client table,
//! and a decode campaign over random and mutated messages.

use tagloan_proto::*;

fn all_requests() -> Vec<Request> {
    let flags = [
        AllocFlags::default(),
        AllocFlags {
            tagged: true,
            pinned: true,
            contiguous: true,
        },
        AllocFlags {
            tagged: true,
            ..AllocFlags::default()
        },
    ];
    let mut requests = vec![
        Request::Free { vaddr: 0x4000_0000 },
        Request::EnableTagging {
            vaddr: 0x4000_0000,
            pages: 3,
        },
        Request::DisableTagging {
            vaddr: MAX_USER_VADDR,
            pages: u32::MAX,
        },
        Request::Pin { vaddr: 0 },
        Request::Unpin { vaddr: 0x1000 },
        Request::Query { vaddr: 0x4000_1000 },
        Request::Stats {},
        Request::ResolveFault {
            client: 3,
            vaddr: 0x4000_2000,
            kind: FaultKind::Access,
        },
        Request::ResolveFault {
            client: 15,
            vaddr: 0x4000_2010,
            kind: FaultKind::TagCheck,
        },
        Request::ReclaimClient { client: 0 },
    ];
    for order in [0, 5, MAX_ORDER] {
        for f in flags {
            requests.push(Request::Alloc {
                vaddr: 0x4000_0000,
                spec: AllocSpec { order, flags: f },
            });
        }
    }
    requests
}

fn encode(request: &Request) -> (u64, Vec<u64>) {
    let mut words = [0u64; MAX_MESSAGE_WORDS];
    let (label, count) = request.encode_unchecked(&mut words);
    (label, words[..count].to_vec())
}

#[test]
fn every_request_round_trips() {
    for request in all_requests() {
        let (label, words) = encode(&request);
        assert_eq!(words.len(), request.op().request_words());
        assert_eq!(Request::decode(label, &words), Ok(request), "{request:?}");
        assert_eq!(request.validate(), Ok(()));
    }
}

#[test]
fn each_malformation_gets_its_typed_error() {
    let (label, words) = encode(&Request::Alloc {
        vaddr: 0x4000_0000,
        spec: AllocSpec::order(2),
    });
    assert_eq!(
        Request::decode(99, &words),
        Err(DecodeError::UnknownLabel { label: 99 })
    );
    assert_eq!(
        Request::decode(label, &words[..2]),
        Err(DecodeError::WrongCount {
            expected: 3,
            found: 2
        })
    );
    let mut bad = words.clone();
    bad[0] = 2;
    assert_eq!(
        Request::decode(label, &bad),
        Err(DecodeError::BadVersion { found: 2 })
    );
    bad[0] = PROTOCOL_VERSION | 1 << 40;
    assert_eq!(
        Request::decode(label, &bad),
        Err(DecodeError::ReservedBits {
            word: 0,
            bits: 1 << 40
        })
    );
    let mut bad = words.clone();
    bad[2] |= 1 << 20;
    assert_eq!(
        Request::decode(label, &bad),
        Err(DecodeError::ReservedBits {
            word: 2,
            bits: 1 << 20
        })
    );
    let mut bad = words.clone();
    bad[2] = 10;
    assert_eq!(
        Request::decode(label, &bad),
        Err(DecodeError::OutOfRange { word: 2, value: 10 })
    );
    let mut bad = words.clone();
    bad[1] = 1 << 48;
    assert_eq!(
        Request::decode(label, &bad),
        Err(DecodeError::OutOfRange {
            word: 1,
            value: 1 << 48
        })
    );
    // A zero page count and a client beyond the table are out of range.
    let (label, mut words) = encode(&Request::EnableTagging {
        vaddr: 0x4000_0000,
        pages: 1,
    });
    words[2] = 0;
    assert_eq!(
        Request::decode(label, &words),
        Err(DecodeError::OutOfRange { word: 2, value: 0 })
    );
    let (label, mut words) = encode(&Request::ReclaimClient { client: 1 });
    words[1] = MAX_TABLE_CLIENTS as u64;
    assert!(matches!(
        Request::decode(label, &words),
        Err(DecodeError::OutOfRange { word: 1, .. })
    ));
    for error in [
        DecodeError::UnknownLabel { label: 99 },
        DecodeError::BadVersion { found: 2 },
    ] {
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn replies_round_trip_and_errors_carry_details() {
    let responses = [
        (
            Op::Alloc,
            Response::Alloc(Allocated {
                pages: 4,
                first_frame: 0x80123,
                in_tag_storage: true,
            }),
        ),
        (Op::Free, Response::Free(Freed { pages: 8 })),
        (Op::Pin, Response::Pin(())),
        (
            Op::Stats,
            Response::Stats(StatsReply {
                metadata_total: 1024,
                metadata_free: 10,
                lent: 900,
                reserved_blocks: 3,
                migrations: 7,
                recalls: 2,
                failures: 1,
                data_total: 32768,
                data_free: 0,
            }),
        ),
        (
            Op::ResolveFault,
            Response::ResolveFault(FaultReply::Tagged {
                migrated: true,
                deferred: false,
            }),
        ),
        (
            Op::ResolveFault,
            Response::ResolveFault(FaultReply::TagCheck { memory_tag: 0xa }),
        ),
        (
            Op::ReclaimClient,
            Response::ReclaimClient(Reclaimed { frames: 77 }),
        ),
    ];
    for (op, response) in responses {
        let mut words = [0u64; MAX_MESSAGE_WORDS];
        let count = response.encode(&mut words);
        assert_eq!(
            Response::decode(op, Status::Ok as u64, &words[..count]),
            Ok(Ok(response))
        );
    }
    let error = Error {
        status: Status::NoMemory,
        detail: [512, 0],
    };
    let mut words = [0u64; 2];
    let (label, count) = error.encode(&mut words);
    assert_eq!(
        Response::decode(Op::Alloc, label, &words[..count]),
        Ok(Err(Error {
            status: Status::NoMemory,
            detail: [512, 0]
        }))
    );
    assert_eq!(
        Response::decode(Op::Alloc, 77, &[]),
        Err(DecodeError::UnknownStatus { label: 77 })
    );
}

/// splitmix64: a small deterministic generator for the campaign.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn interesting(rng: &mut Rng) -> u64 {
    match rng.below(6) {
        0 => rng.next(),
        1 => rng.below(32),
        2 => 1 << rng.below(64),
        3 => PROTOCOL_VERSION,
        4 => 0x4000_0000 + rng.below(1 << 20) * 4096,
        _ => u64::MAX - rng.below(4),
    }
}

#[test]
fn decoding_random_and_mutated_messages_never_panics_and_never_yields_an_invalid_request() {
    let seed = std::env::var("TAGLOAN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7a91);
    let mut rng = Rng(seed);
    let valid = all_requests();
    let (mut accepted, mut rejected) = (0u64, 0u64);
    const CASES: u64 = 100_000;
    for case in 0..CASES {
        let (label, words) = if case % 2 == 0 {
            // Random: any label near the real ones, any count, any words.
            let label = if rng.below(4) == 0 {
                rng.next()
            } else {
                rng.below(20)
            };
            let count = rng.below(MAX_MESSAGE_WORDS as u64 + 2) as usize;
            (label, (0..count).map(|_| interesting(&mut rng)).collect())
        } else {
            // Mutated: a valid message with one to three changes.
            let base = valid[rng.below(valid.len() as u64) as usize];
            let (mut label, mut words) = encode(&base);
            for _ in 0..1 + rng.below(3) {
                match rng.below(5) {
                    0 => label ^= 1 << rng.below(6),
                    1 => {
                        words.pop();
                    }
                    2 => words.push(interesting(&mut rng)),
                    _ if !words.is_empty() => {
                        let i = rng.below(words.len() as u64) as usize;
                        words[i] ^= 1 << rng.below(64);
                    }
                    _ => {}
                }
            }
            (label, words)
        };
        match Request::decode(label, &words) {
            Ok(request) => {
                accepted += 1;
                assert_eq!(request.validate(), Ok(()), "{request:?}");
                assert_eq!(encode(&request), (label, words.clone()), "{request:?}");
            }
            Err(error) => {
                rejected += 1;
                assert!(!error.to_string().is_empty());
            }
        }
        // Replies are decoded by clients: the same campaign must hold there.
        let op = Op::ALL[rng.below(Op::ALL.len() as u64) as usize];
        let _ = Response::decode(op, label % 12, &words);
    }
    assert_eq!(accepted + rejected, CASES);
    assert!(
        accepted > 1_000,
        "the campaign must exercise valid messages too"
    );
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "proto decode campaign: {CASES} messages (seed {seed:#x}): {accepted} decoded and re-encoded exactly, {rejected} rejected with a typed error, 0 panics"
    );
}

const TABLE: &str = "\
# a comment
fault_handler fault_handler channel=0
client client_a channel=1 child=1 window=0x40000000 pages=1024 quota=512
client client_b channel=2 child=2 window=0x50000000 pages=16 quota=16   # trailing
";

#[test]
fn the_client_table_parses_and_is_looked_up_by_channel_child_and_name() {
    let mut bytes = TABLE.as_bytes().to_vec();
    bytes.resize(4096, 0); // a prefilled region pads with zeroes
    let table = ClientTable::parse(&bytes).unwrap();
    assert_eq!(table.fault_handler.as_ref().unwrap().1, 0);
    assert_eq!(table.clients.len(), 2);
    assert_eq!(table.by_channel(2).unwrap().0, 1);
    assert_eq!(table.by_child(1).unwrap().1.name, "client_a");
    assert_eq!(table.by_name("client_b").unwrap().1.window_pages, 16);
    assert_eq!(table.quota_total(), 528);
}

#[test]
fn client_table_errors_name_the_line_and_the_rule() {
    let cases = [
        ("client a channel=1 child=1 window=0x1001 pages=1 quota=1", "not 4 KiB aligned"),
        ("client a channel=1 child=1 window=0x1000 pages=1 quota=2", "quota is above"),
        ("client a channel=99 child=1 window=0x1000 pages=1 quota=1", "0 to 61"),
        // Microkit's channel ids stop at 61 (MICROKIT_MAX_CHANNELS is 62).
        ("client a channel=62 child=1 window=0x1000 pages=1 quota=1", "0 to 61"),
        ("client a channel=1 child=62 window=0x1000 pages=1 quota=1", "0 to 61"),
        // Review defect 4: a child id's done channel is 32 + id, so ids of
        // 30 and more run past channel 61 or onto another child's channel
        // (33 is child 1's done channel); 0 is the fault handler's channel
        // to the server.
        ("client a channel=1 child=33 window=0x1000 pages=1 quota=1", "child ids are 1 to 29"),
        ("client a channel=1 child=30 window=0x1000 pages=1 quota=1", "child ids are 1 to 29"),
        ("client a channel=1 child=0 window=0x1000 pages=1 quota=1", "child ids are 1 to 29"),
        ("client a channel=1 child=1 window=0x1000 pages=1", "`quota=` is missing"),
        ("client a channel=1 child=1 window=zz pages=1 quota=1", "not a number"),
        ("client a channel=1 child=1 window=0x1000 pages=1 quota=1 colour=red", "unknown key"),
        ("server x", "starts with `client`"),
        (
            "client a channel=1 child=1 window=0xfffffffffffff000 pages=1 quota=1",
            "leaves the 40-bit user address space",
        ),
        (
            "client a channel=1 child=1 window=0x1000 pages=4 quota=1\nclient b channel=2 child=2 window=0x3000 pages=1 quota=1",
            "line 2: the window overlaps the one on line 1",
        ),
        (
            "client a channel=1 child=1 window=0x1000 pages=1 quota=1\nclient b channel=1 child=2 window=0x9000 pages=1 quota=1",
            "channel id is already used",
        ),
    ];
    for (text, message) in cases {
        let error = ClientTable::parse(text.as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains(message),
            "{text:?}: got `{error}`, want `{message}`"
        );
    }
}
