//! One remote_write request over HTTP, and what its answer means: 2xx delivered; 5xx, 429 (when
//! enabled) and network errors and timeouts retried, honouring Retry-After; 415 to a v2 request (or
//! a v2 request the endpoint evidently read as v1) falls back to v1; any other 4xx is permanent,
//! with up to 1 KiB of the body kept for the log.

use super::config::{Protocol, RemoteWriteConfig};
use std::time::Duration;

pub enum Outcome {
    Delivered,
    Retry {
        message: String,
        retry_after: Option<Duration>,
    },
    FallBackToV1(String),
    Permanent(String),
}

pub struct Client {
    http: reqwest::Client,
    cfg: RemoteWriteConfig,
    auth: Option<http::HeaderValue>,
}

impl Client {
    pub fn new(
        cfg: &RemoteWriteConfig,
        bearer_from_file: Option<String>,
    ) -> Result<Client, sluice_core::component::BoxError> {
        let mut headers = http::HeaderMap::new();
        for (k, v) in &cfg.headers {
            headers.insert(
                http::HeaderName::from_bytes(k.as_bytes())?,
                http::HeaderValue::from_str(v)?,
            );
        }
        let http = tls(&cfg.tls, reqwest::Client::builder())?
            .timeout(cfg.timeout.get())
            .user_agent(concat!("Sluice/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .build()?;
        let token = cfg.bearer_token.clone().or(bearer_from_file);
        let auth = match (&token, &cfg.basic_auth) {
            (Some(t), _) => Some(http::HeaderValue::from_str(&format!(
                "Bearer {}",
                t.trim()
            ))?),
            (None, Some(b)) => {
                use base64_lite::encode;
                Some(http::HeaderValue::from_str(&format!(
                    "Basic {}",
                    encode(&format!("{}:{}", b.username, b.password))
                ))?)
            }
            (None, None) => None,
        };
        Ok(Client {
            http,
            cfg: cfg.clone(),
            auth: auth.map(|mut a| {
                a.set_sensitive(true);
                a
            }),
        })
    }

    pub async fn send(
        &self,
        tenant: &str,
        protocol: Protocol,
        body: Vec<u8>,
        samples: u64,
    ) -> Outcome {
        let url = self.cfg.url_for(tenant);
        let (ctype, version) = match protocol {
            Protocol::V1 => ("application/x-protobuf", "0.1.0"),
            Protocol::V2 => (
                "application/x-protobuf;proto=io.prometheus.write.v2.Request",
                "2.0.0",
            ),
        };
        let mut rb = self
            .http
            .post(&url)
            .header(http::header::CONTENT_ENCODING, "snappy")
            .header(http::header::CONTENT_TYPE, ctype)
            .header("X-Prometheus-Remote-Write-Version", version);
        if let Some(a) = &self.auth {
            rb = rb.header(http::header::AUTHORIZATION, a.clone());
        }
        if let Some(h) = &self.cfg.tenant_header {
            rb = rb.header(h.as_str(), tenant);
        }
        let resp = match rb.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    message: format!("{url}: {e}"),
                    retry_after: None,
                };
            }
        };
        let status = resp.status();
        if status.is_success() {
            if protocol == Protocol::V2 && samples > 0 {
                let written = resp
                    .headers()
                    .get("X-Prometheus-Remote-Write-Samples-Written")
                    .and_then(|v| v.to_str().ok());
                let histograms = resp
                    .headers()
                    .get("X-Prometheus-Remote-Write-Histograms-Written")
                    .and_then(|v| v.to_str().ok());
                if written.is_none() && histograms.is_none() {
                    return Outcome::FallBackToV1(format!(
                        "{url} answered {status} without the remote_write 2.0 written-count headers"
                    ));
                }
            }
            return Outcome::Delivered;
        }
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::otlp::parse_retry_after);
        let bytes = resp.bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)])
            .trim()
            .to_string();
        let message = format!("{url} answered {status}: {text}");
        match status.as_u16() {
            415 if protocol == Protocol::V2 => Outcome::FallBackToV1(message),
            429 if self.cfg.queue_config.retry_on_http_429 => Outcome::Retry {
                message,
                retry_after,
            },
            500..=599 => Outcome::Retry {
                message,
                retry_after,
            },
            _ => Outcome::Permanent(message),
        }
    }
}

/// Applies TLS settings (rustls with the ring provider, installed once per process).
pub fn tls(
    cfg: &super::config::TlsConfig,
    mut b: reqwest::ClientBuilder,
) -> Result<reqwest::ClientBuilder, sluice_core::component::BoxError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let read = |p: &str| std::fs::read(p).map_err(|e| format!("cannot read {p}: {e}"));
    if let Some(ca) = &cfg.ca_file {
        for cert in reqwest::Certificate::from_pem_bundle(&read(ca)?)? {
            b = b.add_root_certificate(cert);
        }
    }
    if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
        let mut pem = read(cert)?;
        pem.push(b'\n');
        pem.extend(read(key)?);
        b = b.identity(reqwest::Identity::from_pem(&pem)?);
    }
    Ok(b.danger_accept_invalid_certs(cfg.insecure_skip_verify))
}

/// Base64 for the basic-auth header (RFC 4648, with padding).
mod base64_lite {
    pub fn encode(s: &str) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
        for c in b.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            out.push(T[(n >> 18) as usize & 63] as char);
            out.push(T[(n >> 12) as usize & 63] as char);
            out.push(if c.len() > 1 {
                T[(n >> 6) as usize & 63] as char
            } else {
                '='
            });
            out.push(if c.len() > 2 {
                T[n as usize & 63] as char
            } else {
                '='
            });
        }
        out
    }
}

#[cfg(test)]
pub(crate) use base64_lite::encode as base64_encode;
