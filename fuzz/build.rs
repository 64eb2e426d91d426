//! Compiles outbox-derive's modules into this crate: a proc-macro crate can
//! export no functions, so the fuzz targets call its parsers from here. The
//! module list is read from outbox-derive's lib.rs, so modules added there
//! come along without editing this crate.

use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let src = manifest.join("../outbox-derive/src");
    let lib = src.join("lib.rs");
    println!("cargo::rerun-if-changed={}", lib.display());
    let text = fs::read_to_string(&lib).expect("outbox-derive/src/lib.rs");
    let mut out = String::new();
    for line in text.lines() {
        let Some(name) = line
            .trim()
            .strip_prefix("mod ")
            .and_then(|rest| rest.strip_suffix(';'))
        else {
            continue;
        };
        let path = module_file(&src, name);
        out.push_str(&format!(
            "#[allow(dead_code, unreachable_pub, clippy::all)]\n#[path = {:?}]\nmod {name};\n",
            path.display().to_string()
        ));
    }
    assert!(!out.is_empty(), "no `mod` lines in {}", lib.display());
    let dest = PathBuf::from(env::var("OUT_DIR").expect("set by cargo")).join("derive_modules.rs");
    fs::write(dest, out).expect("OUT_DIR is writable");
}

fn module_file(src: &Path, name: &str) -> PathBuf {
    let dir = src.join(name).join("mod.rs");
    let file = if dir.exists() {
        dir
    } else {
        src.join(format!("{name}.rs"))
    };
    file.canonicalize().unwrap_or(file)
}
