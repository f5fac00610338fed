//! Writes the MultiValueRecordSet and MultiValueRecordSlice CRDs to `crds/` and the chart's `crds/` (or to stdout
//! with `-`).
//! `cargo test` fails when the committed file differs from what the types generate.

use std::path::Path;

fn main() -> std::io::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("-") => print!("{}{}", mvdns_api::crd_yaml(), mvdns_api::slice_crd_yaml()),
        _ => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            for (file, yaml) in mvdns_api::generated_files() {
                std::fs::write(root.join(file), &yaml)?;
                eprintln!("wrote {file}");
            }
        }
    }
    Ok(())
}
