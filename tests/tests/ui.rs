//! Compile-fail and compile-pass cases of the macros, each diagnostic pinned by
//! its `.stderr`. Regenerate with `TRYBUILD=overwrite` and review the diff.

#[test]
fn outboxed() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("ui/outboxed/*.rs");
    cases.pass("ui/outboxed/pass/*.rs");
}
