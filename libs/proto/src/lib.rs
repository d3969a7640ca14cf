//! The xinyong contracts, generated from `proto/xinyong` at build time.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `FileDescriptorSet` of every xinyong proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xinyong_descriptor.bin"));

pub mod common {
    pub mod v1 {
        tonic::include_proto!("xinyong.common.v1");
    }
}
pub mod events {
    pub mod v1 {
        tonic::include_proto!("xinyong.events.v1");
    }
}
pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("xinyong.gateway.v1");
    }
}
pub mod registry {
    pub mod v1 {
        tonic::include_proto!("xinyong.registry.v1");
    }
}
pub mod ingestion {
    pub mod v1 {
        tonic::include_proto!("xinyong.ingestion.v1");
    }
}
pub mod grading {
    pub mod v1 {
        tonic::include_proto!("xinyong.grading.v1");
    }
}
pub mod sanctions {
    pub mod v1 {
        tonic::include_proto!("xinyong.sanctions.v1");
    }
}
pub mod lottery {
    pub mod v1 {
        tonic::include_proto!("xinyong.lottery.v1");
    }
}
pub mod objections {
    pub mod v1 {
        tonic::include_proto!("xinyong.objections.v1");
    }
}
