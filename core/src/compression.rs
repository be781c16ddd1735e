//! Request body (de)compression with a size limit, so that a small compressed body cannot expand
//! without bound (gzip and zstd bombs).

use std::io::Read;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecompressError {
    #[error("the decompressed body is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the body is not valid {0}: {1}")]
    Corrupt(&'static str, String),
    #[error("unsupported Content-Encoding {0:?}; use gzip, zstd or none")]
    Unsupported(String),
}

/// Decodes a body by its `Content-Encoding` (`gzip`, `zstd`, `identity`, or none), refusing to
/// produce more than `limit` bytes.
pub fn decompress(
    encoding: Option<&str>,
    body: &[u8],
    limit: u64,
) -> Result<Vec<u8>, DecompressError> {
    let enc = encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match enc.as_str() {
        "" | "identity" | "none" => {
            if body.len() as u64 > limit {
                return Err(DecompressError::TooLarge(limit));
            }
            Ok(body.to_vec())
        }
        "gzip" | "x-gzip" => read_limited(flate2::read::GzDecoder::new(body), limit, "gzip"),
        "zstd" => {
            let d = zstd::stream::read::Decoder::new(body)
                .map_err(|e| DecompressError::Corrupt("zstd", e.to_string()))?;
            read_limited(d, limit, "zstd")
        }
        other => Err(DecompressError::Unsupported(other.to_string())),
    }
}

fn read_limited(r: impl Read, limit: u64, what: &'static str) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    r.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Corrupt(what, e.to_string()))?;
    if out.len() as u64 > limit {
        return Err(DecompressError::TooLarge(limit));
    }
    Ok(out)
}

/// `compression_params`: how hard an exporter compresses (the OpenTelemetry Collector's
/// `compression_params.level`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionParams {
    /// gzip: 1 (fastest) to 9 (smallest); zstd: 1 to 22. Default 1 for both.
    pub level: Option<u32>,
}

impl CompressionParams {
    /// Why `level` cannot be used with `c`, if it cannot.
    pub fn problem(self, c: Compression) -> Option<String> {
        let level = self.level?;
        let (name, max) = match c {
            Compression::Gzip => ("gzip", 9),
            Compression::Zstd => ("zstd", 22),
            Compression::None => {
                return Some(format!(
                    "compression_params.level {level} has no effect with compression none; \
                     remove it or choose gzip or zstd"
                ));
            }
        };
        (!(1..=max).contains(&level)).then(|| {
            format!("compression_params.level {level} is out of range for {name}: use 1 to {max}")
        })
    }
}

/// `body` compressed with `c` at `params`' level (1 when it has none); with no compression, `body`
/// itself.
pub fn compress(c: Compression, params: CompressionParams, body: Vec<u8>) -> Vec<u8> {
    let level = params.level.unwrap_or(1);
    match c {
        Compression::None => body,
        Compression::Gzip => {
            use std::io::Write;
            let level = flate2::Compression::new(level.min(9));
            let mut e = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 4), level);
            e.write_all(&body).expect("writing to a Vec cannot fail");
            e.finish().expect("writing to a Vec cannot fail")
        }
        Compression::Zstd => zstd::bulk::compress(&body, level.min(22) as i32)
            .expect("zstd compression of a buffer cannot fail"),
    }
}

impl Compression {
    /// The `Content-Encoding` value, or `None` for no compression.
    pub fn header(self) -> Option<&'static str> {
        match self {
            Compression::Gzip => Some("gzip"),
            Compression::Zstd => Some("zstd"),
            Compression::None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_limits() {
        let body = vec![7u8; 100_000];
        for c in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let z = compress(c, CompressionParams::default(), body.clone());
            assert_eq!(decompress(c.header(), &z, 200_000).unwrap(), body);
            assert_eq!(
                decompress(c.header(), &z, 99_999),
                Err(DecompressError::TooLarge(99_999))
            );
        }
    }

    #[test]
    fn levels_trade_size_for_speed_and_are_checked() {
        let body: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("series_{} {}\n", i % 977, i * 7919 % 1000).into_bytes())
            .collect();
        for c in [Compression::Gzip, Compression::Zstd] {
            let fast = compress(c, CompressionParams::default(), body.clone());
            let small = compress(c, CompressionParams { level: Some(9) }, body.clone());
            assert!(
                small.len() < fast.len(),
                "{c:?}: {} vs {}",
                small.len(),
                fast.len()
            );
            for z in [fast, small] {
                assert_eq!(decompress(c.header(), &z, 1 << 30).unwrap(), body);
            }
        }
        let level = |l| CompressionParams { level: Some(l) };
        assert_eq!(level(9).problem(Compression::Gzip), None);
        assert_eq!(level(22).problem(Compression::Zstd), None);
        assert_eq!(
            CompressionParams::default().problem(Compression::None),
            None
        );
        for (l, c, msg) in [
            (0, Compression::Gzip, "use 1 to 9"),
            (10, Compression::Gzip, "use 1 to 9"),
            (23, Compression::Zstd, "use 1 to 22"),
            (1, Compression::None, "no effect with compression none"),
        ] {
            let p = level(l).problem(c).expect("refused");
            assert!(p.contains(msg), "{p}");
        }
    }

    #[test]
    fn bomb_is_refused_without_expanding_it_all() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(&vec![0u8; 50 << 20]).unwrap();
        let bomb = e.finish().unwrap();
        assert!(bomb.len() < 100_000, "{}", bomb.len());
        assert_eq!(
            decompress(Some("gzip"), &bomb, 1 << 20),
            Err(DecompressError::TooLarge(1 << 20))
        );
    }

    #[test]
    fn corrupt_and_unknown_encodings_are_errors() {
        assert!(matches!(
            decompress(Some("gzip"), b"not gzip", 10),
            Err(DecompressError::Corrupt("gzip", _))
        ));
        assert!(matches!(
            decompress(Some("br"), b"x", 10),
            Err(DecompressError::Unsupported(_))
        ));
    }
}
