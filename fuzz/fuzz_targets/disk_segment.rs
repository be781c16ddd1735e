//! Feeds arbitrary bytes to the disk queue's record reader as the contents of a segment file (a
//! torn or corrupt file after a crash, or any garbage): the scan never panics, the good prefix it
//! reports re-encodes to exactly the same bytes, and every payload either decodes to a batch or
//! is refused with an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_core::disk::{codec, record};

fuzz_target!(|data: &[u8]| {
    let (records, end, good) = record::scan(data);
    assert!(good <= data.len());
    assert_eq!(end == record::Read::End, good == data.len());
    let mut again = Vec::with_capacity(good);
    for (offset, payload) in &records {
        assert_eq!(*offset, again.len());
        record::encode(payload, &mut again);
        if let Ok(batch) = codec::decode(payload) {
            // A decoded batch survives another round trip.
            assert_eq!(codec::decode(&codec::encode(&batch)).ok(), Some(batch));
        }
    }
    assert_eq!(&again[..], &data[..good]);
    // Reading at any offset (a record reference into a damaged file) never panics either.
    for offset in [0, 1, 7, 8, data.len() / 2, data.len(), data.len() + 1] {
        let _ = record::next(data, offset);
    }
});
