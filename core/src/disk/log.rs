//! One tenant's segmented log: numbered segment files of framed records (see [`super::record`])
//! appended in order, an ack cursor, and the accounting that deletes a segment once every record
//! in it is acknowledged (delivered, or dropped for a counted reason).
//!
//! Acks may come in any order (several batches are in flight at once). The cursor file `ack`
//! says where the oldest unacknowledged record starts: records before it are not replayed after a
//! restart; records after it are, even those acknowledged out of order (at-least-once).

use super::record;
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When appended records reach the disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Every append is fsynced before it returns.
    Batch,
    /// The active segment is fsynced this often (and when it is sealed).
    Interval(Duration),
    /// Only when a segment is sealed and at a clean stop.
    Never,
}

/// How a tenant's log writes.
#[derive(Clone, Copy, Debug)]
pub struct LogSettings {
    /// A segment is sealed, and the next one started, before it would grow past this.
    pub segment_bytes: u64,
    pub fsync: Fsync,
}

/// Where a record is: its segment, its offset there, and its payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordRef {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

impl RecordRef {
    /// Bytes the record takes in its file.
    pub fn file_bytes(&self) -> u64 {
        record::HEADER as u64 + u64::from(self.len)
    }
}

/// A region of a segment that could not be read back: the rest of the segment from `offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Damage {
    pub file: PathBuf,
    pub offset: u64,
    /// Bytes skipped.
    pub bytes: u64,
    /// `torn` (the file ends inside a record) or `corrupt` (bad length or checksum).
    pub kind: &'static str,
}

struct Segment {
    /// Bytes in the file.
    bytes: u64,
    /// Records not yet acknowledged.
    live: usize,
}

struct Active {
    file: Arc<ActiveFile>,
    /// Appends not yet fsynced.
    dirty: bool,
}

/// The segment being appended to, shared with appenders waiting for their fsync.
struct ActiveFile {
    id: u64,
    file: File,
    /// Bytes written to it (complete records only).
    written: AtomicU64,
}

struct Inner {
    segments: BTreeMap<u64, Segment>,
    active: Option<Active>,
    next_id: u64,
    unacked: BTreeSet<(u64, u64)>,
    /// The cursor last written, and when.
    cursor: (u64, u64),
    cursor_at: Instant,
}

/// One tenant's log in its own directory.
pub struct TenantLog {
    dir: PathBuf,
    settings: LogSettings,
    /// File bytes of every log of the exporter together.
    total_bytes: Arc<AtomicU64>,
    /// File bytes of this log's segments.
    bytes: AtomicU64,
    inner: Mutex<Inner>,
    /// Under [`Fsync::Batch`]: (segment, bytes) known to be on disk. Appenders that wait here
    /// while another's fsync runs often find their record covered by it (group commit).
    synced: Mutex<(u64, u64)>,
}

/// How often at most the ack cursor is rewritten (acks in between are resent after a crash).
const CURSOR_EVERY: Duration = Duration::from_millis(100);

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

impl TenantLog {
    /// Opens (or creates) the log in `dir` and hands every unacknowledged good record to
    /// `on_record`, in order. Unreadable regions are skipped and returned (each loses the rest of
    /// its segment); appends go to a new segment, never after a damaged tail.
    pub fn open(
        dir: PathBuf,
        settings: LogSettings,
        total_bytes: Arc<AtomicU64>,
        mut on_record: impl FnMut(&Arc<TenantLog>, RecordRef, &[u8]),
    ) -> io::Result<(Arc<TenantLog>, Vec<Damage>)> {
        fs::create_dir_all(&dir)?;
        let cursor = read_cursor(&dir.join("ack")).unwrap_or((0, 0));
        let mut ids = Vec::new();
        for e in fs::read_dir(&dir)? {
            let name = e?.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".seg"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            ids.push(id);
        }
        ids.sort_unstable();
        let log = Arc::new(TenantLog {
            dir,
            settings,
            total_bytes,
            bytes: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                segments: BTreeMap::new(),
                active: None,
                // Past the cursor too: a new segment numbered before it would be skipped at the
                // next start.
                next_id: ids.last().map_or(0, |id| id + 1).max(cursor.0 + 1),
                unacked: BTreeSet::new(),
                cursor,
                cursor_at: Instant::now(),
            }),
            synced: Mutex::new((0, 0)),
        });
        let mut damage = Vec::new();
        for id in ids {
            let path = segment_path(&log.dir, id);
            let data = fs::read(&path)?;
            let (records, end, good) = record::scan(&data);
            if end != record::Read::End {
                damage.push(Damage {
                    file: path.clone(),
                    offset: good as u64,
                    bytes: (data.len() - good) as u64,
                    kind: if end == record::Read::Torn {
                        "torn"
                    } else {
                        "corrupt"
                    },
                });
            }
            let records: Vec<(RecordRef, &[u8])> = records
                .into_iter()
                .filter(|(offset, _)| (id, *offset as u64) >= cursor)
                .map(|(offset, payload)| {
                    let at = RecordRef {
                        segment: id,
                        offset: offset as u64,
                        len: payload.len() as u32,
                    };
                    (at, payload)
                })
                .collect();
            if records.is_empty() {
                fs::remove_file(&path)?;
                continue;
            }
            {
                let mut inner = log.inner.lock();
                inner.segments.insert(
                    id,
                    Segment {
                        bytes: data.len() as u64,
                        live: records.len(),
                    },
                );
                inner
                    .unacked
                    .extend(records.iter().map(|(at, _)| (at.segment, at.offset)));
            }
            log.add_bytes(data.len() as i64);
            for (at, payload) in records {
                on_record(&log, at, payload);
            }
        }
        Ok((log, damage))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one record holding `payload`, fsynced before returning under [`Fsync::Batch`]
    /// (one fsync may cover the records of several concurrent appenders). On a failed write the
    /// segment is cut back (or sealed), so that no later record follows a partial one; a failed
    /// fsync leaves the record in the log (it may be sent after the next start).
    pub fn append(&self, payload: &[u8]) -> io::Result<RecordRef> {
        let (at, file) = self.write(payload)?;
        if self.settings.fsync == Fsync::Batch {
            self.sync_to(&file, at.offset + at.file_bytes())?;
        }
        Ok(at)
    }

    /// Fsyncs `file` at least up to `end`, unless an fsync since covered it.
    fn sync_to(&self, file: &ActiveFile, end: u64) -> io::Result<()> {
        let mut synced = self.synced.lock();
        if *synced >= (file.id, end) {
            return Ok(());
        }
        let target = file.written.load(Ordering::Acquire);
        file.file.sync_data()?;
        *synced = (*synced).max((file.id, target));
        Ok(())
    }

    /// Writes one record to the active segment (started if needed), without fsync.
    fn write(&self, payload: &[u8]) -> io::Result<(RecordRef, Arc<ActiveFile>)> {
        if payload.len() > record::MAX_PAYLOAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "batch too large for a disk queue record",
            ));
        }
        let mut framed = Vec::with_capacity(record::HEADER + payload.len());
        record::encode(payload, &mut framed);
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        let needs_new = match &inner.active {
            None => true,
            Some(a) => {
                let bytes = inner.segments[&a.file.id].bytes;
                bytes > 0 && bytes + framed.len() as u64 > self.settings.segment_bytes
            }
        };
        if needs_new {
            self.seal(inner)?;
            let id = inner.next_id;
            inner.next_id += 1;
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(segment_path(&self.dir, id))?;
            if self.settings.fsync == Fsync::Batch {
                File::open(&self.dir)?.sync_all()?;
            }
            inner.segments.insert(id, Segment { bytes: 0, live: 0 });
            inner.active = Some(Active {
                file: Arc::new(ActiveFile {
                    id,
                    file,
                    written: AtomicU64::new(0),
                }),
                dirty: false,
            });
        }
        let active = inner.active.as_mut().expect("opened above");
        let af = active.file.clone();
        let seg = inner.segments.get_mut(&af.id).expect("active is listed");
        let offset = seg.bytes;
        if let Err(e) = (&af.file).write_all(&framed) {
            if af.file.set_len(offset).is_err() {
                // What follows `offset` is unknown: never append after it.
                let _ = self.seal(inner);
            }
            return Err(e);
        }
        active.dirty = self.settings.fsync != Fsync::Batch;
        seg.bytes += framed.len() as u64;
        seg.live += 1;
        af.written.store(seg.bytes, Ordering::Release);
        self.add_bytes(framed.len() as i64);
        let at = RecordRef {
            segment: af.id,
            offset,
            len: payload.len() as u32,
        };
        inner.unacked.insert((at.segment, at.offset));
        Ok((at, af))
    }

    /// Reads back the payload of a record, checking its checksum.
    pub fn read(&self, at: RecordRef) -> io::Result<Vec<u8>> {
        let file = File::open(segment_path(&self.dir, at.segment))?;
        let mut buf = vec![0; at.file_bytes() as usize];
        file.read_exact_at(&mut buf, at.offset)?;
        match record::next(&buf, 0) {
            record::Read::Record { .. } => {
                buf.drain(..record::HEADER);
                Ok(buf)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "record at offset {} of {} fails its checksum",
                    at.offset,
                    segment_path(&self.dir, at.segment).display()
                ),
            )),
        }
    }

    /// Marks a record delivered (or dropped for a counted reason); deletes its segment once
    /// every record in it is, unless it is still being appended to.
    pub fn ack(&self, at: RecordRef) {
        let mut inner = self.inner.lock();
        let inner = &mut *inner;
        if !inner.unacked.remove(&(at.segment, at.offset)) {
            return;
        }
        let Some(seg) = inner.segments.get_mut(&at.segment) else {
            return;
        };
        seg.live -= 1;
        let active = inner.active.as_ref().map(|a| a.file.id);
        if seg.live == 0 {
            if active == Some(at.segment) {
                // A drained active segment is dropped once it is big enough to matter.
                if seg.bytes >= self.settings.segment_bytes / 4 {
                    inner.active = None;
                    self.delete(inner, at.segment);
                }
            } else {
                self.delete(inner, at.segment);
            }
        }
        if inner.cursor_at.elapsed() >= CURSOR_EVERY {
            self.write_cursor(inner);
        }
    }

    /// Bytes of this log's segment files.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn add_bytes(&self, n: i64) {
        if n >= 0 {
            self.bytes.fetch_add(n as u64, Ordering::Relaxed);
            self.total_bytes.fetch_add(n as u64, Ordering::Relaxed);
        } else {
            self.bytes.fetch_sub(n.unsigned_abs(), Ordering::Relaxed);
            self.total_bytes
                .fetch_sub(n.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// Records not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.inner.lock().unacked.len()
    }

    /// Fsyncs the active segment if appends are pending (the interval policy's tick).
    pub fn sync(&self) -> io::Result<()> {
        let mut inner = self.inner.lock();
        if let Some(a) = inner.active.as_mut()
            && a.dirty
        {
            a.file.file.sync_data()?;
            a.dirty = false;
        }
        Ok(())
    }

    /// Fsyncs what was appended and writes the ack cursor (a clean stop).
    pub fn close(&self) -> io::Result<()> {
        self.sync()?;
        let mut inner = self.inner.lock();
        self.write_cursor(&mut inner);
        Ok(())
    }

    /// Ends the active segment: fsynced unless every append already was.
    fn seal(&self, inner: &mut Inner) -> io::Result<()> {
        if let Some(a) = inner.active.take() {
            if a.dirty {
                a.file.file.sync_data()?;
            }
            if inner.segments.get(&a.file.id).is_some_and(|s| s.live == 0) {
                self.delete(inner, a.file.id);
            }
        }
        Ok(())
    }

    fn delete(&self, inner: &mut Inner, id: u64) {
        if let Some(seg) = inner.segments.remove(&id) {
            self.add_bytes(-(seg.bytes as i64));
            let path = segment_path(&self.dir, id);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot delete a delivered disk queue segment");
            }
        }
    }

    /// Writes where the oldest unacknowledged record starts (or the end of the log), atomically
    /// (a temporary file renamed). Not fsynced: a lost update only means records resent.
    fn write_cursor(&self, inner: &mut Inner) {
        let cursor = match inner.unacked.first() {
            Some(&first) => first,
            None => match &inner.active {
                Some(a) => (a.file.id, inner.segments[&a.file.id].bytes),
                None => (inner.next_id, 0),
            },
        };
        inner.cursor_at = Instant::now();
        if cursor == inner.cursor {
            return;
        }
        let mut buf = Vec::with_capacity(20);
        buf.extend_from_slice(&cursor.0.to_le_bytes());
        buf.extend_from_slice(&cursor.1.to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(&buf).to_le_bytes());
        let tmp = self.dir.join("ack.tmp");
        let res = fs::write(&tmp, &buf).and_then(|()| fs::rename(&tmp, self.dir.join("ack")));
        match res {
            Ok(()) => inner.cursor = cursor,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write a disk queue's ack cursor; delivered records may be resent after a restart")
            }
        }
    }
}

/// The cursor in `path`; `None` when missing or damaged (everything is then replayed).
fn read_cursor(path: &Path) -> Option<(u64, u64)> {
    let buf = fs::read(path).ok()?;
    if buf.len() != 20 {
        return None;
    }
    let crc = u32::from_le_bytes(buf[16..20].try_into().ok()?);
    if crc32fast::hash(&buf[..16]) != crc {
        return None;
    }
    Some((
        u64::from_le_bytes(buf[0..8].try_into().ok()?),
        u64::from_le_bytes(buf[8..16].try_into().ok()?),
    ))
}
