//! `uniffi-bindgen`: generates the Swift, Kotlin and Python sources for `librvoip_uniffi` in
//! library mode, e.g.
//! `cargo run -p uniffi-bindgen -- generate --library target/release/librvoip_uniffi.so --language python --out-dir out`
//! (`bindings/generate.sh` runs it for all three languages).

fn main() {
    uniffi::uniffi_bindgen_main()
}
