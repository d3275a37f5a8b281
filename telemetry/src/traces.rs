//! OTLP trace export, as every binary of the project does it: spans go over OTLP/gRPC to
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or an endpoint given), batched, with the service's name.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Whether the environment asks for trace export (`OTEL_EXPORTER_OTLP_ENDPOINT` is set).
pub fn export_requested() -> bool {
    std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
}

/// A tracer provider exporting over OTLP/gRPC to `OTEL_EXPORTER_OTLP_ENDPOINT`.
///
/// Must be called inside a Tokio runtime: the exporter's channel lives on it.
pub fn otlp_provider(service: &'static str) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?;
    Ok(batch_provider(service, exporter))
}

/// A tracer provider exporting over OTLP/gRPC to `endpoint` (e.g. `http://127.0.0.1:4317`),
/// whatever the environment says: for tests and tools that run their own collector.
///
/// Must be called inside a Tokio runtime: the exporter's channel lives on it.
pub fn otlp_provider_to(
    service: &'static str,
    endpoint: &str,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build()?;
    Ok(batch_provider(service, exporter))
}

fn batch_provider(service: &'static str, exporter: opentelemetry_otlp::SpanExporter) -> SdkTracerProvider {
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(service).build();
    SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build()
}

/// Makes `span` a child of the W3C trace context in `carrier` (`traceparent`, `tracestate`),
/// when it holds one. Call it before the span is first entered: a started span keeps the parent
/// it started with.
pub fn set_parent(span: &tracing::Span, carrier: &HashMap<String, String>) {
    if carrier.is_empty() {
        return;
    }
    let parent = TraceContextPropagator::new().extract(carrier);
    // An error means the span is disabled or already started; there is nothing to link then.
    let _ = span.set_parent(parent);
}

/// Keeps trace export running; dropping it flushes the spans not yet sent and stops it.
#[must_use = "dropping the guard stops trace export"]
#[derive(Debug, Default)]
pub struct ExportGuard {
    provider: Option<SdkTracerProvider>,
}

impl ExportGuard {
    /// Guards `provider` (nothing when `None`: export is off).
    pub fn new(provider: Option<SdkTracerProvider>) -> ExportGuard {
        ExportGuard { provider }
    }
}

impl Drop for ExportGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("trace export did not shut down cleanly: {err}");
        }
    }
}
