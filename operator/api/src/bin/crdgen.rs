//! Writes the MultiValueRecordSet CRD to `crds/` and the chart's `crds/` (or to stdout
//! with `-`).
//! `cargo test` fails when the committed file differs from what the types generate.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let yaml = mvdns_api::crd_yaml();
    match std::env::args().nth(1).as_deref() {
        Some("-") => print!("{yaml}"),
        _ => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            for file in [mvdns_api::CRD_FILE, mvdns_api::CHART_CRD_FILE] {
                std::fs::write(root.join(file), &yaml)?;
                eprintln!("wrote {file}");
            }
        }
    }
    Ok(())
}
