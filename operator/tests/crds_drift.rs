//! The committed `crds/*.yaml` must be exactly what the Rust types generate.

use std::path::Path;

use ferry_operator::api::crds;

#[test]
fn committed_crds_match_the_rust_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds");
    for crd in crds::all() {
        let path = dir.join(crds::file_name(&crd));
        let committed = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is missing ({e}): run `make crds`", path.display()));
        let generated = crds::to_yaml(&crd).expect("CRD serializes");
        assert!(
            committed == generated,
            "{} drifted from operator/src/api: run `make crds` and commit the result",
            path.display()
        );
    }
}
