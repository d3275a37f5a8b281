//! What every gRPC server of the platform registers besides its own services: health and
//! reflection (v1 and v1alpha, so every grpcurl version can list and describe).

use tonic_reflection::server::{v1, v1alpha};

/// Largest request message each service decodes; a larger one is refused with
/// RESOURCE_EXHAUSTED before it is read into memory.
pub mod limits {
    /// Asks and watches: a prompt (8 KiB by default) and at most 32 targets.
    pub const ANSWERS: usize = 1 << 20;
    /// Token administration.
    pub const ADMIN: usize = 64 << 10;
    /// Accounts with their session states (cookies and localStorage of every origin).
    pub const SESSIONS: usize = 8 << 20;
    /// Submissions: up to 4,000,000 characters of page HTML, the text, markdown and citations.
    pub const EVALUATIONS: usize = 24 << 20;
}

/// Errors building the reflection services.
pub type ReflectionError = tonic_reflection::server::Error;

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(aap_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Reflection v1 over the `aap.v1` services and health.
pub fn reflection_v1() -> Result<v1::ServerReflectionServer<impl v1::ServerReflection>, ReflectionError> {
    reflection_builder().build_v1()
}

/// Reflection v1alpha (what older grpcurl builds ask for).
pub fn reflection_v1alpha() -> Result<v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>, ReflectionError>
{
    reflection_builder().build_v1alpha()
}
