//! A PostgreSQL database of a test's own on the local server every machine of this project runs
//! (127.0.0.1:5432, trust authentication), dropped when the test ends — also when it fails.

use std::future::Future;

use helsemelding::store::pg;

/// The server's administrative database (user postgres).
pub const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A scratch database: `hm_test_<uuid>`, dropped with this value.
pub struct ScratchDb {
    pub name: String,
    pub url: String,
}

/// Runs `f` to its end on a runtime of its own, on a thread of its own: usable from a plain test,
/// from inside a tokio test and from a destructor alike.
fn on_own_runtime<T: Send + 'static>(f: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    })
    .join()
    .expect("scratch database thread")
}

impl ScratchDb {
    pub fn create() -> ScratchDb {
        let (name, url) = on_own_runtime(pg::create_scratch_database(ADMIN_URL, "hm_test"))
            .expect("PostgreSQL on 127.0.0.1:5432 (user postgres, database test)");
        ScratchDb { name, url }
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = on_own_runtime(async move { pg::drop_scratch_database(ADMIN_URL, &name).await });
    }
}
