//! The client table parser on arbitrary bytes (the server, the fault
//! handler and every client parse it): a typed error or a table whose
//! entries obey its rules, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(table) = tagloan_proto::ClientTable::parse(data) {
        assert!(table.clients.len() <= tagloan_proto::MAX_TABLE_CLIENTS);
        for client in &table.clients {
            assert!(client.window_pages > 0);
        }
    }
});
