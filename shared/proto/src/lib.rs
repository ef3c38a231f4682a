//! Generated Rust code for every Tenantry API (`proto/`), and the encoded descriptor set that the
//! services serve through reflection.
//!
//! Nothing here is committed generated code: `build.rs` compiles the protos with protox on
//! every build.

#![allow(
    clippy::all,
    clippy::pedantic,
    unreachable_pub,
    missing_docs,
    rust_2018_idioms,
    reason = "generated code"
)]

pub use prost;
pub use prost_types;
pub use tonic;

/// The encoded `FileDescriptorSet` of every Tenantry proto (with comments), for reflection and
/// for tests that enumerate every RPC.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tenantry_descriptor");

/// Types shared by every API: tenant status, tier, roles, features, limits.
pub mod common {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("tenantry.common.v1");
    }
}

/// tenant-admin: tenants, organizations, billing, usage, audit, login.
pub mod admin {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("tenantry.admin.v1");
    }
}

/// tenant-settings: settings, features, limits, integrations.
pub mod settings {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("tenantry.settings.v1");
    }
}

/// provisioning: provisioning and deprovisioning workflows, backups.
pub mod provisioning {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("tenantry.provisioning.v1");
    }
}
