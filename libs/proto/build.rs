//! Compiles every `.proto` under `proto/` with protox (pure Rust), so no `protoc` is needed.

use std::path::PathBuf;

const FILES: &[&str] = &[
    "xinyong/common/v1/common.proto",
    "xinyong/events/v1/events.proto",
    "xinyong/gateway/v1/gateway.proto",
    "xinyong/registry/v1/registry.proto",
    "xinyong/ingestion/v1/ingestion.proto",
    "xinyong/grading/v1/grading.proto",
    "xinyong/sanctions/v1/sanctions.proto",
    "xinyong/lottery/v1/lottery.proto",
    "xinyong/objections/v1/objections.proto",
    "xinyong/reports/v1/reports.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());

    let files: Vec<PathBuf> = FILES.iter().map(|file| root.join(file)).collect();
    let descriptors = protox::compile(&files, [&root])?;

    // The reflection service at the gateway serves this set, so it lists every service.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_bytes = prost::Message::encode_to_vec(&descriptors);
    std::fs::write(out_dir.join("xinyong_descriptor.bin"), descriptor_bytes)?;

    // A record's category fields as a BTreeMap: they are stored and digested sorted by name, so
    // ingestion moves the decoded map as it is instead of rebuilding it (and no hashing per entry).
    // A credit report carries records, and its digest is over its encoding: sorted maps make that
    // encoding the same however often the report is decoded and encoded again.
    tonic_prost_build::configure()
        .btree_map(".xinyong.ingestion.v1")
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
