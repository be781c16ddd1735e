//! Lookup tables: inline in the config, or a YAML file (a map of key -> value) that is checked for
//! changes (modification time and size) at most once per `reload_interval`, by the batch that
//! finds the interval passed. A file that cannot be read or parsed at start fails the build; on a
//! later change it is logged and the previous table kept until the file changes again.

use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

type Map = HashMap<String, Arc<str>>;

#[derive(Debug)]
pub struct Table {
    map: Mutex<Arc<Map>>,
    file: Option<Watch>,
}

#[derive(Debug)]
struct Watch {
    path: PathBuf,
    interval: Duration,
    state: Mutex<WatchState>,
}

#[derive(Debug)]
struct WatchState {
    /// (modified, length) of the version last read.
    stamp: Option<(SystemTime, u64)>,
    next_check: Instant,
}

impl Table {
    pub fn inline(entries: &BTreeMap<String, String>) -> Table {
        Table {
            map: Mutex::new(Arc::new(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), Arc::from(v.as_str())))
                    .collect(),
            )),
            file: None,
        }
    }

    /// Reads `path` now; later changes are picked up by [`Table::refresh`].
    pub fn file(path: PathBuf, interval: Duration) -> Result<Table, String> {
        let stamp = stamp(&path);
        let map = load(&path)?;
        Ok(Table {
            map: Mutex::new(Arc::new(map)),
            file: Some(Watch {
                path,
                interval,
                state: Mutex::new(WatchState {
                    stamp,
                    next_check: Instant::now() + interval,
                }),
            }),
        })
    }

    pub fn get(&self, key: &str) -> Option<Arc<str>> {
        self.map.lock().get(key).cloned()
    }

    /// For a table file: once the interval has passed, rereads the file if it changed. Returns
    /// true if the table was replaced.
    pub fn refresh(&self) -> bool {
        let Some(w) = &self.file else {
            return false;
        };
        let now = Instant::now();
        {
            let mut st = w.state.lock();
            if now < st.next_check {
                return false;
            }
            st.next_check = now + w.interval;
            let current = stamp(&w.path);
            if current == st.stamp {
                return false;
            }
            st.stamp = current;
        }
        match load(&w.path) {
            Ok(map) => {
                tracing::info!(path = %w.path.display(), entries = map.len(), "label table reloaded");
                *self.map.lock() = Arc::new(map);
                true
            }
            Err(e) => {
                tracing::warn!(path = %w.path.display(), error = %e, "label table not reloaded; keeping the previous one");
                false
            }
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn load(path: &Path) -> Result<Map, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    let entries: BTreeMap<String, String> = serde_saphyr::from_str(&text).map_err(|e| {
        let msg = e.to_string();
        format!(
            "{}: expected a map of key: value (strings): {}",
            path.display(),
            msg.lines().next().unwrap_or(&msg)
        )
    })?;
    Ok(entries
        .into_iter()
        .map(|(k, v)| (k, Arc::from(v)))
        .collect())
}
