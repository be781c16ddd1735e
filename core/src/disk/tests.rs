//! The segmented log on its own: framing, replay after a restart, damaged files, segment
//! deletion, and the batch payload round trip.

use super::*;
use crate::batch::{Batch, Context};
use crate::test_util::gauge_batch;
use std::time::Duration;

fn settings(segment_bytes: u64) -> LogSettings {
    LogSettings {
        segment_bytes,
        fsync: Fsync::Batch,
    }
}

/// A reopened log, the records it replayed, and the damage it found.
type Opened = (Arc<TenantLog>, Vec<(RecordRef, Vec<u8>)>, Vec<Damage>);

fn open(dir: &Path, segment_bytes: u64) -> Opened {
    let mut got = Vec::new();
    let (log, damage) = TenantLog::open(
        dir.to_path_buf(),
        settings(segment_bytes),
        Arc::new(AtomicU64::new(0)),
        |_, at, p| got.push((at, p.to_vec())),
    )
    .unwrap();
    (log, got, damage)
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn record_reader_finds_end_torn_and_corrupt() {
    let mut buf = Vec::new();
    record::encode(b"hello", &mut buf);
    record::encode(b"", &mut buf);
    let (recs, end, good) = record::scan(&buf);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].1, b"hello");
    assert_eq!((end, good), (record::Read::End, buf.len()));
    // Torn: the file ends inside the header, then inside the payload.
    for cut in [3, 10] {
        let (recs, end, good) = record::scan(&buf[..cut]);
        assert!(recs.is_empty());
        assert_eq!((end, good), (record::Read::Torn, 0));
    }
    // A flipped payload byte fails the checksum.
    let mut bad = buf.clone();
    bad[9] ^= 0x40;
    assert_eq!(record::scan(&bad).1, record::Read::Corrupt);
    // An absurd length is corruption, not a huge allocation.
    assert_eq!(record::next(&[0xff; 8], 0), record::Read::Corrupt);
    assert_eq!(record::next(&buf, buf.len() + 5), record::Read::Torn);
}

#[test]
fn appends_replay_in_order_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (log, got, _) = open(dir.path(), 1 << 20);
    assert!(got.is_empty());
    let refs: Vec<RecordRef> = (0..10u8).map(|i| log.append(&[i; 100]).unwrap()).collect();
    log.ack(refs[0]);
    log.ack(refs[1]);
    log.close().unwrap();
    drop(log);
    let (log, got, damage) = open(dir.path(), 1 << 20);
    assert!(damage.is_empty());
    // The cursor skips the two acknowledged records; the rest come back in order.
    let firsts: Vec<u8> = got.iter().map(|(_, p)| p[0]).collect();
    assert_eq!(firsts, (2..10).collect::<Vec<u8>>());
    assert_eq!(log.read(got[0].0).unwrap(), vec![2; 100]);
    // New records go after them, in a new segment.
    let r = log.append(b"new").unwrap();
    assert!(r.segment > got[0].0.segment);
    assert_eq!(log.unacked(), 9);
}

#[test]
fn a_log_emptied_before_a_restart_keeps_its_numbering() {
    let dir = tempfile::tempdir().unwrap();
    // 40-byte segments: each drained segment is deleted at once.
    let (log, _, _) = open(dir.path(), 40);
    for i in 0..3u8 {
        let r = log.append(&[i; 10]).unwrap();
        log.ack(r);
    }
    log.close().unwrap();
    drop(log);
    let (log, got, _) = open(dir.path(), 40);
    assert!(got.is_empty());
    // The drained segment is gone; the cursor points past it.
    assert!(segments(dir.path()).is_empty());
    log.append(b"after the restart").unwrap();
    drop(log);
    // A segment numbered before the cursor would be skipped here.
    let (_, got, _) = open(dir.path(), 40);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, b"after the restart");
}

#[test]
fn out_of_order_acks_are_resent_after_a_crash_not_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(dir.path(), 1 << 20);
    let refs: Vec<RecordRef> = (0..4u8).map(|i| log.append(&[i]).unwrap()).collect();
    log.ack(refs[2]);
    log.close().unwrap();
    let (_, got, _) = open(dir.path(), 1 << 20);
    // Record 2 was acknowledged after the oldest unacknowledged one: at-least-once, it is resent.
    assert_eq!(got.len(), 4);
}

#[test]
fn fully_acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let total = Arc::new(AtomicU64::new(0));
    let (log, _) = TenantLog::open(
        dir.path().into(),
        settings(1000),
        total.clone(),
        |_, _, _| {},
    )
    .unwrap();
    // 300-byte payloads: three records per 1000-byte segment.
    let refs: Vec<RecordRef> = (0..9u8).map(|i| log.append(&[i; 300]).unwrap()).collect();
    assert_eq!(segments(dir.path()).len(), 3);
    assert_eq!(total.load(Ordering::Relaxed), 9 * 308);
    for r in &refs[..3] {
        log.ack(*r);
    }
    assert_eq!(segments(dir.path()).len(), 2);
    assert_eq!(total.load(Ordering::Relaxed), 6 * 308);
    // A partly acknowledged segment stays.
    log.ack(refs[3]);
    log.ack(refs[5]);
    assert_eq!(segments(dir.path()).len(), 2);
    log.ack(refs[4]);
    assert_eq!(segments(dir.path()).len(), 1);
    // The active segment goes too once drained, and the log goes on in a new one.
    for r in &refs[6..] {
        log.ack(*r);
    }
    assert!(segments(dir.path()).is_empty());
    assert_eq!(total.load(Ordering::Relaxed), 0);
    log.append(b"x").unwrap();
    assert_eq!(segments(dir.path()).len(), 1);
}

#[test]
fn a_torn_tail_keeps_the_good_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(dir.path(), 1 << 20);
    for i in 0..5u8 {
        log.append(&[i; 50]).unwrap();
    }
    drop(log);
    let seg = &segments(dir.path())[0];
    let len = std::fs::metadata(seg).unwrap().len();
    // Cut the last record in the middle, as a crash during the write would.
    std::fs::OpenOptions::new()
        .write(true)
        .open(seg)
        .unwrap()
        .set_len(len - 20)
        .unwrap();
    let (log, got, damage) = open(dir.path(), 1 << 20);
    assert_eq!(got.len(), 4);
    assert_eq!(damage.len(), 1);
    assert_eq!(damage[0].kind, "torn");
    assert_eq!(damage[0].offset, 4 * 58);
    assert_eq!(damage[0].bytes, 58 - 20);
    // Appending goes on in a new segment; the old one goes once its good records are delivered.
    let r = log.append(b"after").unwrap();
    for (at, _) in got {
        log.ack(at);
    }
    assert_eq!(segments(dir.path()).len(), 1);
    assert_eq!(log.read(r).unwrap(), b"after");
}

#[test]
fn a_flipped_byte_loses_the_rest_of_its_segment_only() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(dir.path(), 200);
    // 90-byte payloads: two per segment, five segments.
    for i in 0..10u8 {
        log.append(&[i; 90]).unwrap();
    }
    drop(log);
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 5);
    let mut data = std::fs::read(&segs[1]).unwrap();
    data[20] ^= 1; // inside the first record's payload
    std::fs::write(&segs[1], data).unwrap();
    let (_, got, damage) = open(dir.path(), 200);
    let firsts: Vec<u8> = got.iter().map(|(_, p)| p[0]).collect();
    assert_eq!(firsts, vec![0, 1, 4, 5, 6, 7, 8, 9]);
    assert_eq!(damage.len(), 1);
    assert_eq!(damage[0].kind, "corrupt");
    assert_eq!((damage[0].offset, damage[0].bytes), (0, 196));
}

#[test]
fn a_damaged_cursor_replays_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(dir.path(), 1 << 20);
    let a = log.append(b"a").unwrap();
    log.append(b"b").unwrap();
    log.ack(a);
    log.close().unwrap();
    std::fs::write(dir.path().join("ack"), b"garbage").unwrap();
    let (_, got, _) = open(dir.path(), 1 << 20);
    assert_eq!(got.len(), 2);
}

#[test]
fn reading_back_a_record_checks_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(dir.path(), 1 << 20);
    let r = log.append(b"payload").unwrap();
    let seg = &segments(dir.path())[0];
    let mut data = std::fs::read(seg).unwrap();
    data[10] ^= 0xff;
    std::fs::write(seg, data).unwrap();
    assert_eq!(
        log.read(r).unwrap_err().kind(),
        std::io::ErrorKind::InvalidData
    );
}

#[test]
fn interval_fsync_syncs_on_tick() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = TenantLog::open(
        dir.path().into(),
        LogSettings {
            segment_bytes: 1 << 20,
            fsync: Fsync::Interval(Duration::from_secs(1)),
        },
        Arc::new(AtomicU64::new(0)),
        |_, _, _| {},
    )
    .unwrap();
    let r = log.append(b"x").unwrap();
    log.sync().unwrap();
    assert_eq!(log.read(r).unwrap(), b"x");
}

#[test]
fn batches_round_trip_with_their_context() {
    let mut batch = gauge_batch("m", 3);
    batch.context = Context {
        tenant: Some("acme".into()),
        tenant_info: Some(Arc::new(crate::tenancy::TenantInfo {
            sla_tier: Some("gold".into()),
            ..Default::default()
        })),
        route: Some(vec!["otlp/a".to_string()].into()),
        metadata: vec![("x-team".into(), "infra".into())],
    };
    let back = codec::decode(&codec::encode(&batch)).unwrap();
    assert_eq!(back, batch);
    let plain = gauge_batch("m", 1);
    let back = codec::decode(&codec::encode(&plain)).unwrap();
    assert_eq!(back, plain);
    assert_eq!(back.context.route, None);
    let empty_route = Batch {
        context: Context {
            route: Some(Vec::<String>::new().into()),
            ..Default::default()
        },
        ..plain
    };
    assert_eq!(
        codec::decode(&codec::encode(&empty_route)).unwrap(),
        empty_route
    );
}

#[test]
fn tenant_folders_are_safe_names() {
    assert_eq!(tenant_dir(""), "_default");
    assert_eq!(tenant_dir("acme"), "acme");
    assert_eq!(tenant_dir("team-1.eu"), "team-1.eu");
    for hostile in ["../etc", "a/b", ".", "..", "_default", "é"] {
        let d = tenant_dir(hostile);
        assert!(d.starts_with('_') && d != "_default", "{hostile:?} -> {d}");
        assert!(d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    }
    assert_ne!(tenant_dir(&"x/".repeat(200)), tenant_dir(&"x/".repeat(201)));
}

#[test]
fn the_store_keeps_tenants_apart_and_counts_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) =
        DiskStore::open(dir.path().into(), settings(1 << 20), 1 << 30, |_, _, _| {}).unwrap();
    store.log("acme").unwrap().append(b"a").unwrap();
    store.log("").unwrap().append(b"bb").unwrap();
    assert_eq!(store.bytes(), 9 + 10);
    store.close();
    let mut got = Vec::new();
    let (store, _) = DiskStore::open(
        dir.path().into(),
        settings(1 << 20),
        1 << 30,
        |log, _, p| got.push((log.dir().file_name().unwrap().to_owned(), p.to_vec())),
    )
    .unwrap();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("_default".into(), b"bb".to_vec()),
            ("acme".into(), b"a".to_vec())
        ]
    );
    assert_eq!(store.bytes(), 19);
}

#[test]
fn a_directory_is_used_by_one_store_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let open = || DiskStore::open(dir.path().into(), settings(1 << 20), 1 << 30, |_, _, _| {});
    let (first, _) = open().unwrap();
    let err = open().err().expect("refused while the first is open");
    assert!(err.to_string().contains("in use"), "{err}");
    drop(first);
    assert!(open().is_ok());
}

#[test]
fn concurrent_appends_all_land_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _, _) = open(dir.path(), 2000);
    let refs: Vec<RecordRef> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u8)
            .map(|t| {
                let log = &log;
                s.spawn(move || {
                    (0..50u8)
                        .map(|i| log.append(&[t, i, 0, 0, 0, 0, 0, 0]).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(refs.len(), 400);
    for r in &refs {
        assert_eq!(log.read(*r).unwrap().len(), 8);
    }
    drop(log);
    let (_, got, damage) = open(dir.path(), 2000);
    assert!(damage.is_empty());
    assert_eq!(got.len(), 400);
    // Each writer's records come back in the order it wrote them.
    for t in 0..8u8 {
        let mine: Vec<u8> = got
            .iter()
            .filter(|(_, p)| p[0] == t)
            .map(|(_, p)| p[1])
            .collect();
        assert_eq!(mine, (0..50).collect::<Vec<u8>>());
    }
}
