//! The customer panel at `/panel`.

use super::{Ctx, WebResult, page};
use crate::state::AppState;
use axum::Router;
use axum::routing::get;
use maud::html;

pub fn routes() -> Router<AppState> {
    Router::new().route("/panel", get(home))
}

async fn home(ctx: Ctx) -> WebResult {
    ctx.authed()?;
    Ok(page(
        &ctx,
        ctx.t("home.title"),
        html! { p { (ctx.t("home.subscriptions")) } },
    ))
}
