//! `custos audit verify|tail|redeliver`: check a chain (and its checkpoint in Redis),
//! follow records as they arrive, queue dead letters for the running gateway.

use super::{failed, CliError};
use crate::audit::{sinks, verify};
use clap::Subcommand;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Subcommand)]
pub(super) enum AuditCommand {
    /// Verify a chain: names the first altered, missing, inserted or reordered record
    /// and checks signed checkpoints. Exit 0 when it holds, 1 when not, 2 on bad input.
    Verify {
        /// Hex Ed25519 public key, or a file holding it (the audit dir's `signing-key.pub`).
        #[arg(long)]
        key: Option<String>,
        /// Also compare with the latest checkpoint kept in Redis (detects a cut tail).
        #[arg(long)]
        redis: Option<String>,
        /// Allow a chain that starts after seq 1 (a spool whose delivered segments were
        /// collected); otherwise a missing start is a removed head.
        #[arg(long)]
        partial: bool,
        /// The stream key the Redis sink writes (`audit.redis.stream`).
        #[arg(long, default_value = "custos:audit")]
        stream: String,
        /// Segment files in order, or the audit directory.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print records as they arrive, from the Redis stream or from an audit directory.
    Tail {
        #[arg(long, conflicts_with = "dir")]
        redis: Option<String>,
        #[arg(long, default_value = "custos:audit")]
        stream: String,
        /// An audit directory (the spool) to follow instead of Redis.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Start from the oldest record instead of new ones only.
        #[arg(long)]
        from_start: bool,
    },
    /// Send dead letters again (records a receiver refused for good, kept in
    /// DIR/dead-letters/SINK/): queues them for the running gateway's sink, which
    /// delivers them like any batch and records `audit.redelivered` (or the next start
    /// does). Fix the receiver first.
    Redeliver {
        /// The audit directory (`audit.dir`).
        #[arg(long)]
        dir: PathBuf,
        /// Only this sink's (`webhook`, `otlp`, `redis`, `file`, `alert-…`); default: all.
        #[arg(long)]
        sink: Option<String>,
    },
}

pub(super) fn run(command: AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::Verify { key, redis, partial, stream, files } => {
            verify(key, redis.as_deref(), &stream, partial, &files)
        }
        AuditCommand::Tail { redis, stream, dir, from_start } => match dir {
            Some(dir) => tail_dir(&dir, from_start),
            None => tail_redis(redis.as_deref(), &stream, from_start),
        },
        AuditCommand::Redeliver { dir, sink } => redeliver(&dir, sink.as_deref()),
    }
}

/// `--key`: 64 hex digits, or a file holding them; lower-cased.
fn public_key(k: String) -> Result<String, CliError> {
    let text = if Path::new(&k).is_file() { std::fs::read_to_string(&k).unwrap_or_default() } else { k };
    let text = text.trim().to_ascii_lowercase();
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CliError::Usage("--key wants 64 hex digits (an Ed25519 public key) or a file holding them".into()));
    }
    Ok(text)
}

fn verify(
    key: Option<String>,
    redis_url: Option<&str>,
    stream: &str,
    partial: bool,
    files: &[PathBuf],
) -> Result<(), CliError> {
    let key = key.map(public_key).transpose()?;
    let files = verify::expand(files);
    let r = verify::verify_from(&files, key.as_deref().map(str::as_bytes), partial)
        .map_err(|f| CliError::Unverified(f.to_string()))?;
    if let Some(url) = redis_url {
        let seq = against_redis_checkpoint(&r, url, stream, key.as_deref())?;
        println!("ok: matches the checkpoint kept in Redis (seq {seq})");
    }
    println!(
        "ok: {} records, seq {}..{}, instance {}, {} checkpoints{}",
        r.records,
        r.first_seq,
        r.last_seq,
        r.instance,
        r.checkpoints,
        if r.signatures_checked { " (signatures verified)" } else { " (signatures NOT checked: pass --key)" }
    );
    match r.last_checkpoint {
        Some(c) if r.unsigned_tail > 0 => println!(
            "note: {} records after the last checkpoint (seq {c}); a cut tail after it is detectable only against the checkpoint kept outside this file",
            r.unsigned_tail
        ),
        None => println!("note: no checkpoint yet; a cut tail is detectable only against the checkpoint kept outside this file"),
        _ => {}
    }
    Ok(())
}

/// Compares a verified chain with the checkpoint the Redis sink keeps (signed by `key`
/// when one is given); returns the checkpoint's seq.
fn against_redis_checkpoint(r: &verify::Report, url: &str, stream: &str, key: Option<&str>) -> Result<u64, CliError> {
    let redis_key = sinks::redis::checkpoint_key(stream, &r.instance);
    let m: HashMap<String, String> = redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(3)))
        .and_then(|mut c| redis::cmd("HGETALL").arg(&redis_key).query(&mut c))
        .map_err(|e| CliError::Usage(format!("cannot read the checkpoint from Redis: {e}")))?;
    if m.is_empty() {
        return Err(CliError::Unverified(format!(
            "Redis holds no checkpoint for instance {} under {redis_key}",
            r.instance
        )));
    }
    let (Some(seq), Some(hash)) = (m.get("seq").and_then(|s| s.parse::<u64>().ok()), m.get("hash")) else {
        return Err(CliError::Unverified("the checkpoint in Redis is malformed".into()));
    };
    if let Some(k) = key {
        let signed = m.get("key").is_some_and(|mk| mk == k)
            && m.get("sig").and_then(|s| hex::decode(s).ok()).is_some_and(|sig| {
                let msg = crate::audit::event::Checkpoint::message(&r.instance, seq, hash);
                hex::decode(k).is_ok_and(|pk| {
                    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, pk)
                        .verify(msg.as_bytes(), &sig)
                        .is_ok()
                })
            });
        if !signed {
            return Err(CliError::Unverified("the checkpoint in Redis is not signed by the given key".into()));
        }
    }
    verify::check_against_checkpoint(r, seq, hash).map_err(|why| CliError::Unverified(why.to_string()))?;
    Ok(seq)
}

fn redeliver(dir: &Path, sink: Option<&str>) -> Result<(), CliError> {
    if sink.is_some_and(|s| s.is_empty() || s.contains(['/', '\\']) || s.starts_with('.')) {
        return Err(CliError::Usage("--sink is a sink's name, e.g. webhook".into()));
    }
    if !dir.join("instance").exists() {
        return Err(CliError::Usage(format!("{} is not an audit directory", dir.display())));
    }
    let list = sinks::queue_redelivery(dir, sink).map_err(failed)?;
    let mut any = false;
    for (sink, batches, records) in list {
        any |= batches > 0;
        println!("{sink}: {records} records in {batches} dead letters queued for redelivery");
    }
    if any {
        println!(
            "the running gateway delivers them within seconds (else the next start does) and records audit.redelivered"
        );
    } else {
        println!("no dead letters");
    }
    Ok(())
}

/// Writes one record and a newline; false when stdout is gone (the reader quit).
fn emit(out: &mut impl Write, record: &[u8]) -> bool {
    out.write_all(record).and_then(|_| out.write_all(b"\n")).and_then(|_| out.flush()).is_ok()
}

/// Follows the spool in `dir`. Ends (successfully) only when stdout closes.
fn tail_dir(dir: &Path, from_start: bool) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    let start = if from_start {
        1
    } else {
        verify::verify_from(&verify::expand(&[dir.to_path_buf()]), None, true)
            .map_or(1, |r| r.last_seq.saturating_add(1))
    };
    let mut reader = sinks::SpoolReader::new(dir, start);
    loop {
        let lines = reader.read(u64::MAX, 256).map_err(failed)?;
        if lines.is_empty() {
            std::thread::sleep(Duration::from_millis(200));
        }
        for l in lines {
            if !emit(&mut out, &l.bytes) {
                return Ok(());
            }
        }
    }
}

/// Follows the Redis stream. Ends (successfully) only when stdout closes.
fn tail_redis(redis_url: Option<&str>, stream: &str, from_start: bool) -> Result<(), CliError> {
    let Some(url) = redis_url else {
        return Err(CliError::Usage("audit tail needs --redis URL or --dir DIR".into()));
    };
    let mut conn = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .map_err(|e| CliError::Usage(format!("cannot connect to Redis: {e}")))?;
    let mut out = std::io::stdout().lock();
    let mut last = if from_start { "0".to_string() } else { "$".to_string() };
    loop {
        let reply: redis::RedisResult<Option<redis::streams::StreamReadReply>> = redis::cmd("XREAD")
            .arg("BLOCK")
            .arg(5000)
            .arg("COUNT")
            .arg(256)
            .arg("STREAMS")
            .arg(stream)
            .arg(&last)
            .query(&mut conn);
        let r = match reply {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(failed(e)),
        };
        for key in r.keys {
            for entry in key.ids {
                if let Some(redis::Value::BulkString(b)) = entry.map.get("record") {
                    if !emit(&mut out, b) {
                        return Ok(());
                    }
                }
                last = entry.id;
            }
        }
    }
}
