//! The relay guarantee with real senders and a real backend: `vmagent` and Prometheus scrape the
//! same exposition and remote_write it both straight to VictoriaMetrics #1 and through Sluice
//! (`prometheus_remote_write` receiver -> `prometheus_remote_write` exporter) to VictoriaMetrics #2.
//! Once the senders stop and Sluice has sent everything, the raw samples of the two backends
//! (`/api/v1/export`: every series, timestamp and value) must be identical: Sluice relays exactly
//! what the senders sent, nothing lost, changed or added.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::peers::Peer;
use support::{Sluice, wait_until};

const EXPOSITION: &str = "# HELP shop_orders_total Orders.\n# TYPE shop_orders_total counter\n\
shop_orders_total{method=\"GET\",status=\"200\"} 1027\nshop_orders_total{method=\"POST\",status=\"500\"} 3\n\
# TYPE shop_queue_depth gauge\nshop_queue_depth{queue=\"a b\"} 12.5\n\
# TYPE shop_latency_seconds histogram\nshop_latency_seconds_bucket{le=\"0.1\"} 5\nshop_latency_seconds_bucket{le=\"1\"} 9\n\
shop_latency_seconds_bucket{le=\"+Inf\"} 10\nshop_latency_seconds_sum 4.25\nshop_latency_seconds_count 10\n\
# TYPE shop_rpc_seconds summary\nshop_rpc_seconds{quantile=\"0.5\"} 0.02\nshop_rpc_seconds{quantile=\"0.99\"} 0.4\n\
shop_rpc_seconds_sum 12.5\nshop_rpc_seconds_count 300\n# TYPE shop_build_info gauge\nshop_build_info{version=\"1.2.3\"} 1\n";

/// Serves EXPOSITION on 127.0.0.1:0 from a background thread.
fn exposition_server() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{EXPOSITION}",
                EXPOSITION.len()
            );
        }
    });
    addr
}

struct Proc(Child);

impl Proc {
    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every sample a VictoriaMetrics holds: series (labels) -> (timestamp -> value bits).
fn export(vm: &Peer) -> BTreeMap<BTreeMap<String, String>, BTreeMap<i64, u64>> {
    let _ = support::http_get(&format!("http://{}/internal/force_flush", vm.addr));
    let body = support::http_get(&format!(
        "http://{}/api/v1/export?match[]=%7B__name__%21%3D%22%22%7D",
        vm.addr
    ));
    let mut out = BTreeMap::new();
    for line in body.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let labels: BTreeMap<String, String> = v["metric"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let samples: &mut BTreeMap<i64, u64> = out.entry(labels).or_default();
        let values = v["values"].as_array().unwrap();
        let times = v["timestamps"].as_array().unwrap();
        for (val, ts) in values.iter().zip(times) {
            let f = val.as_f64().unwrap_or(f64::NAN);
            samples.insert(ts.as_i64().unwrap(), f.to_bits());
        }
    }
    out
}

#[test]
fn vmagent_and_prometheus_relayed_through_sluice_arrive_exactly_as_sent() {
    for bin in ["/usr/bin/vmagent", "/usr/bin/prometheus"] {
        assert!(
            std::path::Path::new(bin).exists(),
            "{bin} is missing: run integration-tests/install-peers.sh"
        );
    }
    let direct = Peer::victoria_metrics();
    let relayed = Peer::victoria_metrics();
    let sluice = Sluice::start(
        &format!(
            r#"
receivers:
  prometheus_remote_write: {{ endpoint: "127.0.0.1:0" }}
exporters:
  prometheus_remote_write: {{ endpoint: "{}", queue_config: {{ batch_send_deadline: 100ms }} }}
service:
  telemetry: {{ metrics: {{ address: "127.0.0.1:0" }} }}
  pipelines:
    metrics: {{ receivers: [prometheus_remote_write], exporters: [prometheus_remote_write] }}
"#,
            relayed.write_url()
        ),
        &["prometheus_remote_write/http", "telemetry"],
    );
    let sluice_url = format!(
        "http://{}/api/v1/write",
        sluice.addr("prometheus_remote_write/http")
    );
    let target = exposition_server();
    let dir = tempfile::tempdir().unwrap();

    let scrape = |job: &str| {
        format!(
            "scrape_configs:\n  - job_name: {job}\n    scrape_interval: 1s\n    static_configs: [{{ targets: [\"{target}\"] }}]\n"
        )
    };
    std::fs::write(dir.path().join("vmagent.yml"), scrape("vmagent")).unwrap();
    let vmagent = Proc(
        Command::new("/usr/bin/vmagent")
            .arg(format!(
                "-promscrape.config={}",
                dir.path().join("vmagent.yml").display()
            ))
            .arg(format!("-remoteWrite.url={}", direct.write_url()))
            .arg(format!("-remoteWrite.url={sluice_url}"))
            .arg(format!(
                "-remoteWrite.tmpDataPath={}",
                dir.path().join("vmagent-data").display()
            ))
            .arg(format!("-httpListenAddr=127.0.0.1:{}", free_port()))
            .arg("-remoteWrite.flushInterval=200ms")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let prom_cfg = format!(
        "global: {{ scrape_interval: 1s }}\n{}remote_write:\n  - url: {}\n  - url: {sluice_url}\n",
        scrape("prometheus"),
        direct.write_url()
    );
    std::fs::write(dir.path().join("prometheus.yml"), prom_cfg).unwrap();
    let prometheus = Proc(
        Command::new("/usr/bin/prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

    // Let both senders scrape and send for a while.
    wait_until(
        Duration::from_secs(60),
        "both senders relayed samples through Sluice",
        || {
            let e = export(&relayed);
            ["vmagent", "prometheus"].iter().all(|job| {
                e.iter()
                    .any(|(l, s)| l.get("job").map(String::as_str) == Some(job) && s.len() >= 4)
            })
        },
    );
    vmagent.stop();
    prometheus.stop();
    // Sluice has sent everything it accepted (gauges and counters: one sample per point).
    wait_until(Duration::from_secs(30), "Sluice drained", || {
        let accepted = sluice.metric("sluice_receiver_accepted_points_total", &[]);
        let sent = sluice.metric("sluice_exporter_sent_points_total", &[]);
        accepted > 0.0 && sent >= accepted
    });
    std::thread::sleep(Duration::from_secs(1));
    let (a, b) = (export(&direct), export(&relayed));
    assert!(a.len() >= 2 * 16, "series: {}", a.len());
    for (series, samples) in &a {
        let got = b
            .get(series)
            .unwrap_or_else(|| panic!("series {series:?} missing behind Sluice"));
        assert_eq!(got, samples, "samples of {series:?}");
    }
    let extra: Vec<_> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    assert!(extra.is_empty(), "series only behind Sluice: {extra:?}");
    assert_eq!(
        sluice.metric("sluice_exporter_dropped_points_total", &[]),
        0.0
    );
    assert_eq!(
        sluice.metric("sluice_receiver_refused_points_total", &[]),
        0.0
    );
}
