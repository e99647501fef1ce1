//! A database of one test's own: a fresh SQLite file, or a fresh Postgres database on the
//! shared server, removed when dropped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection};

use super::{Backend, postgres_admin_url};

/// A database of one test's own, removed when dropped.
pub struct TestDatabase {
    pub backend: Backend,
    pub url: String,
    name: String,
    folder: Option<PathBuf>,
    /// Dropped with this handle (not so for another node's handle on the first node's).
    owned: bool,
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestDatabase {
        let name = format!("waos_test_{}", uuid::Uuid::new_v4().simple());
        match backend {
            Backend::Sqlite => {
                let folder = std::env::temp_dir().join(&name);
                std::fs::create_dir_all(&folder).unwrap();
                let url = format!("sqlite://{}/waos.sqlite", folder.display());
                TestDatabase {
                    backend,
                    url,
                    name,
                    folder: Some(folder),
                    owned: true,
                }
            }
            Backend::Postgres => {
                let admin = sea_orm::Database::connect(postgres_admin_url())
                    .await
                    .expect("Postgres must run at WAOS_TEST_POSTGRES_URL (default 127.0.0.1:5432)");
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap();
                admin.close().await.unwrap();
                // The admin URL names a database (`.../postgres`); ours replaces it.
                let base = postgres_admin_url();
                let server = base
                    .rsplit_once('/')
                    .map_or(base.as_str(), |(server, _)| server);
                let url = format!("{server}/{name}");
                TestDatabase {
                    backend,
                    url,
                    name,
                    folder: None,
                    owned: true,
                }
            }
        }
    }

    /// Another handle on the same database, which leaves it in place when dropped (for a
    /// second node of a cluster).
    pub fn shared(&self) -> TestDatabase {
        TestDatabase {
            backend: self.backend,
            url: self.url.clone(),
            name: self.name.clone(),
            folder: self.folder.clone(),
            owned: false,
        }
    }

    /// The URL with its host and port replaced (to go through a [`FaultProxy`]).
    pub fn url_via(&self, port: u16) -> String {
        let (scheme, rest) = self.url.split_once("://").unwrap();
        let (userinfo, after_at) = rest.split_once('@').unwrap_or(("", rest));
        let path = after_at.split_once('/').map_or("", |(_, path)| path);
        let auth = if userinfo.is_empty() {
            String::new()
        } else {
            format!("{userinfo}@")
        };
        format!("{scheme}://{auth}127.0.0.1:{port}/{path}")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if let Some(folder) = &self.folder {
            let _ = std::fs::remove_dir_all(folder);
            return;
        }
        let name = self.name.clone();
        // Drop cannot await: drop the database from a thread with a runtime of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(admin) = sea_orm::Database::connect(postgres_admin_url()).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}

/// A pool of `max_connections` on a test's database, with the tests' timeouts.
pub async fn connect_database(url: &str, max_connections: u32) -> DatabaseConnection {
    waos_engine::store::connect(
        url,
        max_connections,
        Duration::from_secs(5),
        Duration::from_secs(10),
    )
    .await
    .expect("the test database accepts connections")
}
