//! Differential test: on every `.xml` file of `../shared/corpus/`, our verdict equals libxml2's
//! (via `../shared/tools/xsd-oracle`, run once over all files).

mod support;

#[test]
fn every_corpus_file_agrees_with_libxml2() {
    let files = support::xml_files(&support::shared().join("corpus"));
    assert!(files.len() >= 300, "corpus found ({} files)", files.len());
    let oracle = support::xsd::oracle(&files);
    let schemas = support::xsd::schemas();
    let bad = support::xsd::disagreements(&schemas, &files, &oracle);
    support::xsd::report("files", &oracle, &bad);
}
