//! Types generated from the vendored protos (see `core/proto/` and `build.rs`).

#![allow(clippy::all, clippy::pedantic, missing_docs)]

pub mod otlp {
    pub mod common {
        pub mod v1 {
            include!(concat!(
                env!("OUT_DIR"),
                "/opentelemetry.proto.common.v1.rs"
            ));
            include!(concat!(
                env!("OUT_DIR"),
                "/opentelemetry.proto.common.v1.serde.rs"
            ));
        }
    }
    pub mod resource {
        pub mod v1 {
            include!(concat!(
                env!("OUT_DIR"),
                "/opentelemetry.proto.resource.v1.rs"
            ));
            include!(concat!(
                env!("OUT_DIR"),
                "/opentelemetry.proto.resource.v1.serde.rs"
            ));
        }
    }
    pub mod metrics {
        pub mod v1 {
            include!(concat!(
                env!("OUT_DIR"),
                "/opentelemetry.proto.metrics.v1.rs"
            ));
            include!(concat!(
                env!("OUT_DIR"),
                "/opentelemetry.proto.metrics.v1.serde.rs"
            ));
        }
    }
    pub mod collector {
        pub mod metrics {
            pub mod v1 {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.collector.metrics.v1.rs"
                ));
                include!(concat!(
                    env!("OUT_DIR"),
                    "/opentelemetry.proto.collector.metrics.v1.serde.rs"
                ));
            }
        }
    }
}

/// Prometheus remote_write 1.0 (`prometheus.WriteRequest`).
pub mod prometheus_v1 {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}

/// Prometheus remote_write 2.0 (`io.prometheus.write.v2.Request`).
pub mod prometheus_v2 {
    include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
}
