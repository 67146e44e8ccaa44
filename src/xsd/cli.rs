//! `helsemelding validate [--schemas DIR] FILE…`: one line per file,
//! `path<TAB>VALID|INVALID|NOT-WELL-FORMED|UNSUPPORTED<TAB>detail`; exit status 1 when any
//! file is not VALID (or cannot be read), 2 when the schemas cannot be loaded.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::Schemas;
use crate::xml::XmlLimits;

/// Arguments of `helsemelding validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Directory with the official XSD files (layout of standards/xsd).
    #[arg(long, default_value = "xsd")]
    pub schemas: PathBuf,
    /// Largest accepted document in bytes.
    #[arg(long, default_value_t = XmlLimits::default().max_bytes)]
    pub max_bytes: usize,
    /// The documents to validate.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs the command, writing results to stdout.
pub fn run(args: &ValidateArgs) -> ExitCode {
    let schemas = match Schemas::load(&args.schemas) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot load schemas: {e}");
            return ExitCode::from(2);
        }
    };
    let limits = XmlLimits {
        max_bytes: args.max_bytes,
        ..XmlLimits::default()
    };
    let mut all_valid = true;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for f in &args.files {
        let line = match std::fs::read(f) {
            Ok(bytes) => {
                let v = schemas.validate(&bytes, &limits);
                all_valid &= v.is_valid();
                format!(
                    "{}\t{}\t{}",
                    f.display(),
                    v.label(),
                    v.detail().replace(['\t', '\n'], " ")
                )
            }
            Err(e) => {
                all_valid = false;
                format!("{}\tUNREADABLE\t{e}", f.display())
            }
        };
        if writeln!(out, "{line}").is_err() {
            return ExitCode::FAILURE;
        }
    }
    if all_valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
