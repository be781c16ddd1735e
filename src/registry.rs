//! The one place that knows every component type: a `match` on the type name. The collector's
//! older names are accepted as aliases.

use sluice_core::component::{
    Class, ExporterConfig, ParseFn, ProcessorConfig, ReceiverConfig, Registry, parse_config,
};
use sluice_exporters::debug::DebugExporterConfig;
use sluice_exporters::otlp::{OtlpGrpcExporterConfig, OtlpHttpExporterConfig};
use sluice_exporters::prometheus::PrometheusExporterConfig;
use sluice_exporters::remote_write::RemoteWriteConfig;
use sluice_processors::batch::BatchConfig;
use sluice_processors::labels::LabelsConfig;
use sluice_processors::limits::LimitsConfig;
use sluice_processors::normalize::NormalizeConfig;
use sluice_processors::route::RouteConfig;
use sluice_receivers::otlp::OtlpReceiverConfig;
use sluice_receivers::prometheus::PrometheusReceiverConfig;
use sluice_receivers::remote_write::RemoteWriteReceiverConfig;
use sluice_receivers::runtime::RuntimeReceiverConfig;

pub struct Components;

impl Registry for Components {
    fn receiver(&self, kind: &str) -> Option<ParseFn<dyn ReceiverConfig>> {
        match kind {
            "otlp" => Some(|n, c| Ok(Box::new(parse_config::<OtlpReceiverConfig>(n, c)?))),
            "prometheus" => {
                Some(|n, c| Ok(Box::new(parse_config::<PrometheusReceiverConfig>(n, c)?)))
            }
            "prometheus_remote_write" | "prometheusremotewrite" => {
                Some(|n, c| Ok(Box::new(parse_config::<RemoteWriteReceiverConfig>(n, c)?)))
            }
            "runtime" => Some(|n, c| Ok(Box::new(parse_config::<RuntimeReceiverConfig>(n, c)?))),
            _ => None,
        }
    }

    fn processor(&self, kind: &str) -> Option<ParseFn<dyn ProcessorConfig>> {
        match kind {
            "batch" => Some(|n, c| Ok(Box::new(parse_config::<BatchConfig>(n, c)?))),
            "normalize" => Some(|n, c| Ok(Box::new(parse_config::<NormalizeConfig>(n, c)?))),
            "labels" => Some(|n, c| Ok(Box::new(parse_config::<LabelsConfig>(n, c)?))),
            "route" => Some(|n, c| Ok(Box::new(parse_config::<RouteConfig>(n, c)?))),
            "limits" => Some(|n, c| Ok(Box::new(parse_config::<LimitsConfig>(n, c)?))),
            _ => None,
        }
    }

    fn exporter(&self, kind: &str) -> Option<ParseFn<dyn ExporterConfig>> {
        match kind {
            "otlp" | "otlp_grpc" => {
                Some(|n, c| Ok(Box::new(parse_config::<OtlpGrpcExporterConfig>(n, c)?)))
            }
            "otlp_http" | "otlphttp" => {
                Some(|n, c| Ok(Box::new(parse_config::<OtlpHttpExporterConfig>(n, c)?)))
            }
            "debug" => Some(|n, c| Ok(Box::new(parse_config::<DebugExporterConfig>(n, c)?))),
            "prometheus_remote_write" | "prometheusremotewrite" => {
                Some(|n, c| Ok(Box::new(parse_config::<RemoteWriteConfig>(n, c)?)))
            }
            "prometheus" => {
                Some(|n, c| Ok(Box::new(parse_config::<PrometheusExporterConfig>(n, c)?)))
            }
            _ => None,
        }
    }

    fn kinds(&self, class: Class) -> &'static [&'static str] {
        match class {
            Class::Receiver => &[
                "otlp",
                "prometheus",
                "prometheus_remote_write (alias prometheusremotewrite)",
                "runtime",
            ],
            Class::Processor => &["batch", "labels", "limits", "normalize", "route"],
            Class::Exporter => &[
                "otlp (alias otlp_grpc)",
                "otlp_http (alias otlphttp)",
                "debug",
                "prometheus_remote_write (alias prometheusremotewrite)",
                "prometheus",
            ],
        }
    }
}
