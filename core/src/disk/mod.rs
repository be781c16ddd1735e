//! The disk queue's storage: under the exporter's `directory`, one segmented log per tenant
//! (`<directory>/<tenant>/`, `_default` for batches without a tenant), so that one tenant's
//! backlog never sits in another's files. See `docs/durability.md` for the format and its
//! guarantees.

pub mod codec;
mod log;
pub mod record;

pub use log::{Damage, Fsync, LogSettings, RecordRef, TenantLog};

use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes of a tenant's `ack` file and its temporary copy together.
const CURSOR_FILES: u64 = 40;

/// The folder of a tenant's log: the tenant itself when it is a plain name (ASCII letters,
/// digits, `-`, `.`, not starting with `.`), `_default` for none, else `_` and its bytes in hex.
pub fn tenant_dir(tenant: &str) -> String {
    let plain = !tenant.is_empty()
        && !tenant.starts_with('.')
        && tenant.len() <= 128
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if tenant.is_empty() {
        "_default".to_string()
    } else if plain {
        tenant.to_string()
    } else {
        let hex: String = tenant
            .bytes()
            .take(100)
            .map(|b| format!("{b:02x}"))
            .collect();
        // Long names are cut; the hash keeps them apart.
        format!("_{hex}_{:08x}", crc32fast::hash(tenant.as_bytes()))
    }
}

/// All tenants' logs of one exporter, and their bytes on disk together.
pub struct DiskStore {
    dir: PathBuf,
    settings: LogSettings,
    max_bytes: u64,
    /// Bound of one tenant's files (all of `max_bytes` unless set).
    max_tenant_bytes: u64,
    bytes: Arc<AtomicU64>,
    logs: Mutex<HashMap<Arc<str>, Arc<TenantLog>>>,
    /// `<directory>/lock`, locked until [`DiskStore::close`]: no other exporter or process may
    /// use the directory meanwhile.
    lock: Mutex<Option<std::fs::File>>,
}

impl DiskStore {
    /// Opens the store in `dir` (created if missing) and hands every unacknowledged record of
    /// every tenant's log to `on_record`, each log in order. Damaged regions are returned, for
    /// the caller to log and count.
    pub fn open(
        dir: PathBuf,
        settings: LogSettings,
        max_bytes: u64,
        mut on_record: impl FnMut(&Arc<TenantLog>, RecordRef, &[u8]),
    ) -> io::Result<(DiskStore, Vec<Damage>)> {
        std::fs::create_dir_all(&dir).map_err(|e| with_path(e, &dir))?;
        let lock_path = dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| with_path(e, &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "{} is in use by another exporter or Sluice process",
                        dir.display()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(with_path(e, &lock_path)),
        }
        let bytes = Arc::new(AtomicU64::new(0));
        let mut damage = Vec::new();
        let mut logs = HashMap::new();
        let mut subdirs: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| with_path(e, &dir))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        subdirs.sort();
        for sub in subdirs {
            let (log, d) = TenantLog::open(sub.clone(), settings, bytes.clone(), &mut on_record)
                .map_err(|e| with_path(e, &sub))?;
            damage.extend(d);
            let name = sub
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            logs.insert(Arc::from(name), log);
        }
        Ok((
            DiskStore {
                dir,
                settings,
                max_bytes,
                max_tenant_bytes: max_bytes,
                bytes,
                logs: Mutex::new(logs),
                lock: Mutex::new(Some(lock)),
            },
            damage,
        ))
    }

    /// The log of `tenant` (the empty string for none), created with its first batch.
    pub fn log(&self, tenant: &str) -> io::Result<Arc<TenantLog>> {
        let name = tenant_dir(tenant);
        // Held while a new tenant's log is opened, so that it is opened once (opening deletes
        // empty segments, which must not race with another's first append).
        let mut logs = self.logs.lock();
        if let Some(log) = logs.get(name.as_str()) {
            return Ok(log.clone());
        }
        let dir = self.dir.join(&name);
        let (log, _) =
            TenantLog::open(dir.clone(), self.settings, self.bytes.clone(), |_, _, _| {})
                .map_err(|e| with_path(e, &dir))?;
        logs.insert(Arc::from(name), log.clone());
        Ok(log)
    }

    /// Bytes of all segment files together.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// What counts against `max_bytes`: the segment files, and each tenant's ack cursor (with
    /// the temporary file it is rewritten through) at its largest.
    pub fn used(&self) -> u64 {
        self.bytes() + CURSOR_FILES * self.logs.lock().len() as u64
    }

    /// Bounds each tenant's files to `max` bytes (its cursor included), so that one tenant whose
    /// backend is down cannot take all of `max_bytes` from the others.
    pub fn with_tenant_limit(mut self, max: u64) -> Self {
        self.max_tenant_bytes = max.min(self.max_bytes);
        self
    }

    /// What counts against the tenant limit for `tenant`: its segments and its cursor; 0 when it
    /// has no log.
    pub fn tenant_used(&self, tenant: &str) -> u64 {
        self.logs
            .lock()
            .get(tenant_dir(tenant).as_str())
            .map_or(0, |log| log.bytes() + CURSOR_FILES)
    }

    /// `sending_queue.max_bytes_per_tenant`.
    pub fn max_tenant_bytes(&self) -> u64 {
        self.max_tenant_bytes
    }

    /// `sending_queue.max_bytes`.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn settings(&self) -> LogSettings {
        self.settings
    }

    /// Fsyncs every log's pending appends (the interval policy's tick).
    pub fn sync(&self) {
        let logs: Vec<_> = self.logs.lock().values().cloned().collect();
        for log in logs {
            if let Err(e) = log.sync() {
                tracing::error!(dir = %log.dir().display(), error = %e, "cannot fsync a disk queue segment");
            }
        }
    }

    /// Fsyncs and writes every log's ack cursor, and lets the directory go (a clean stop).
    pub fn close(&self) {
        let logs: Vec<_> = self.logs.lock().values().cloned().collect();
        for log in logs {
            if let Err(e) = log.close() {
                tracing::error!(dir = %log.dir().display(), error = %e, "cannot close a disk queue log");
            }
        }
        self.lock.lock().take();
    }
}

/// Runs blocking file work (a write and its fsync, a read) from async code: on a multi-threaded
/// runtime the worker thread hands its other tasks over meanwhile (`block_in_place`).
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests;
