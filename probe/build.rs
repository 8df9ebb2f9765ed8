//! The schema migrations are embedded by `sqlx::migrate!`, which sees a changed file but not a
//! new one: rebuild when the migration directories change (sqlx's own advice).
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
