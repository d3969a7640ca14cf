//! `xinyong-cli`: operator commands.
//!
//! ```text
//! xinyong-cli provision --admin-url URL --database NAME --password SECRET
//!     create the database, a login role and an owned schema per service; prints `service url` lines
//! xinyong-cli drop --admin-url URL --database NAME
//!     drop a provisioned database and its roles
//! xinyong-cli ingest --file records.csv [--gateway URL] [--rejects FILE]   (token in XINYONG_TOKEN)
//!         [--ca-file CA.pem] [--certificate CERT.pem --key KEY.pem [--sign]]  (an https:// gateway)
//!     stream a CSV or JSON-lines file of credit records through SubmitRecords
//! xinyong-cli audit-verify --database-url URL [--seq N --hash HEX] [--from-seq N --from-hash HEX]
//!     walk the gateway's audit log and say whether every entry follows the one before it, and
//!     whether entry N still has the hash kept outside the platform; from an entry verified before
//! xinyong-cli events-replay --admin-url URL --database NAME --since TIME [--service NAME]
//!     after Redis lost its streams: publish again every event published since TIME
//! xinyong-cli listings-announce --database-url URL
//!     sanctions announces every standing listing again, with its record
//! ```

use std::process::ExitCode;

use xinyong_platform::config::SERVICES;
use xinyong_platform::db;

const USAGE: &str = "usage:
  xinyong-cli provision --admin-url URL --database NAME --password SECRET
  xinyong-cli drop --admin-url URL --database NAME
  xinyong-cli ingest --file records.csv|records.jsonl [--gateway http://127.0.0.1:50051] [--rejects FILE]
          [--ca-file CA.pem] [--certificate CERT.pem --key KEY.pem [--sign]]
      (the department's token in XINYONG_TOKEN; see docs/ingestion.md for the columns. An https://
      gateway is trusted by the system's CAs and --ca-file; --certificate and --key: the department's
      client certificate, which stands for the token once registered, docs/gateway.md; --sign: every
      record signed with that key, docs/ingestion.md, Signed records)
  xinyong-cli audit-verify --database-url URL [--seq N --hash HEX] [--from-seq N --from-hash HEX]
      (the gateway's database URL; exits 1 and names the entry where the chain breaks; --seq and
      --hash: an entry's hash kept outside the platform, e.g. newest_hash of ListAuditEntries;
      --from-seq and --from-hash: walk only what follows an entry whose hash was kept, e.g. the
      last one of the previous walk)
  xinyong-cli events-replay --admin-url URL --database NAME --since TIME [--service NAME]
      (after Redis lost its streams: every service's events published at or after TIME, RFC 3339
      e.g. 2026-11-25T08:00:00+08:00, are published again by its relay; consumers skip the ones
      they handled. --service: only that one's outbox. See docs/operations.md)
  xinyong-cli listings-announce --database-url URL
      (sanctions' database URL: every standing listing is announced again as ListingChanged with its
      record, for a consumer that missed listings older than sanctions' stream; docs/operations.md)";

fn flag(args: &[String], name: &str) -> Option<String> {
    args.windows(2).find(|pair| pair[0] == name).map(|pair| pair[1].clone())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if command == "ingest" {
        return ingest(&args);
    }
    if command == "audit-verify" {
        return audit_verify(&args);
    }
    if command == "listings-announce" {
        return listings_announce(&args);
    }
    let (Some(admin_url), Some(database)) = (flag(&args, "--admin-url"), flag(&args, "--database")) else {
        eprintln!("--admin-url and --database are required\n{USAGE}");
        return ExitCode::from(2);
    };
    let services: Vec<&str> = SERVICES.iter().map(|service| service.name).collect();
    let runtime = match current_thread() {
        Ok(runtime) => runtime,
        Err(failed) => return failed,
    };
    let outcome = runtime.block_on(async {
        match command.as_str() {
            "provision" => {
                let Some(password) = flag(&args, "--password") else {
                    return Err("--password is required".to_owned());
                };
                let provisioned = db::provision(&admin_url, &database, &services, &password)
                    .await
                    .map_err(|error| error.to_string())?;
                for (service, url) in &provisioned.urls {
                    println!("{service} {url}");
                }
                Ok(())
            }
            "drop" => db::drop_provisioned(&admin_url, &database, &services).await.map_err(|error| error.to_string()),
            "events-replay" => events_replay(&args, &admin_url, &database, &services).await,
            other => Err(format!("unknown command `{other}`\n{USAGE}")),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xinyong-cli {command}: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The runtime of a command that waits on one thing at a time; on failure, the exit to return.
fn current_thread() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|error| {
        eprintln!("cannot start: {error}");
        ExitCode::FAILURE
    })
}

/// The entry whose hash was kept that the flags `seq` and `hash` (`--seq N --hash HEX`, or
/// `--from-seq`, `--from-hash`) name, if any.
fn anchor(
    args: &[String],
    (seq_flag, hash_flag): (&str, &str),
) -> Result<Option<xinyong_gateway::audit::Anchor>, String> {
    match (flag(args, seq_flag), flag(args, hash_flag)) {
        (None, None) => Ok(None),
        (Some(seq), Some(hash)) => {
            let seq: i64 =
                seq.parse().ok().filter(|seq| *seq > 0).ok_or(format!("{seq_flag}: an entry number, 1 or more"))?;
            let hash = (hash.len() == 64)
                .then(|| (0..64).step_by(2).map(|at| u8::from_str_radix(&hash[at..at + 2], 16).ok()).collect())
                .flatten()
                .ok_or(format!("{hash_flag}: the entry's SHA-256, 64 hex digits"))?;
            Ok(Some(xinyong_gateway::audit::Anchor { seq, hash }))
        }
        _ => Err(format!("{seq_flag} and {hash_flag} go together")),
    }
}

/// A pool of at most `connections` on a service's database URL, bound to its schema.
async fn schema_pool(url: String, schema: &str, connections: u32) -> Result<sqlx::PgPool, String> {
    let settings =
        xinyong_platform::config::DatabaseSettings { url: url.into(), schema: schema.to_owned(), ..Default::default() };
    let options = db::connect_options(&settings).map_err(|error| error.to_string())?;
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .connect_with(options)
        .await
        .map_err(|error| error.to_string())
}

fn audit_verify(args: &[String]) -> ExitCode {
    use xinyong_gateway::audit::{Verified, verify_from};
    let Some(url) = flag(args, "--database-url") else {
        eprintln!("--database-url is required\n{USAGE}");
        return ExitCode::from(2);
    };
    let (anchor, from) = match (anchor(args, ("--seq", "--hash")), anchor(args, ("--from-seq", "--from-hash"))) {
        (Ok(anchor), Ok(from)) => (anchor, from),
        (Err(problem), _) | (_, Err(problem)) => {
            eprintln!("{problem}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match current_thread() {
        Ok(runtime) => runtime,
        Err(failed) => return failed,
    };
    let verified = runtime.block_on(async {
        let pool = schema_pool(url, "gateway", 1).await?;
        verify_from(&pool, from.as_ref(), anchor.as_ref()).await.map_err(|error| error.to_string())
    });
    match verified {
        Ok(Verified::Intact { entries, last_seq, last_hash }) => {
            let hash: String = last_hash.iter().map(|byte| format!("{byte:02x}")).collect();
            println!("audit log intact: {entries} entries, the last numbered {last_seq} with hash {hash}");
            ExitCode::SUCCESS
        }
        Ok(Verified::Broken { seq, reason }) => {
            println!("audit log broken at entry {seq}: {reason}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("xinyong-cli audit-verify: {error}");
            ExitCode::FAILURE
        }
    }
}

fn listings_announce(args: &[String]) -> ExitCode {
    let Some(url) = flag(args, "--database-url") else {
        eprintln!("--database-url is required\n{USAGE}");
        return ExitCode::from(2);
    };
    let runtime = match current_thread() {
        Ok(runtime) => runtime,
        Err(failed) => return failed,
    };
    let announced = runtime.block_on(async {
        // One connection holds the announcement while the other writes its pages.
        let pool = schema_pool(url, "sanctions", 2).await?;
        xinyong_sanctions::listings::announce_again(&pool).await.map_err(|error| error.to_string())
    });
    match announced {
        Ok(Some(listings)) => {
            println!("{listings} standing listings announced again");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            println!("a sanctions replica is announcing them now");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("xinyong-cli listings-announce: {error}");
            ExitCode::FAILURE
        }
    }
}

fn ingest(args: &[String]) -> ExitCode {
    let Some(file) = flag(args, "--file") else {
        eprintln!("--file is required\n{USAGE}");
        return ExitCode::from(2);
    };
    let identity = match (flag(args, "--certificate"), flag(args, "--key")) {
        (Some(certificate), Some(key)) => Some((certificate.into(), key.into())),
        (None, None) => None,
        _ => {
            eprintln!("--certificate and --key go together\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let token = std::env::var("XINYONG_TOKEN").ok();
    if token.is_none() && identity.is_none() {
        eprintln!("set XINYONG_TOKEN to the department's credential, or give its --certificate and --key");
        return ExitCode::from(2);
    }
    let options = xinyong_cli::ingest::Options {
        file: file.into(),
        gateway: flag(args, "--gateway").unwrap_or_else(|| "http://127.0.0.1:50051".to_owned()),
        token,
        tls: xinyong_cli::ingest::Tls {
            ca_file: flag(args, "--ca-file").map(Into::into),
            identity,
            sign: args.iter().any(|arg| arg == "--sign"),
        },
        rejects: flag(args, "--rejects").map(Into::into),
        progress_every: Some(std::time::Duration::from_secs(2)),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(xinyong_cli::ingest::run(options)) {
        Ok(summary) => {
            println!(
                "{} rows: {} accepted, {} duplicate, {} rejected (see {})",
                summary.rows,
                summary.accepted,
                summary.duplicate,
                summary.rejected,
                summary.rejects_file.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("xinyong-cli ingest: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `events-replay`: parse the flags, publish again, say what each outbox did.
async fn events_replay(args: &[String], admin_url: &str, database: &str, services: &[&str]) -> Result<(), String> {
    let since = flag(args, "--since").ok_or("--since is required (RFC 3339, e.g. 2026-11-25T08:00:00+08:00)")?;
    let since = chrono::DateTime::parse_from_rfc3339(&since)
        .map_err(|error| format!("--since `{since}`: not an RFC 3339 time ({error})"))?
        .with_timezone(&chrono::Utc);
    let only = flag(args, "--service");
    let chosen: Vec<&str> = match &only {
        Some(only) if !services.contains(&only.as_str()) => {
            return Err(format!("--service `{only}`: not one of {}", services.join(", ")));
        }
        Some(only) => vec![only.as_str()],
        None => services.to_vec(),
    };
    for (service, republished) in xinyong_cli::replay::run(admin_url, database, &chosen, since).await? {
        let Some(republished) = republished else {
            println!("{service}: no outbox");
            continue;
        };
        match republished.oldest_kept {
            None => println!("{service}: {} events to publish again (the outbox is empty)", republished.events),
            Some(oldest) => {
                println!(
                    "{service}: {} events to publish again (the outbox holds events since {})",
                    republished.events,
                    oldest.to_rfc3339()
                );
                if oldest > since {
                    println!(
                        "{service}: events written before {}, if there were any, are no longer kept (events.outbox_retention_hours) and cannot be published again",
                        oldest.to_rfc3339()
                    );
                }
            }
        }
    }
    Ok(())
}
