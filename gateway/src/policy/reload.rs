//! The files a gateway's policy comes from, and reloading them when they change (or on
//! SIGHUP): a new set goes in only if it loads and passes its cases.

use super::*;

pub use crate::config::policy::PolicyFiles;

impl PolicyFiles {
    /// Loads the files and runs the cases (when configured): the set only if all pass.
    pub async fn load_and_test(&self) -> Result<PolicySet, PolicyError> {
        let set = PolicySet::load(&self.model, &self.policy).await?;
        if let Some(c) = &self.cases {
            // `cases::load` names the file (and line) in its message: once is enough.
            let list = cases::load(c).map_err(|m| {
                let rest = m.strip_prefix(&format!("{}:", c.display())).unwrap_or(&m).trim_start();
                match rest.split_once(": ").map(|(l, msg)| (l.parse::<usize>(), msg)) {
                    Some((Ok(line), msg)) => err(c, Some(line), msg),
                    _ => err(c, None, rest),
                }
            })?;
            let failed =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cases::run(&set, &list, &self.group_roles)))
                    .map_err(|_| err(c, None, "running the cases panicked"))?;
            if let Some(first) = failed.first() {
                return Err(err(c, None, format!("{} of {} cases fail; first: {first}", failed.len(), list.len())));
            }
        }
        Ok(set)
    }

    /// [`PolicyFiles::load_and_test`] outside any runtime (config checks, start).
    pub fn load_checked(&self) -> Result<PolicySet, PolicyError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| err(&self.policy, None, format!("cannot start a runtime: {e}")))?;
        rt.block_on(self.load_and_test())
    }

    /// The check `custos check` and `serve` make at load: the files load and their
    /// cases pass, or a config error at the key of the file at fault.
    pub fn check_config(cfg: &crate::config::Config) -> Result<(), crate::config::ConfigError> {
        let Some(files) = &cfg.policy else { return Ok(()) };
        files.load_checked().map(drop).map_err(|e| {
            let key = if e.file == files.model {
                "policy.model"
            } else if Some(&e.file) == files.cases.as_ref() {
                "policy.cases"
            } else {
                "policy.policy"
            };
            crate::config::ConfigError { file: cfg.file.clone(), key: key.into(), line: None, message: e.to_string() }
        })
    }

    /// What the files hold now (SHA-256 of each), to see any change.
    fn stamp(&self) -> Vec<Option<String>> {
        std::iter::once(&self.model)
            .chain(std::iter::once(&self.policy))
            .chain(self.cases.iter())
            .map(|p| std::fs::read(p).ok().map(|b| crate::session::sha256_hex(&b)))
            .collect()
    }
}

/// Reloads the policy when its files change (polled) or on SIGHUP, in a thread of its
/// own: a new set goes in only if it loads and passes its cases; otherwise the last good
/// one stays. Both outcomes are audited.
pub fn watch(policy: Arc<Policy>, files: PolicyFiles, audit: Option<crate::audit::Audit>) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("custos-policy".into()).spawn(move || {
        rt.block_on(async move {
            let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "no SIGHUP handler: policy reloads on file change only");
                    None
                }
            };
            // What is in force: the hashes of what was loaded (a change between the
            // start's load and here is seen at the first poll).
            let current = policy.current();
            let mut seen: Vec<Option<String>> = vec![Some(current.hashes.0.clone()), Some(current.hashes.1.clone())];
            if let Some(c) = &files.cases {
                seen.push(std::fs::read(c).ok().map(|b| crate::session::sha256_hex(&b)));
            }
            let mut tick = tokio::time::interval(files.poll);
            loop {
                let signalled = tokio::select! {
                    _ = tick.tick() => false,
                    Some(_) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
                };
                let now = files.stamp();
                if !signalled && now == seen {
                    continue;
                }
                if !signalled {
                    // A file being written: wait until two reads agree.
                    tokio::time::sleep(files.poll / 2).await;
                    if files.stamp() != now {
                        continue;
                    }
                }
                seen = now;
                let why = if signalled { "SIGHUP" } else { "file change" };
                match files.load_and_test().await {
                    Ok(set) => {
                        let hashes = format!("model={} policy={}", set.hashes.0, set.hashes.1);
                        let engine = set.engine();
                        policy.swap(set);
                        tracing::info!(why, %hashes, %engine, "policy reloaded");
                        if let Some(a) = &audit {
                            let mut ev = crate::audit::Event::new(crate::audit::Kind::PolicyReloaded);
                            ev.rule = Some(hashes);
                            ev.reason = Some(crate::audit::Reason::named(why));
                            a.append(ev);
                        }
                    }
                    Err(e) => {
                        tracing::error!(why, error = %e, "policy reload refused; the last good policy stays in force");
                        if let Some(a) = &audit {
                            let mut ev = crate::audit::Event::new(crate::audit::Kind::PolicyReloadRejected);
                            ev.reason = Some(crate::audit::Reason::message(e.to_string()));
                            a.append(ev);
                        }
                    }
                }
            }
        });
    })?;
    Ok(())
}
