//! `helsemelding inspect FILE…`: one line per message for operators — type, MsgId, HER-id levels of
//! sender and recipients, copy recipients, payload standard, and whether the patient is identified.
//!
//! Input: MsgHead (or AppRec) files. Output: one tab-separated line per file on stdout; a file that
//! cannot be read or parsed gets an `ERROR` line naming the file and the fault, and the command
//! exits non-zero. Never prints patient data or message content (CONVENTIONS: ids, never content):
//! the model holds none.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::address::PartyAddress;
use crate::apprec::AppRec;
use crate::msghead::{ModelError, MsgHead};

/// `helsemelding inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// MsgHead or AppRec XML files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

fn levels(a: &PartyAddress) -> String {
    let show = |h: Option<crate::ids::HerId>| h.map_or_else(|| "-".to_owned(), |h| h.to_string());
    format!("{}/{}", show(a.level1), show(a.level2))
}

/// The one-line summary of a MsgHead (no patient data: only whether it is identified and how).
pub fn msghead_line(m: &MsgHead) -> String {
    let recipients = m.recipients();
    let copies: Vec<String> = recipients
        .iter()
        .skip(1)
        .map(|(r, _)| levels(&r.address))
        .collect();
    let patient = if !m.patient.present {
        "absent".to_owned()
    } else {
        format!(
            "{}({})",
            if m.patient.sufficiently_identified() {
                "yes"
            } else {
                "no"
            },
            if m.patient.ident_kinds.is_empty() {
                "no ids".to_owned()
            } else {
                m.patient.ident_kinds.join(",")
            }
        )
    };
    format!(
        "{}\tmsgid={}{}\tfrom={}\tto={}\tcc=[{}]\tpayload={}\tpatient-identified={}",
        m.msg_type.v,
        m.msg_id,
        if m.msg_id.is_uuid() {
            ""
        } else {
            " (NOT A UUID)"
        },
        levels(&m.sender_address()),
        levels(&recipients[0].0.address),
        copies.join(","),
        m.payload,
        patient
    )
}

/// The one-line summary of an AppRec.
pub fn apprec_line(a: &AppRec) -> String {
    let errors: Vec<&str> = a.errors.iter().map(|e| e.v.as_str()).collect();
    format!(
        "APPREC {:?}\tid={}\tfrom={}\tto={}\tstatus={}\terrors=[{}]\toriginal={} {}",
        a.version,
        a.id,
        levels(&a.sender.address()),
        levels(&a.receiver.address()),
        a.status_code.v,
        errors.join(","),
        a.original.msg_type.v,
        a.original.id
    )
}

/// Runs `inspect`.
pub fn run(args: &InspectArgs) -> ExitCode {
    let mut failed = false;
    for f in &args.files {
        let line = match std::fs::read(f) {
            Err(e) => Err(e.to_string()),
            Ok(bytes) => match MsgHead::parse(&bytes) {
                Ok(m) => Ok(msghead_line(&m)),
                Err(ModelError::WrongRoot { .. }) => AppRec::parse(&bytes)
                    .map(|a| apprec_line(&a))
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("{e} (AppRec code {})", e.apprec_code())),
            },
        };
        match line {
            Ok(l) => println!("{}\t{l}", f.display()),
            Err(e) => {
                failed = true;
                println!("{}\tERROR\t{e}", f.display());
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
