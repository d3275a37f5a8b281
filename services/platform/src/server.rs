//! What every gRPC server of the platform registers besides its own services: health and
//! reflection (v1 and v1alpha, so every grpcurl version can list and describe).

use tonic_reflection::server::{v1, v1alpha};

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
