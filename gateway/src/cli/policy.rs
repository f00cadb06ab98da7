//! `custos policy test` and `custos policy lint`: casbin policies tested like code.

use super::{block_on, CliError};
use crate::policy::{cases, lint, Engine, PolicySet};
use clap::{Subcommand, ValueEnum};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub(super) enum PolicyCommand {
    /// Run a cases file against a model and policy: prints each mismatch with the rule
    /// that decided it; exit 0 when all pass, 1 on a mismatch, 2 on bad input.
    Test {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        policy: PathBuf,
        #[arg(long)]
        cases: PathBuf,
        /// An IdP group decided as a role, as `[policy.group_roles]` does: GROUP=ROLE
        /// (repeatable).
        #[arg(long = "group-role")]
        group_roles: Vec<String>,
        /// The engine that decides: `auto` (the one the gateway would use), `fast` (the
        /// indexed evaluator) or `casbin` (the `casbin` crate).
        #[arg(long, value_enum, default_value_t = EngineChoice::Auto)]
        engine: EngineChoice,
    },
    /// Check a model and policy: syntax errors with file:line (exit 1), and warnings for
    /// roles nobody holds, roles without permissions, repeated rules, rules that can never
    /// match, allow rules shadowed by a deny.
    Lint {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        policy: PathBuf,
    },
}

/// `--engine`: the gateway's own choice or one engine.
#[derive(Clone, Copy, ValueEnum)]
pub(super) enum EngineChoice {
    Auto,
    Fast,
    Casbin,
}

pub(super) fn run(command: PolicyCommand) -> Result<(), CliError> {
    match command {
        PolicyCommand::Test { model, policy, cases, group_roles, engine } => {
            test(&model, &policy, &cases, &group_roles, engine)
        }
        PolicyCommand::Lint { model, policy } => lint(&model, &policy),
    }
}

fn test(
    model: &Path,
    policy: &Path,
    cases: &Path,
    group_roles: &[String],
    engine: EngineChoice,
) -> Result<(), CliError> {
    let mut roles = BTreeMap::new();
    for g in group_roles {
        match g.split_once('=') {
            Some((group, role)) if !group.is_empty() && !role.is_empty() => {
                roles.insert(group.to_string(), role.to_string());
            }
            _ => return Err(CliError::Usage(format!("--group-role wants GROUP=ROLE, got `{g}`"))),
        }
    }
    let set = block_on(PolicySet::load(model, policy))??;
    let engine = match engine {
        EngineChoice::Auto => set.engine(),
        EngineChoice::Fast => Engine::Fast,
        EngineChoice::Casbin => Engine::Casbin,
    };
    if engine == Engine::Fast {
        if let Some(why) = &set.fallback {
            return Err(CliError::Usage(format!("the fast evaluator does not cover this model: {why}")));
        }
    }
    let list = cases::load(cases).map_err(|e| CliError::Usage(e.to_string()))?;
    let mismatches = cases::run_with(&set, &list, &roles, engine);
    for m in &mismatches {
        println!("FAIL {m}");
    }
    if mismatches.is_empty() {
        println!("ok: {} cases pass ({}, {}; {engine} engine)", list.len(), policy.display(), cases.display());
        Ok(())
    } else {
        println!("{} of {} cases fail", mismatches.len(), list.len());
        Err(CliError::Reported)
    }
}

fn lint(model: &Path, policy: &Path) -> Result<(), CliError> {
    let findings = block_on(lint::lint(model, policy))?;
    let mut errors = 0;
    for (file, f) in &findings {
        let level = if f.severity == lint::Severity::Error {
            errors += 1;
            "error"
        } else {
            "warning"
        };
        match f.line {
            Some(l) => println!("{file}:{l}: {level}: {}", f.message),
            None => println!("{file}: {level}: {}", f.message),
        }
    }
    println!("{} errors, {} warnings", errors, findings.len() - errors);
    if errors > 0 {
        Err(CliError::Reported)
    } else {
        Ok(())
    }
}
