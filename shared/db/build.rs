//! `embed_migrations!` cannot see new migration folders by itself; the fingerprint lets test
//! templates notice a changed schema.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

fn walk(dir: &Path, hasher: &mut DefaultHasher) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        println!("cargo:rerun-if-changed={}", p.display());
        p.file_name().hash(hasher);
        if p.is_dir() {
            walk(&p, hasher);
        } else if let Ok(bytes) = std::fs::read(&p) {
            bytes.hash(hasher);
        }
    }
}

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    let mut hasher = DefaultHasher::new();
    walk(Path::new("migrations"), &mut hasher);
    println!(
        "cargo:rustc-env=TENANTRY_SCHEMA_FINGERPRINT={:016x}",
        hasher.finish()
    );
}
