//! `register`: every request registers a brand-new user.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{Ctx, Scenario};

struct Register;

pub fn prepare(_ctx: &Ctx) -> BoxFuture<'_, Result<Arc<dyn Scenario>, String>> {
    async { Ok(Arc::new(Register) as Arc<dyn Scenario>) }.boxed()
}

impl Scenario for Register {
    fn request<'a>(&'a self, ctx: &'a Ctx, worker: usize, seq: u64) -> BoxFuture<'a, Result<(), String>> {
        async move {
            let localpart = format!("{}_r{worker}_{seq}", ctx.run_id);
            ctx.register(&localpart, "load-test-password").await.map(drop)
        }
        .boxed()
    }
}
