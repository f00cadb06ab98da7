//! No Docker engine runs here, so the compose file is checked as data: it must not rot.

use crate::harness::CUSTOS;
use std::path::Path;

#[test]
fn compose_file_runs_the_gateway_with_the_demo_upstream() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let services = doc["services"].as_mapping().expect("services");
    for name in ["gateway", "demo-ephi", "redis", "otel-collector", "idp", "postgres"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let gw = &doc["services"]["gateway"];
    // The gateway shares the provider's network namespace (one issuer URL for the
    // browser and the gateway), so its port is published there.
    assert_eq!(gw["network_mode"], "service:idp");
    let idp = &doc["services"]["idp"];
    let ports: Vec<&str> = idp["ports"].as_sequence().unwrap().iter().filter_map(|p| p.as_str()).collect();
    assert!(ports.contains(&"8080:8080") && ports.contains(&"127.0.0.1:4400:4400"), "{ports:?}");
    assert!(
        format!("{:?}", idp["command"]).contains("custos-compose"),
        "the provider does not know the gateway's client"
    );
    // The config it mounts exists and names the demo service as its upstream.
    let volumes: Vec<&str> = gw["volumes"].as_sequence().unwrap().iter().filter_map(|p| p.as_str()).collect();
    let mount = volumes.iter().find(|v| v.contains("docker.toml")).expect("the gateway config is mounted");
    let host_path = mount.split(':').next().unwrap();
    let config = root.join(host_path);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("http://demo-ephi:9000"), "the config does not point at the demo service");
    // The audit sinks point at the compose services, and the spool is on a volume.
    assert!(text.contains("redis://redis:6379/") && text.contains("http://otel-collector:4318"), "{text}");
    assert!(volumes.iter().any(|v| v.ends_with(":/var/lib/custos/audit")), "{volumes:?}");
    let collector = &doc["services"]["otel-collector"]["volumes"];
    let mounted = collector.as_sequence().unwrap().iter().filter_map(|v| v.as_str()).next().unwrap();
    let otel: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(root.join(mounted.split(':').next().unwrap())).unwrap())
            .unwrap();
    assert_eq!(otel["receivers"]["otlp"]["protocols"]["http"]["endpoint"], "0.0.0.0:4318");
    let container_path = mount.split(':').nth(1).unwrap();
    let command: Vec<&str> = gw["command"].as_sequence().unwrap().iter().filter_map(|p| p.as_str()).collect();
    assert!(command.contains(&container_path), "the gateway does not run the mounted config: {command:?}");
    // And it validates (without resolving the compose network's names).
    let out = std::process::Command::new(CUSTOS)
        .args(["check", "--config"])
        .arg(&config)
        .env("CUSTOS_OIDC_CLIENT_SECRET", "compose-check")
        .env("CUSTOS_EHR_RO_PASSWORD", "compose-check")
        .env("CUSTOS_EHR_ADMIN_PASSWORD", "compose-check")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let demo_cmd = format!("{:?}", doc["services"]["demo-ephi"]["command"]);
    assert!(demo_cmd.contains("0.0.0.0:9000"), "demo must listen where the gateway looks: {demo_cmd}");
}

/// The postgres service: the official image, in the gateway's network namespace (the
/// config's upstream and listener are on its loopback), the synthetic database of
/// examples/patients.sql loaded by the init script with the passwords from the
/// environment, which the gateway's config reads from the same variables.
#[test]
fn compose_file_runs_postgres_with_the_synthetic_database() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("docker-compose.yml")).unwrap();
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let pg = &doc["services"]["postgres"];
    assert!(pg["image"].as_str().is_some_and(|i| i.starts_with("postgres:")), "{:?}", pg["image"]);
    assert_eq!(pg["network_mode"], "service:idp");
    let volumes: Vec<&str> = pg["volumes"].as_sequence().unwrap().iter().filter_map(|v| v.as_str()).collect();
    let init = volumes.iter().find(|v| v.contains("/docker-entrypoint-initdb.d/")).expect("no init script");
    let init_text = std::fs::read_to_string(root.join(init.split(':').next().unwrap())).unwrap();
    let sql = volumes.iter().find(|v| v.ends_with("patients.sql:ro")).expect("patients.sql is not mounted");
    assert!(init_text.contains(sql.split(':').nth(1).unwrap()), "the init script does not load {sql}");
    let sql_text = std::fs::read_to_string(root.join(sql.split(':').next().unwrap())).unwrap();
    assert!(sql_text.contains("CREATE TABLE patients") && sql_text.contains("GRANT SELECT ON patients TO ehr_ro"));
    // Passwords from the environment, never written in the files.
    let env = format!("{:?}", pg["environment"]);
    for var in ["EHR_RO_PASSWORD", "EHR_ADMIN_PASSWORD", "POSTGRES_PASSWORD"] {
        assert!(env.contains(var), "{var} is not set for postgres: {env}");
        assert!(init_text.contains(var) || var == "POSTGRES_PASSWORD", "the init script does not use {var}");
    }
    assert!(!sql_text.contains("PASSWORD '"), "a password is written in patients.sql");
    // The gateway's config serves it, on the namespace's loopback.
    let config = std::fs::read_to_string(root.join("examples/docker.toml")).unwrap();
    let cfg: toml::Table = config.parse().unwrap();
    assert_eq!(cfg["listen"]["postgres"].as_str(), Some("127.0.0.1:6432"));
    let db = &cfg["databases"].as_array().expect("no [[databases]]")[0];
    assert_eq!((db["name"].as_str(), db["host"].as_str(), db["port"].as_integer()), (Some("ehr"), Some("127.0.0.1"), Some(5432)));
    assert!(config.contains("env = \"CUSTOS_EHR_RO_PASSWORD\"") && config.contains("env = \"CUSTOS_EHR_ADMIN_PASSWORD\""));
    assert!(text.contains("CUSTOS_EHR_RO_PASSWORD:") && text.contains("CUSTOS_EHR_ADMIN_PASSWORD:"), "the gateway's variables");
}
