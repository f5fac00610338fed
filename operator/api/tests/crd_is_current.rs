//! The committed CRDs (in `crds/` and in the chart) must be exactly what the Rust types
//! generate.

#[test]
fn committed_crds_match_the_types() {
    for (file, generated) in mvdns_api::generated_files() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(file);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{file} is stale: run `cargo run -p mvdns-api --bin crdgen` and commit the result"
        );
    }
}
