//! `helsemelding-lab dev-pki`: the arguments and the run of the generator in [`super`]; prints the
//! files written, one per line; exit 1 with the reason when generation fails.

use std::path::PathBuf;
use std::process::ExitCode;

use super::{generate, generate_encryption, DevPkiOptions};

/// `helsemelding-lab dev-pki --out DIR [--parties 81234,81235,…] [--gateway-her 90000] [--encryption-only]`
#[derive(Debug, clap::Args)]
pub struct DevPkiArgs {
    /// Output directory (trust layout plus parties/, bad/, legacy/, untrusted/, variants/).
    #[arg(long)]
    pub out: PathBuf,
    /// HER-ids of the test parties, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [81234u32, 81235])]
    pub parties: Vec<u32>,
    /// The gateway's own HER-id.
    #[arg(long, default_value_t = 90000)]
    pub gateway_her: u32,
    /// Write only the encryption certificates (`encryption/`), leaving an existing PKI as it is.
    #[arg(long)]
    pub encryption_only: bool,
}

pub fn run_dev_pki(args: DevPkiArgs) -> ExitCode {
    let opts = DevPkiOptions {
        out: args.out,
        parties: args.parties,
        gateway_her: args.gateway_her,
    };
    let generated = if args.encryption_only {
        generate_encryption(&opts)
    } else {
        generate(&opts)
    };
    match generated {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("helsemelding-lab dev-pki: {e}");
            ExitCode::from(1)
        }
    }
}
