//! The signed-envelope commands: `verify` and `sign`. Each has its argument struct and `run`
//! function here; `main.rs` only dispatches. (The test-PKI generator is `helsemelding-lab dev-pki`.)

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use time::format_description::well_known::Rfc3339;

use super::{verify, Signer, TrustStore, Verified, VerifyError};
use crate::ids::Timestamp;

/// `helsemelding verify --trust-dir DIR [--at RFC3339] FILE…`
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Trust directory (anchors/*.pem, intermediates/*.pem, crls/*.crl).
    #[arg(long)]
    pub trust_dir: PathBuf,
    /// Check as of this time (RFC 3339) instead of now.
    #[arg(long, value_parser = parse_rfc3339)]
    pub at: Option<Timestamp>,
    /// DER CMS SignedData files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

fn parse_rfc3339(s: &str) -> Result<Timestamp, String> {
    Timestamp::parse(s, &Rfc3339)
        .map_err(|e| format!("expected an RFC 3339 time like 2026-06-01T12:00:00Z: {e}"))
}

/// One output line: `path<TAB>OK|S01|S02|S03|T01|RETRY<TAB>detail`.
pub fn verdict_line(path: &Path, result: &Result<Verified, VerifyError>) -> String {
    match result {
        Ok(v) => format!(
            "{}\tOK\t{} (organisation number {})",
            path.display(),
            v.signer.subject,
            v.signer.organisation_number.as_deref().unwrap_or("none")
        ),
        Err(e) => {
            let code = e.apprec_code().map_or("RETRY", |c| c.code());
            format!("{}\t{code}\t{e}", path.display())
        }
    }
}

/// Prints one verdict per file; exit status 1 if any is not OK, 2 if the trust directory is unusable.
pub fn run_verify(args: VerifyArgs) -> ExitCode {
    let trust = match TrustStore::load(&args.trust_dir) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("helsemelding verify: trust directory: {e}");
            return ExitCode::from(2);
        }
    };
    let now = args.at.unwrap_or_else(Timestamp::now_utc);
    let mut all_ok = true;
    for path in &args.files {
        match std::fs::read(path) {
            Ok(bytes) => {
                let result = verify(&bytes, &trust, now);
                all_ok &= result.is_ok();
                println!("{}", verdict_line(path, &result));
            }
            Err(e) => {
                all_ok = false;
                println!("{}\tRETRY\tcannot read the file: {e}", path.display());
            }
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `helsemelding sign --key K --cert C IN OUT`
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// PKCS#8 PEM RSA private key.
    #[arg(long)]
    pub key: PathBuf,
    /// The signing certificate (PEM).
    #[arg(long)]
    pub cert: PathBuf,
    /// Content to sign (MsgHead or AppRec XML).
    pub input: PathBuf,
    /// Where to write the DER SignedData.
    pub output: PathBuf,
}

pub fn run_sign(args: SignArgs) -> ExitCode {
    let result = Signer::from_pem_files(&args.key, &args.cert)
        .map_err(|e| e.to_string())
        .and_then(|signer| {
            let content = std::fs::read(&args.input)
                .map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;
            let envelope = signer
                .sign(&content, Timestamp::now_utc())
                .map_err(|e| e.to_string())?;
            std::fs::write(&args.output, envelope)
                .map_err(|e| format!("cannot write {}: {e}", args.output.display()))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("helsemelding sign: {e}");
            ExitCode::from(1)
        }
    }
}
