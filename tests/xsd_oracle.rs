//! Differential test: on every `.xml` file of `../shared/corpus/`, our verdict equals libxml2's
//! (via `../shared/tools/xsd-oracle`, run once over all files).

mod xsd_common;

#[test]
fn every_corpus_file_agrees_with_libxml2() {
    let files = xsd_common::xml_files(&xsd_common::shared().join("corpus"));
    assert!(files.len() >= 300, "corpus found ({} files)", files.len());
    let oracle = xsd_common::oracle(&files);
    let schemas = xsd_common::schemas();
    let bad = xsd_common::disagreements(&schemas, &files, &oracle);
    let count = |v: &str| oracle.values().filter(|(o, _)| o == v).count();
    eprintln!(
        "{} files: oracle {} VALID, {} INVALID, {} NOT-WELL-FORMED, {} UNSUPPORTED; {} disagreements",
        files.len(),
        count("VALID"),
        count("INVALID"),
        count("NOT-WELL-FORMED"),
        count("UNSUPPORTED"),
        bad.len()
    );
    assert!(bad.is_empty(), "{} disagreements with libxml2:\n{}", bad.len(), bad.join("\n"));
}
