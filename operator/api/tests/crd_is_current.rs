//! The committed CRD must be exactly what the Rust types generate.

#[test]
fn committed_crd_matches_the_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(mvdns_api::CRD_FILE);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == mvdns_api::crd_yaml(),
        "{} is stale: run `cargo run -p mvdns-api --bin crdgen` and commit the result",
        mvdns_api::CRD_FILE
    );
}
