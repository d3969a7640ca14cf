// `sqlx::migrate!` embeds the migrations at compile time but cannot tell Cargo to watch them: without
// this, a new migration file leaves a warm build (CI keeps its target folder) with the old set.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
