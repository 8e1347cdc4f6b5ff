//! Writes Ferry's CRDs as YAML files into a directory (default `crds/`).

use std::path::PathBuf;
use std::process::ExitCode;

use ferry_operator::api::crds;

fn main() -> ExitCode {
    let dir = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "crds".into()));
    for crd in crds::all() {
        let path = dir.join(crds::file_name(&crd));
        let written = crds::to_yaml(&crd)
            .map_err(|e| e.to_string())
            .and_then(|yaml| std::fs::write(&path, yaml).map_err(|e| e.to_string()));
        if let Err(error) = written {
            eprintln!("ferry-crdgen: cannot write {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    ExitCode::SUCCESS
}
