//! The disk queue through the real binary: what Sluice acknowledged survives SIGKILL, a backend
//! outage stays within `max_bytes` and then arrives in order, `drop_oldest` drops the oldest and
//! counts them, and damaged segment files are skipped (counted, logged) without wedging the queue.

mod support;

use sluice_core::proto::otlp::collector::metrics::v1::ExportMetricsServiceRequest;
use sluice_core::proto::otlp::metrics::v1::metric::Data;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};
use support::peers::{Peer, RwBehaviour, RwSink};
use support::{GrpcClient, Sluice, numbered_request, wait_until};

const LISTENERS: &[&str] = &["otlp/grpc", "telemetry"];

/// A pipeline from OTLP/gRPC straight (no batch processor: the receiver acknowledges only once
/// the batch is in the disk queue) to remote_write at `url`, with a disk queue in `dir`.
fn config(url: &str, dir: &Path, queue: &str, queue_config: &str) -> String {
    format!(
        r#"
receivers:
  otlp: {{ protocols: {{ grpc: {{ endpoint: "127.0.0.1:0" }} }} }}
exporters:
  prometheus_remote_write:
    endpoint: "{url}"
    queue_config: {{ batch_send_deadline: 50ms, min_backoff: 20ms, max_backoff: 200ms{queue_config} }}
    sending_queue: {{ storage: disk, directory: "{}"{queue} }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  shutdown_timeout: 1s
  pipelines:
    metrics: {{ receivers: [otlp], exporters: [prometheus_remote_write] }}
"#,
        dir.display()
    )
}

/// `n` points numbered from `first`, each its own series (label `i`), all at `t_ns`.
fn numbered_at(first: u64, n: u64, t_ns: u64) -> ExportMetricsServiceRequest {
    let mut r = numbered_request(first, n);
    for m in &mut r.resource_metrics[0].scope_metrics[0].metrics {
        if let Some(Data::Gauge(g)) = &mut m.data {
            for p in &mut g.data_points {
                p.time_unix_nano = t_ns;
            }
        }
    }
    r
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A pseudo-random number in `0..max` (no extra crate for it).
fn random(max: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ns());
    h.finish() % max.max(1)
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_bytes(&p)
            } else {
                e.metadata().map_or(0, |m| m.len())
            }
        })
        .sum()
}

/// The segment files of the queue of batches without a tenant, oldest first.
fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("_default"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

/// Numbers of each record of a segment file, with the offset where each record starts.
fn records(seg: &Path) -> Vec<(usize, Vec<u64>)> {
    use sluice_core::disk::{codec, record};
    let data = std::fs::read(seg).unwrap();
    let (recs, _, _) = record::scan(&data);
    recs.into_iter()
        .map(|(offset, payload)| {
            let batch = codec::decode(payload).unwrap();
            let req = ExportMetricsServiceRequest {
                resource_metrics: batch.resource_metrics,
            };
            (offset, support::numbers(&[req]))
        })
        .collect()
}

/// The `i` label of every sample the sink received, in arrival order.
fn received(sink: &RwSink) -> Vec<u64> {
    sink.requests()
        .iter()
        .flat_map(|r| r.v1.timeseries.clone())
        .filter(|t| t.labels.iter().any(|l| l.value == "test_gauge"))
        .flat_map(|t| {
            let i = t
                .labels
                .iter()
                .find(|l| l.name == "i")
                .unwrap()
                .value
                .clone();
            t.samples
                .iter()
                .map(move |_| i.parse::<u64>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Sends requests of `per` points numbered from `*next` until `until` says stop, recording those
/// acknowledged.
fn send_until(
    c: &GrpcClient,
    next: &mut u64,
    per: u64,
    t_ns: u64,
    acked: &mut BTreeSet<u64>,
    mut until: impl FnMut() -> bool,
) -> usize {
    let mut refused = 0;
    while !until() {
        match c.export(numbered_at(*next, per, t_ns)) {
            Ok(_) => acked.extend(*next..*next + per),
            Err(_) => refused += 1,
        }
        *next += per;
        std::thread::sleep(Duration::from_millis(5));
    }
    refused
}

/// Crash: a client streams numbered samples to a disk-queued (fsync per batch) Sluice in front of
/// a real Prometheus; Sluice is SIGKILLed at random moments four times and restarted on the same
/// directory. Every acknowledged sample ends up in Prometheus, exactly once.
#[test]
fn acknowledged_samples_survive_sigkill() {
    let prom = Peer::prometheus();
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let cfg = config(&prom.write_url(), &queue, "", "");
    let t_ns = now_ns() - 60_000_000_000;
    let (mut next, mut acked) = (0u64, BTreeSet::new());
    let at = t_ns as f64 / 1e9 + 1.0;
    let stored = || -> BTreeMap<u64, f64> {
        prom.query("test_gauge", at)
            .iter()
            .map(|s| {
                let i = s["metric"]["i"].as_str().unwrap().parse().unwrap();
                (i, s["value"][1].as_str().unwrap().parse().unwrap())
            })
            .collect()
    };
    for round in 0..5 {
        let s = Sluice::start(&cfg, LISTENERS);
        let c = GrpcClient::connect(&s.grpc_url("otlp"));
        if round == 4 {
            // The last run is left alone: it delivers what the others left on disk.
            let stop = Instant::now() + Duration::from_secs(1);
            send_until(&c, &mut next, 10, t_ns, &mut acked, || {
                Instant::now() > stop
            });
            // Waits for every acknowledged sample itself: Prometheus may also hold samples whose
            // request was written to the queue but not acknowledged before a kill (delivered at
            // least once), so a count of what it holds can reach the acknowledged count before
            // the last ones arrive.
            let deadline = Instant::now() + Duration::from_secs(40);
            while Instant::now() < deadline {
                let got = stored();
                if acked.iter().all(|i| got.contains_key(i)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            break;
        }
        let pid = s.child.id().to_string();
        let after = Duration::from_millis(800 + random(2000));
        let killer = std::thread::spawn(move || {
            std::thread::sleep(after);
            std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status()
                .unwrap();
        });
        let killed = Instant::now() + after;
        send_until(&c, &mut next, 10, t_ns, &mut acked, || {
            Instant::now() > killed + Duration::from_millis(200)
        });
        killer.join().unwrap();
        let log = s.log_text();
        if let Some(line) = log.lines().find(|l| l.contains("disk queue replayed")) {
            eprintln!("round {round}: {line}");
        }
        drop(s);
    }
    let got = stored();
    let missing: Vec<u64> = acked
        .iter()
        .filter(|i| !got.contains_key(i))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged samples lost: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert!(got.iter().all(|(i, v)| *i as f64 == *v && *i < next));
    // Resent duplicates are idempotent: one sample per series.
    assert!(
        prom.query("count_over_time(test_gauge[10m]) > 1", at)
            .is_empty(),
        "a sample stored twice"
    );
    assert!(
        acked.len() > 100,
        "too little was acknowledged: {}",
        acked.len()
    );
    eprintln!(
        "acknowledged {} of {next} samples sent; {} in Prometheus",
        acked.len(),
        got.len()
    );
}

/// Outage: the backend refuses for ~20 s under steady load; the queue's files stay under
/// `max_bytes` (receivers are pushed back once it is full), and when the backend is back every
/// acknowledged sample arrives, in order (one shard), none lost.
#[test]
fn an_outage_stays_under_max_bytes_and_arrives_in_order() {
    let sink = RwSink::start(RwBehaviour::Accept);
    sink.refuse_tenant("");
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let max = 512 * 1024;
    let s = Sluice::start(
        &config(
            &sink.url(),
            &queue,
            &format!(", max_bytes: {max}"),
            ", min_shards: 1, max_shards: 1, capacity: 100, max_samples_per_send: 100",
        ),
        LISTENERS,
    );
    let c = GrpcClient::connect(&s.grpc_url("otlp"));
    let t_ns = now_ns();
    let (mut next, mut acked) = (0u64, BTreeSet::new());
    let stop = Instant::now() + Duration::from_secs(20);
    let mut peak = 0;
    let refused = send_until(&c, &mut next, 20, t_ns, &mut acked, || {
        peak = peak.max(dir_bytes(&queue));
        Instant::now() > stop
    });
    assert!(
        peak <= max,
        "the queue's files reached {peak} bytes, over {max}"
    );
    assert!(refused > 0, "the disk queue never filled");
    assert!(s.log_text().is_empty() || !s.log_text().contains("panicked"));
    sink.release_tenant("");
    wait_until(
        Duration::from_secs(40),
        "every acknowledged sample delivered",
        || acked.is_subset(&received(&sink).into_iter().collect()),
    );
    let got = received(&sink);
    let set: BTreeSet<u64> = got.iter().copied().collect();
    assert!(acked.is_subset(&set), "acknowledged samples missing");
    // In order: the first arrival of each number comes in increasing order.
    let mut seen = BTreeSet::new();
    let firsts: Vec<u64> = got.into_iter().filter(|i| seen.insert(*i)).collect();
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "reordered");
    assert_eq!(s.metric("sluice_exporter_dropped_points_total", &[]), 0.0);
}

/// Outage with a cap too small and `drop_oldest`: nothing is refused, the files stay under the
/// cap, the oldest queued batches are dropped, and the dropped count is exactly what is missing.
#[test]
fn drop_oldest_drops_the_oldest_and_counts_them() {
    let sink = RwSink::start(RwBehaviour::Accept);
    sink.refuse_tenant("");
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    let max = 256 * 1024;
    let s = Sluice::start(
        &config(
            &sink.url(),
            &queue,
            &format!(", max_bytes: {max}, full_policy: drop_oldest"),
            ", min_shards: 1, max_shards: 1, capacity: 100, max_samples_per_send: 100",
        ),
        LISTENERS,
    );
    let c = GrpcClient::connect(&s.grpc_url("otlp"));
    let t_ns = now_ns();
    let (mut next, mut acked) = (0u64, BTreeSet::new());
    let mut peak = 0;
    let stop = Instant::now() + Duration::from_secs(8);
    send_until(&c, &mut next, 20, t_ns, &mut acked, || {
        peak = peak.max(dir_bytes(&queue));
        Instant::now() > stop
    });
    assert!(
        peak <= max,
        "the queue's files reached {peak} bytes, over {max}"
    );
    let dropped = s.metric(
        "sluice_exporter_dropped_points_total",
        &[("reason", "queue_full")],
    ) as usize;
    assert!(dropped > 0, "nothing was dropped");
    sink.release_tenant("");
    wait_until(Duration::from_secs(40), "the rest delivered", || {
        received(&sink).iter().collect::<BTreeSet<_>>().len() + dropped >= acked.len()
    });
    let set: BTreeSet<u64> = received(&sink).into_iter().collect();
    let missing: Vec<u64> = acked.difference(&set).copied().collect();
    assert_eq!(missing.len(), dropped, "dropped count vs missing samples");
    // The dropped are the oldest in the queue: one run of consecutive numbers (what the shards
    // had already taken before the backend went down is older and was kept by them).
    assert!(
        missing.windows(2).all(|w| w[1] == w[0] + 1),
        "the missing samples are not one run of the oldest queued"
    );
    assert!(missing.last().unwrap() < set.iter().max().unwrap());
}

/// Corruption: with data queued (backend down, Sluice stopped), one segment is cut in the middle of
/// a record and a byte is flipped in another. Sluice starts, keeps every good record, logs and
/// counts the damage, delivers the rest, and takes new data.
#[test]
fn damaged_segments_are_skipped_and_the_rest_delivered() {
    let sink = RwSink::start(RwBehaviour::Accept);
    sink.refuse_tenant("");
    let dir = tempfile::tempdir().unwrap();
    let queue = dir.path().join("queue");
    // 1 MiB: segments of 128 KiB.
    let cfg = config(&sink.url(), &queue, ", max_bytes: 1MiB", "");
    let s = Sluice::start(&cfg, LISTENERS);
    let c = GrpcClient::connect(&s.grpc_url("otlp"));
    let t_ns = now_ns();
    let (mut next, mut acked) = (0u64, BTreeSet::new());
    // Over three segments (the tenant may fill half of max_bytes), within a bounded time.
    let give_up = Instant::now() + Duration::from_secs(30);
    send_until(&c, &mut next, 50, t_ns, &mut acked, || {
        dir_bytes(&queue) > 400 * 1024 || Instant::now() > give_up
    });
    assert!(s.stop("TERM").success());
    let segs = segments(&queue);
    assert!(segs.len() >= 4, "{} segments", segs.len());
    // Everything acknowledged is on disk (the shards' share was kept for the next start).
    let mut expected: BTreeSet<u64> = BTreeSet::new();
    let mut on_disk: BTreeSet<u64> = BTreeSet::new();
    for (k, seg) in segs.iter().enumerate() {
        let recs = records(seg);
        on_disk.extend(recs.iter().flat_map(|(_, n)| n.iter().copied()));
        let keep = match k {
            // Cut inside record 3 of segment 1: records 0..3 are kept.
            1 => {
                let cut = recs[3].0 + 10;
                let f = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
                f.set_len(cut as u64).unwrap();
                3
            }
            // Flip a byte inside record 2 of segment 2: records 0..2 are kept.
            2 => {
                let mut data = std::fs::read(seg).unwrap();
                data[recs[2].0 + 20] ^= 0x55;
                std::fs::write(seg, data).unwrap();
                2
            }
            _ => recs.len(),
        };
        expected.extend(recs[..keep].iter().flat_map(|(_, n)| n.iter().copied()));
    }
    assert!(
        acked.is_subset(&on_disk),
        "acknowledged samples not on disk"
    );
    sink.release_tenant("");
    let s = Sluice::start(&cfg, LISTENERS);
    let c = GrpcClient::connect(&s.grpc_url("otlp"));
    let fresh = 10_000_000;
    c.export(numbered_at(fresh, 50, t_ns))
        .expect("new data taken");
    expected.extend(fresh..fresh + 50);
    wait_until(
        Duration::from_secs(30),
        "the good records delivered",
        || received(&sink).iter().collect::<BTreeSet<_>>().len() >= expected.len(),
    );
    let got: BTreeSet<u64> = received(&sink).into_iter().collect();
    assert_eq!(got, expected);
    assert!(s.metric("sluice_exporter_disk_corrupt_bytes_total", &[]) > 0.0);
    let log = s.log_text();
    assert!(log.contains("damaged disk queue segment"), "{log}");
    assert!(log.contains("torn") && log.contains("corrupt"), "{log}");
}
