// `sqlx::migrate!` embeds migrations/ when the crate is compiled, and cargo does
// not know that: without this, a commit that only adds a migration would leave
// the build without it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
