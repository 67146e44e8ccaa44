//! Corpus files for the message-model tests (libxml2's verdicts on them: [`super::xsd`]).

use std::path::PathBuf;

use super::{shared, xml_files};

/// Every `.xml` file under the named folders of `../shared/corpus`, sorted.
pub fn corpus_files(dirs: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in dirs {
        let dir = shared().join("corpus").join(d);
        assert!(
            dir.is_dir(),
            "corpus directory {} is missing",
            dir.display()
        );
        out.extend(xml_files(&dir));
    }
    out.sort();
    out
}

/// One corpus file's bytes (`rel` below `../shared/corpus`).
pub fn corpus(rel: &str) -> Vec<u8> {
    let p = shared().join("corpus").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
