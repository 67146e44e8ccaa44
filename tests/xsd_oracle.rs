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
    xsd_common::report("files", &oracle, &bad);
}
