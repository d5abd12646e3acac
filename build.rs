//! Rebuilds `meshcert` when a feature or fixture changes: `include_dir!` embeds them, and
//! cargo does not otherwise know the embedded copy depends on those directories.

fn main() {
    println!("cargo:rerun-if-changed=features");
    println!("cargo:rerun-if-changed=fixtures");
}
