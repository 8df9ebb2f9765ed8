//! Helpers shared by the benchmark binaries.

/// A fresh, empty PostgreSQL database on the server at `admin`; its URL.
pub async fn fresh_pg(admin: &str, tag: &str) -> String {
    let name = format!(
        "brotr_bench_{tag}_{}",
        hex::encode(rand::random::<[u8; 4]>())
    );
    let pool = sqlx::PgPool::connect(admin).await.expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .expect("create db");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{name}")
}
