//! Writes the MultiValueRecordSet CRD to `crds/` (or to stdout with `-`).
//! `cargo test` fails when the committed file differs from what the types generate.

use std::path::Path;

fn main() -> std::io::Result<()> {
    let yaml = mvdns_api::crd_yaml();
    match std::env::args().nth(1).as_deref() {
        Some("-") => print!("{yaml}"),
        _ => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let path = root.join(mvdns_api::CRD_FILE);
            std::fs::write(&path, yaml)?;
            eprintln!("wrote {}", mvdns_api::CRD_FILE);
        }
    }
    Ok(())
}
