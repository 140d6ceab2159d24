//! `/api/v1/tasks`: the task manager.

use super::{ProblemResponses, emit, iso};
use crate::auth::Authed;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiQuery, PageOut, PageParams};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use cascade_domain::account::AccountKind;
use cascade_domain::authz::{Action, Relation, authorize};
use cascade_domain::ids::{AccountId, TaskId};
use cascade_store::tasks::{Task, TaskFilter, Tasks};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tasks))
        .routes(routes!(get_task))
        .routes(routes!(retry_task))
        .routes(routes!(cancel_task))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskOut {
    pub id: i64,
    pub kind: String,
    pub account_id: Option<i64>,
    pub event_id: Option<i64>,
    /// `pending`, `running`, `done`, `failed`, `cancelled`.
    pub state: String,
    pub attempts: u32,
    pub max_attempts: u32,
    pub run_at: String,
    pub last_error: Option<String>,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
}

impl From<Task> for TaskOut {
    fn from(t: Task) -> Self {
        TaskOut {
            id: t.id.0,
            kind: t.kind,
            account_id: t.account_id.map(|a| a.0),
            event_id: t.event_id.map(|e| e.0),
            state: t.state.as_str().into(),
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            run_at: iso(t.run_at),
            last_error: t.last_error,
            payload: t.payload,
            created_at: iso(t.created_at),
            updated_at: iso(t.updated_at),
            finished_at: t.finished_at.map(iso),
        }
    }
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TaskParams {
    /// `pending`, `running`, `done`, `failed` or `cancelled`.
    pub state: Option<String>,
    pub kind: Option<String>,
    pub account_id: Option<i64>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(TaskParams),
    responses((status = 200, body = PageOut<TaskOut>, description = "Tasks of the caller's account and the accounts below it, newest first"), ProblemResponses))]
pub(crate) async fn list_tasks(
    State(st): State<AppState>,
    auth: Authed,
    ApiQuery(q): ApiQuery<TaskParams>,
) -> ApiResult<Json<PageOut<TaskOut>>> {
    authorize(&auth.actor, Relation::Own, Action::ViewTasks)?;
    if let Some(a) = q.account_id {
        auth.check(&st, AccountId(a), Action::ViewTasks)
            .await
            .map_err(|e| {
                if e.status == axum::http::StatusCode::NOT_FOUND {
                    ApiError::field("account_id", "unknown_account", "no such account")
                } else {
                    e
                }
            })?;
    }
    let f = TaskFilter {
        state: q
            .state
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: cascade_domain::FieldError| ApiError::from(e))?,
        kind: q.kind.clone(),
        account_id: q.account_id.map(AccountId),
    };
    if f.kind.as_ref().is_some_and(|k| k.len() > 100) {
        return Err(ApiError::field(
            "kind",
            "too_long",
            "at most 100 characters",
        ));
    }
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    // System tasks (no account) are the provider's.
    let is_provider =
        st.db.accounts().get(auth.actor.account_id).await?.kind == AccountKind::Provider;
    let p = st
        .db
        .tasks()
        .list(
            auth.actor.account_id,
            is_provider,
            &f,
            page.after()?,
            page.limit()?,
        )
        .await?;
    Ok(Json(PageOut::new(
        p.items.into_iter().map(Into::into).collect(),
        p.next,
    )))
}

async fn task_for(st: &AppState, auth: &Authed, id: i64, action: Action) -> ApiResult<Task> {
    let t = st.db.tasks().get(TaskId(id)).await?;
    match t.account_id {
        Some(a) => {
            auth.check(st, a, action).await?;
        }
        None => {
            let own = st.db.accounts().get(auth.actor.account_id).await?;
            if own.kind != AccountKind::Provider {
                return Err(ApiError::not_found());
            }
            authorize(&auth.actor, Relation::Own, action)?;
        }
    }
    Ok(t)
}

#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks", params(("id" = i64, Path)), responses((status = 200, body = TaskOut), ProblemResponses))]
async fn get_task(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<TaskOut>> {
    Ok(Json(
        task_for(&st, &auth, id, Action::ViewTasks).await?.into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/tasks/{id}/retry", tag = "tasks", params(("id" = i64, Path)),
    responses((status = 200, body = TaskOut, description = "Queued again with a fresh set of attempts"), ProblemResponses))]
pub(crate) async fn retry_task(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<TaskOut>> {
    let t = task_for(&st, &auth, id, Action::ManageTasks).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    if !Tasks::retry(&mut tx, t.id, now).await? {
        return Err(ApiError::conflict(format!(
            "only failed or cancelled tasks can be retried; this one is {}",
            t.state.as_str()
        )));
    }
    emit(
        &mut tx,
        now,
        "task.retried",
        t.account_id.unwrap_or(auth.actor.account_id),
        &auth,
        "task",
        id,
        json!({"kind": t.kind}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(st.db.tasks().get(t.id).await?.into()))
}

#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks", params(("id" = i64, Path)),
    responses((status = 200, body = TaskOut), ProblemResponses))]
pub(crate) async fn cancel_task(
    State(st): State<AppState>,
    auth: Authed,
    Path(id): Path<i64>,
) -> ApiResult<Json<TaskOut>> {
    let t = task_for(&st, &auth, id, Action::ManageTasks).await?;
    let now = st.clock.now();
    let mut tx = st.db.begin().await?;
    if !Tasks::cancel(&mut tx, t.id, now).await? {
        return Err(ApiError::conflict(format!(
            "only pending or running tasks can be cancelled; this one is {}",
            t.state.as_str()
        )));
    }
    emit(
        &mut tx,
        now,
        "task.cancelled",
        t.account_id.unwrap_or(auth.actor.account_id),
        &auth,
        "task",
        id,
        json!({"kind": t.kind}),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(st.db.tasks().get(t.id).await?.into()))
}
