//! Compile-fail and compile-pass cases of the macros, each diagnostic pinned by
//! its `.stderr`. Regenerate with `TRYBUILD=overwrite` and review the diff.

#[test]
fn outboxed() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/outboxed/*.rs");
    cases.pass("tests/ui/outboxed/pass/*.rs");
}

#[test]
fn message_controller() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/message_controller/*.rs");
    cases.pass("tests/ui/message_controller/pass/*.rs");
}
