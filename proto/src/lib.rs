//! The platform's gRPC contract, generated from `proto/aap/v1/*.proto`.
//!
//! Everything lives in [`v1`]: messages, `*_client` and `*_server` modules. The
//! [`FILE_DESCRIPTOR_SET`] feeds server reflection so grpcurl works without proto files.

#![allow(missing_docs)]

pub mod urls;

/// Package `aap.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("aap.v1");
}

/// The encoded descriptors of every `aap.v1` file, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("aap_descriptor");
