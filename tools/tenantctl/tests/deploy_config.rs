//! The deployment files agree with the code: every variable `docker-compose.yml` and
//! `deploy/k8s/` set is one the services read, every required one is set, and README documents
//! every variable the code reads. There is no Docker engine here, so this is the check that the
//! same stack the tests run is what compose and Kubernetes would run.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_dir() {
            // Test code may read variables the services never do.
            if name != "tests" && name != "target" {
                rust_sources(&p, out);
            }
        } else if name.ends_with(".rs") && name != "build.rs" {
            out.push(p);
        }
    }
}

/// Names passed to the config readers: `var("X")`, `required("X")`, `parsed("X", ..)`,
/// `flag("X", ..)`, clap's `env = "X"`, and `ConfigError::Missing("X")` (required).
fn variables_read() -> (BTreeSet<String>, BTreeSet<String>) {
    variables_read_in(&["services", "shared", "tools"])
}

/// The variables `service` must be given: those required by the shared crates and the tools,
/// and those required by the service's own crate (`TENANTRY_SECRETS_KEY` is tenant-settings'
/// alone, and the other services are not handed that key).
fn required_for(service: &str) -> BTreeSet<String> {
    variables_read_in(&["shared", "tools", &format!("services/{service}")]).1
}

fn variables_read_in(dirs: &[&str]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut files = Vec::new();
    for dir in dirs {
        rust_sources(&root().join(dir), &mut files);
    }
    // `tracing_subscriber::EnvFilter::try_from_default_env` reads RUST_LOG without naming it.
    let mut read = BTreeSet::from(["RUST_LOG".to_owned()]);
    let mut required = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (pattern, is_required) in [
            ("var(\"", false),
            ("required(\"", true),
            ("parsed(\"", false),
            ("flag(\"", false),
            ("env = \"", false),
            ("Missing(\"", true),
        ] {
            let mut rest = text.as_str();
            while let Some(i) = rest.find(pattern) {
                rest = &rest[i + pattern.len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if name.len() > 2 && rest[name.len()..].starts_with('"') {
                    read.insert(name.clone());
                    if is_required {
                        required.insert(name);
                    }
                }
            }
        }
    }
    (read, required)
}

fn yaml(path: &Path) -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let mut v = serde_yaml::Value::deserialize(doc).unwrap();
            v.apply_merge().unwrap();
            v
        })
        .collect()
}

use serde::Deserialize as _;

#[test]
fn the_code_reads_the_core_variables() {
    let (read, required) = variables_read();
    for v in [
        "DATABASE_URL",
        "TENANTRY_JWT_SECRET",
        "TENANT_ADMIN_ADDR",
        "PROVISIONING_URL",
    ] {
        assert!(read.contains(v), "{v} not found among {read:?}");
    }
    assert!(required.contains("DATABASE_URL"));
    assert!(required.contains("TENANTRY_JWT_SECRET"));
    assert!(required.contains("TENANTRY_SECRETS_KEY"));
    assert!(required_for("tenant-settings").contains("TENANTRY_SECRETS_KEY"));
    assert!(!required_for("tenant-admin").contains("TENANTRY_SECRETS_KEY"));
}

#[test]
fn compose_sets_only_variables_the_services_read_and_every_required_one() {
    let (read, _) = variables_read();
    let doc = yaml(&root().join("docker-compose.yml")).remove(0);
    let services = doc.get("services").unwrap().as_mapping().unwrap();
    for name in ["tenant-admin", "tenant-settings", "provisioning"] {
        let svc = services
            .get(name)
            .unwrap_or_else(|| panic!("compose has no {name}"));
        let env = svc.get("environment").unwrap().as_mapping().unwrap();
        let keys: BTreeSet<String> = env.keys().map(|k| k.as_str().unwrap().to_owned()).collect();
        for k in &keys {
            assert!(
                read.contains(k),
                "compose sets {k} for {name}, which no service reads"
            );
        }
        for r in &required_for(name) {
            assert!(
                keys.contains(r),
                "compose does not set the required {r} for {name}"
            );
        }
        assert!(
            svc.get("healthcheck").is_some(),
            "{name} has no health check"
        );
    }
    let migrate = services.get("migrate").unwrap();
    let env = migrate.get("environment").unwrap();
    assert!(
        env.get("DATABASE_ADMIN_URL").is_some(),
        "the migrate job needs DATABASE_ADMIN_URL"
    );
    for sink in ["postgres", "smtp"] {
        assert!(services.get(sink).is_some(), "compose has no {sink}");
    }
}

#[test]
fn kubernetes_manifests_set_only_variables_the_services_read() {
    let (read, _) = variables_read();
    let k8s = root().join("deploy/k8s");
    let config: BTreeSet<String> = yaml(&k8s.join("configmap.yaml"))[0]
        .get("data")
        .unwrap()
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect();
    for k in &config {
        assert!(
            read.contains(k),
            "the ConfigMap sets {k}, which no service reads"
        );
    }
    for name in ["tenant-admin", "tenant-settings", "provisioning"] {
        let docs = yaml(&k8s.join(format!("{name}.yaml")));
        let kinds: Vec<&str> = docs
            .iter()
            .map(|d| d.get("kind").unwrap().as_str().unwrap())
            .collect();
        for kind in [
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
            "PodDisruptionBudget",
        ] {
            assert!(kinds.contains(&kind), "{name}.yaml has no {kind}");
        }
        let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
        let container = &deployment["spec"]["template"]["spec"]["containers"][0];
        assert!(
            container["readinessProbe"]["grpc"]["port"].is_number(),
            "{name}: readiness"
        );
        assert!(
            container["livenessProbe"]["grpc"]["port"].is_number(),
            "{name}: liveness"
        );
        let mut keys = config.clone();
        for e in container["env"].as_sequence().unwrap() {
            let k = e["name"].as_str().unwrap().to_owned();
            assert!(
                read.contains(&k),
                "{name}.yaml sets {k}, which no service reads"
            );
            keys.insert(k);
        }
        for r in &required_for(name) {
            assert!(
                keys.contains(r),
                "{name}.yaml does not set the required {r}"
            );
        }
    }
}

#[test]
fn readme_documents_every_variable_the_code_reads() {
    let (read, _) = variables_read();
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let missing: Vec<&String> = read
        .iter()
        .filter(|v| !readme.contains(&format!("`{v}`")))
        .collect();
    assert!(missing.is_empty(), "README does not document {missing:?}");
}
