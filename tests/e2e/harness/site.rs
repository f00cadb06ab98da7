//! The demo ePHI upstream (in-process, recording every request it receives) and the
//! repository's example policies.

pub async fn demo() -> demo_ephi::Demo {
    demo_ephi::start("127.0.0.1:0".parse().unwrap(), true, None).await.expect("start the demo upstream")
}

pub fn policies() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}
