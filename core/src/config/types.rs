//! Value types shared by component configs. Each validates itself while it is deserialized, so that a
//! bad value is reported at its own position.

use serde::de::{Deserialize, Deserializer, Error};
use std::fmt;
use std::time::Duration as StdDuration;

/// A duration written in humantime form: `200ms`, `5s`, `1m30s`. `0` means zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration(pub StdDuration);

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Duration(StdDuration::from_millis(ms))
    }
    pub const fn from_secs(s: u64) -> Self {
        Duration(StdDuration::from_secs(s))
    }
    pub fn get(self) -> StdDuration {
        self.0
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim();
        if t == "0" {
            return Ok(Duration(StdDuration::ZERO));
        }
        humantime::parse_duration(t).map(Duration).map_err(|e| {
            D::Error::custom(format!(
                "invalid duration {s:?} ({e}); write it like 200ms, 5s or 1m"
            ))
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A size in bytes: a plain number or a number with a unit (`512KiB`, `16MiB`, `1GB`, `100kB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn mib(n: u64) -> Self {
        ByteSize(n << 20)
    }
    pub fn get(self) -> u64 {
        self.0
    }
    pub fn parse(s: &str) -> Option<u64> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let mult: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" | "K" | "k" => 1_000,
            "MB" | "M" => 1_000_000,
            "GB" | "G" => 1_000_000_000,
            "TB" | "T" => 1_000_000_000_000,
            "KiB" | "Ki" => 1 << 10,
            "MiB" | "Mi" => 1 << 20,
            "GiB" | "Gi" => 1 << 30,
            "TiB" | "Ti" => 1 << 40,
            _ => return None,
        };
        if num.contains('.') {
            let v: f64 = num.parse().ok()?;
            let bytes = v * mult as f64;
            (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
        } else {
            num.parse::<u64>().ok()?.checked_mul(mult)
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ByteSize::parse(&s).map(ByteSize).ok_or_else(|| {
            D::Error::custom(format!(
                "invalid size {s:?}; write bytes or a number with a unit such as 512KiB, 16MiB, 1GB"
            ))
        })
    }
}

/// A listening or dialling address `host:port` (`127.0.0.1:4317`, `localhost:4318`, `[::1]:9090`,
/// `0.0.0.0:4317`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint(pub String);

impl Endpoint {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let t = s.trim();
        let Some((host, port)) = t.rsplit_once(':') else {
            return Err(format!(
                "invalid endpoint {s:?}: expected host:port, such as 127.0.0.1:4317"
            ));
        };
        if port.parse::<u16>().is_err() {
            return Err(format!(
                "invalid endpoint {s:?}: the port {port:?} is not a number from 0 to 65535"
            ));
        }
        let host_ok = if let Some(inner) = host.strip_prefix('[') {
            inner
                .strip_suffix(']')
                .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
        } else {
            !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_')
        };
        if !host_ok {
            return Err(format!(
                "invalid endpoint {s:?}: the host {host:?} is not a name or an address"
            ));
        }
        Ok(Endpoint(t.to_string()))
    }
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Endpoint::parse(&s).map_err(D::Error::custom)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An `http://` or `https://` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl(pub http::Uri);

impl HttpUrl {
    pub fn parse(s: &str) -> Result<HttpUrl, String> {
        let uri: http::Uri = s
            .trim()
            .parse()
            .map_err(|e| format!("invalid URL {s:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => {
                return Err(format!(
                    "invalid URL {s:?}: it must start with http:// or https://"
                ));
            }
        }
        if uri.authority().is_none() {
            return Err(format!("invalid URL {s:?}: no host"));
        }
        Ok(HttpUrl(uri))
    }
}

impl<'de> Deserialize<'de> for HttpUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HttpUrl::parse(&s).map_err(D::Error::custom)
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Deserializes an optional section where an empty value (`grpc:`) means "enabled with defaults",
/// as in the OpenTelemetry Collector. Use with `#[serde(default, deserialize_with = ...)]`.
pub fn enabled_section<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}
