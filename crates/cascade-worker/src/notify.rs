//! Notification tasks: render a message from the seller's effective template, put it in
//! the `outbox` table, and deliver it over SMTP.
//!
//! **One task per message, two idempotent steps.** An event-driven task (e.g.
//! `notify.order_completed`) first queues the rendered message under a deduplication
//! key (`<event>:<subject>:<recipient>`, unique index, `ON CONFLICT DO NOTHING`), then
//! delivers every message of that key that is not marked sent. A retried or re-claimed
//! task therefore never queues twice, and never sends a message again once an earlier
//! attempt's send was accepted and marked (`outbox.sent_at`). One window remains: a
//! crash after the SMTP server accepted a message and before `sent_at` was written
//! sends it again on retry (SMTP has no idempotent submission). Every attempt carries
//! the same `Message-ID` ([`message_id`]), so mail systems that deduplicate on it show
//! the message once. Messages produced outside
//! the worker (a password reset requested over HTTP) are queued by their producer with a
//! `notify.deliver` task that runs only the second step.
//!
//! **Retries are the task queue's.** An SMTP failure (server down, 4xx) is a retryable
//! task error, so the message is tried again with the queue's exponential back-off; a
//! permanent SMTP refusal (5xx, e.g. unknown mailbox) fails the task at once. The outbox
//! row keeps the attempt count and the last error.
//!
//! **No SMTP configured = no sending.** The message stays in the outbox (visible through
//! the API) and the task completes; nothing is lost and nothing retries forever.
//!
//! **Rendering happens when queueing**, with the template effective at that moment: the
//! outbox then holds exactly what is (or will be) sent, and a later template edit does
//! not change a message already queued. Templates are validated when saved, so a render
//! failure here means a producer did not supply a declared variable: a bug, failed at once.
//!
//! SMTP goes through `lettre` (async, tokio): plain SMTP for a local relay, STARTTLS or
//! implicit TLS with rustls for a remote one; credentials are a [`SecretString`] and are
//! never logged.

use crate::handler::{Registry, TaskContext, TaskError, TaskHandler};
use async_trait::async_trait;
use cascade_domain::account::Account;
use cascade_domain::billing::lifecycle::{SubscriptionStatus, lifecycle_event};
use cascade_domain::clock::Timestamp;
use cascade_domain::ids::UserId;
use cascade_domain::money::{Currency, Money};
use cascade_domain::notification::NotificationEvent;
use cascade_store::notifications::{NewMessage, Outbox, OutboxMessage};
use cascade_store::tasks::Task;
use cascade_store::{Db, StoreResult};
use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP: only for a relay on localhost or a trusted network.
    #[default]
    None,
    /// Upgrade with STARTTLS (port 587).
    Starttls,
    /// Implicit TLS (port 465).
    Tls,
}

/// Where and as whom to send mail.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    /// The sender, e.g. `Cascade <noreply@example.com>`.
    pub from: String,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default, skip_serializing)]
    pub password: Option<SecretString>,
    /// Connection and command timeout.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

fn default_timeout() -> u64 {
    10
}

/// Sends outbox messages over SMTP.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

impl Mailer {
    pub fn new(s: &SmtpSettings) -> Result<Self, String> {
        let from: Mailbox = s
            .from
            .parse()
            .map_err(|e| format!("smtp.from `{}`: {e}", s.from))?;
        let builder = match s.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
                .map_err(|e| format!("smtp.host: {e}"))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host)
                .map_err(|e| format!("smtp.host: {e}"))?,
        };
        let mut builder = builder
            .port(s.port)
            .timeout(Some(Duration::from_secs(s.timeout_secs.max(1))));
        if let (Some(user), Some(pass)) = (&s.username, &s.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                pass.expose_secret().to_string(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Send one message. A refusal the server calls permanent is a permanent error.
    pub async fn send(&self, m: &OutboxMessage) -> Result<(), TaskError> {
        let to: Mailbox = m.recipient.parse().map_err(|e| {
            TaskError::permanent(format!(
                "recipient `{}` is not an address: {e}",
                m.recipient
            ))
        })?;
        let subject = m.subject.clone().unwrap_or_else(|| m.template.clone());
        let text = m.body_text.clone().unwrap_or_default();
        let builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .message_id(Some(message_id(m, &self.from)))
            .subject(subject);
        let email = match &m.body_html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(text, html.clone())),
            None => builder.singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text),
            ),
        }
        .map_err(|e| TaskError::permanent(format!("cannot build the message: {e}")))?;
        match self.transport.send(email).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(TaskError::permanent(format!("SMTP refused: {e}"))),
            Err(e) => Err(TaskError::retryable(format!("SMTP: {e}"))),
        }
    }
}

/// The message's `Message-ID`, the same on every attempt: derived from the outbox row
/// (id and creation time, so two installations do not collide) and the sender's domain.
pub fn message_id(m: &OutboxMessage, from: &Mailbox) -> String {
    format!(
        "<cascade.{}.{}@{}>",
        m.id,
        m.created_at.0,
        from.email.domain()
    )
}

/// What a delivery attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    AlreadySent,
    /// No SMTP configured: the message stays in the outbox.
    Kept,
}

/// Deliver outbox message `id` unless it was sent already.
pub async fn deliver(
    db: &Db,
    mailer: Option<&Mailer>,
    id: i64,
    now: Timestamp,
) -> Result<Delivery, TaskError> {
    let m = db.outbox().get(id).await?;
    if m.sent_at.is_some() {
        return Ok(Delivery::AlreadySent);
    }
    let Some(mailer) = mailer else {
        return Ok(Delivery::Kept);
    };
    if let Err(e) = mailer.send(&m).await {
        db.outbox().record_failure(id, e.message()).await?;
        tracing::warn!(outbox_id = id, error = %e, "mail not delivered");
        return Err(e);
    }
    db.outbox().mark_sent(id, now).await?;
    tracing::info!(outbox_id = id, template = %m.template, "mail delivered");
    Ok(Delivery::Sent)
}

/// Register the notification handlers, sending with `mailer` (none: keep in the outbox).
pub fn register(r: &mut Registry, mailer: Option<Arc<Mailer>>) {
    r.register(Arc::new(WelcomeUser {
        mailer: mailer.clone(),
    }));
    r.register(Arc::new(Deliver {
        mailer: mailer.clone(),
    }));
    r.register(Arc::new(EventMail::order_completed(mailer.clone())));
    r.register(Arc::new(EventMail::payment_failed(mailer.clone())));
    r.register(Arc::new(EventMail::invoice_issued(mailer.clone())));
    r.register(Arc::new(EventMail::subscription_expiring(mailer.clone())));
    r.register(Arc::new(EventMail::suspension_deadline(mailer.clone())));
    r.register(Arc::new(EventMail::subscription_status(mailer)));
}

/// `notify.deliver`: deliver the outbox message `outbox_id` of the payload.
#[derive(Debug, Clone, Default)]
pub struct Deliver {
    pub mailer: Option<Arc<Mailer>>,
}

impl Deliver {
    pub const KIND: &'static str = cascade_store::notifications::DELIVER_TASK;
}

#[async_trait]
impl TaskHandler for Deliver {
    fn kind(&self) -> &'static str {
        Self::KIND
    }
    async fn run(&self, ctx: &TaskContext, task: &Task) -> Result<(), TaskError> {
        let id = payload_int(&task.payload, "outbox_id")?;
        deliver(&ctx.db, self.mailer.as_deref(), id, ctx.clock.now()).await?;
        Ok(())
    }
}

/// One person to write to.
#[derive(Debug, Clone)]
struct Recipient {
    user_id: Option<UserId>,
    name: String,
    email: String,
    /// Preferred languages, first first.
    languages: Vec<String>,
}

/// The seller whose templates `account` gets: its vendor (the provider writes to itself
/// with its own).
async fn seller_of(db: &Db, account: &Account) -> StoreResult<Account> {
    match account.vendor_id {
        Some(v) => db.accounts().get(v).await,
        None => Ok(account.clone()),
    }
}

/// Render for each recipient, queue under `<event>:<subject>:<email>`, deliver unsent.
#[allow(clippy::too_many_arguments)]
async fn compose_queue_deliver(
    ctx: &TaskContext,
    mailer: Option<&Mailer>,
    event: NotificationEvent,
    account: &Account,
    subject_key: &str,
    recipients: &[Recipient],
    vars: &Value,
) -> Result<usize, TaskError> {
    let seller = seller_of(&ctx.db, account).await?;
    let now = ctx.clock.now();
    let mut ids = Vec::new();
    for r in recipients {
        let mut v = vars.clone();
        if let Value::Object(o) = &mut v {
            o.insert("recipient_name".into(), json!(r.name));
            o.insert("account_name".into(), json!(account.name));
            o.insert("seller_name".into(), json!(seller.name));
        }
        let langs: Vec<&str> = r.languages.iter().map(String::as_str).collect();
        let rendered = ctx
            .db
            .notifications()
            .compose(seller.id, event, &langs, &v)
            .await?
            .map_err(TaskError::permanent)?;
        let msg = NewMessage {
            account_id: Some(account.id),
            user_id: r.user_id,
            template: event.as_str().into(),
            recipient: r.email.clone(),
            language: rendered.language.clone(),
            payload: v,
            subject: rendered.subject,
            body_text: rendered.text,
            body_html: rendered.html,
            dedup_key: Some(format!("{event}:{subject_key}:{}", r.email)),
        };
        let mut tx = ctx.db.begin().await?;
        let (id, _) = Outbox::queue(&mut tx, &msg, now).await?;
        tx.commit().await?;
        ids.push(id);
    }
    // Deliver every message even if one fails, then report the first failure so the
    // task retries (the ones sent are marked and will not go again).
    let mut first_err = None;
    for id in &ids {
        if let Err(e) = deliver(&ctx.db, mailer, *id, now).await {
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(ids.len()),
    }
}

/// The people to write to about `account`: its enabled users, each in their language
/// (else the account's); the account's contact email when it has no user.
async fn account_recipients(db: &Db, account: &Account) -> StoreResult<Vec<Recipient>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = db.users().list_for_account(account.id, after, 200).await?;
        for u in page.items.iter().filter(|u| !u.disabled) {
            let mut languages = Vec::new();
            if let Some(l) = &u.language {
                languages.push(l.as_str().to_string());
            }
            languages.push(account.language.as_str().to_string());
            out.push(Recipient {
                user_id: Some(u.id),
                name: u.display_name.clone(),
                email: u.email.as_str().to_string(),
                languages,
            });
        }
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    if out.is_empty()
        && let Some(email) = &account.contact.email
    {
        out.push(Recipient {
            user_id: None,
            name: account.name.clone(),
            email: email.as_str().to_string(),
            languages: vec![account.language.as_str().to_string()],
        });
    }
    Ok(out)
}

/// How an event-driven mail takes its variables and subject key from the event payload.
/// `None` as key: the event has no stable subject of its own, the task id keys it.
type Extract = fn(&Value) -> Result<(Option<String>, Value), TaskError>;

/// A mail to the account's people about an event (`order.completed` → order completed,
/// `payment.declined` → payment failed).
#[derive(Clone)]
pub struct EventMail {
    kind: &'static str,
    event: NotificationEvent,
    extract: Extract,
    mailer: Option<Arc<Mailer>>,
}

/// The amount in minor units under `key` and its `currency`, from an event payload.
/// The integer `key` of an event payload; a payload without it will not improve with
/// retries, so its absence is a permanent error.
fn payload_int(p: &Value, key: &str) -> Result<i64, TaskError> {
    p.get(key)
        .and_then(Value::as_i64)
        .ok_or_else(|| TaskError::permanent(format!("payload has no integer `{key}`")))
}

/// The string `key` of an event payload (absent: a permanent error).
fn payload_str<'a>(p: &'a Value, key: &str) -> Result<&'a str, TaskError> {
    p.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| TaskError::permanent(format!("payload has no `{key}`")))
}

fn payload_money(p: &Value, key: &str) -> Result<Money, TaskError> {
    let minor = payload_int(p, key)?;
    let currency = p
        .get("currency")
        .and_then(Value::as_str)
        .and_then(|c| Currency::parse(c).ok())
        .ok_or_else(|| TaskError::permanent("payload has no valid `currency`"))?;
    Ok(Money::new(minor, currency))
}

impl EventMail {
    pub const ORDER_COMPLETED: &'static str = "notify.order_completed";
    pub const PAYMENT_FAILED: &'static str = "notify.payment_failed";
    pub const SUSPENSION_DEADLINE: &'static str = "notify.suspension_deadline";
    pub const INVOICE_ISSUED: &'static str = "notify.invoice_issued";
    pub const SUBSCRIPTION_EXPIRING: &'static str = "notify.subscription_expiring";

    /// `invoice.issued` (the daily billing run): one mail per invoice.
    pub fn invoice_issued(mailer: Option<Arc<Mailer>>) -> Self {
        Self {
            kind: Self::INVOICE_ISSUED,
            event: NotificationEvent::InvoiceIssued,
            extract: |p| {
                let doc = payload_int(p, "document_id")?;
                let number = payload_str(p, "invoice_number")?;
                let amount = payload_money(p, "total_minor")?;
                let due = p
                    .get("due_date")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Ok((
                    Some(format!("invoice{doc}")),
                    json!({"invoice_number": number, "amount": amount.to_string(), "due_date": due}),
                ))
            },
            mailer,
        }
    }

    /// `subscription.expiring` (the daily billing run): a subscription that will not
    /// renew ends soon. One mail per subscription and end date.
    pub fn subscription_expiring(mailer: Option<Arc<Mailer>>) -> Self {
        Self {
            kind: Self::SUBSCRIPTION_EXPIRING,
            event: NotificationEvent::SubscriptionExpiring,
            extract: |p| {
                let sub = payload_int(p, "subscription_id")?;
                let expires = payload_str(p, "expires_on")?;
                let plan = p
                    .get("plan_name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Ok((
                    Some(format!("sub{sub}:expires{expires}")),
                    json!({"subscription_id": sub.to_string(), "plan_name": plan, "expires_on": expires}),
                ))
            },
            mailer,
        }
    }

    pub const SUBSCRIPTION_STATUS: &'static str = "notify.subscription_status";

    /// `subscription.suspended` / `.resumed` / `.terminated` (payload `subscription_id`,
    /// `from`, `to`): one mail per transition (keyed by the task, as each transition
    /// creates exactly one task).
    pub fn subscription_status(mailer: Option<Arc<Mailer>>) -> Self {
        Self {
            kind: Self::SUBSCRIPTION_STATUS,
            event: NotificationEvent::SubscriptionStatus,
            extract: |p| {
                let sub = payload_int(p, "subscription_id")?;
                let status = |k: &str| {
                    p.get(k)
                        .and_then(Value::as_str)
                        .and_then(|s| SubscriptionStatus::parse(s).ok())
                        .ok_or_else(|| TaskError::permanent(format!("payload has no valid `{k}`")))
                };
                let change = match lifecycle_event(status("from")?, status("to")?) {
                    Some("subscription.suspended") => "suspended",
                    Some("subscription.resumed") => "resumed",
                    Some("subscription.terminated") => "terminated",
                    _ => return Err(TaskError::permanent("not a lifecycle transition")),
                };
                Ok((
                    None,
                    json!({"subscription_id": sub.to_string(), "change": change}),
                ))
            },
            mailer,
        }
    }

    /// `subscription.suspension_notice` (the daily run's PAYG collections): the
    /// subscription will be suspended after `suspension_deadline` unless the balance is
    /// topped up. One mail per subscription and deadline.
    pub fn suspension_deadline(mailer: Option<Arc<Mailer>>) -> Self {
        Self {
            kind: Self::SUSPENSION_DEADLINE,
            event: NotificationEvent::SuspensionDeadline,
            extract: |p| {
                let sub = payload_int(p, "subscription_id")?;
                let deadline = payload_str(p, "suspension_deadline")?;
                let amount = payload_money(p, "balance_minor")?;
                Ok((
                    Some(format!("sub{sub}:deadline{deadline}")),
                    json!({"subscription_id": sub.to_string(), "deadline": deadline,
                           "amount": amount.to_string()}),
                ))
            },
            mailer,
        }
    }

    pub fn order_completed(mailer: Option<Arc<Mailer>>) -> Self {
        Self {
            kind: Self::ORDER_COMPLETED,
            event: NotificationEvent::OrderCompleted,
            extract: |p| {
                let order_id = payload_int(p, "order_id")?;
                let order_type = p.get("type").and_then(Value::as_str).unwrap_or("SO");
                Ok((
                    Some(format!("order{order_id}")),
                    json!({"order_id": order_id.to_string(), "order_type": order_type}),
                ))
            },
            mailer,
        }
    }

    pub fn payment_failed(mailer: Option<Arc<Mailer>>) -> Self {
        Self {
            kind: Self::PAYMENT_FAILED,
            event: NotificationEvent::PaymentFailed,
            extract: |p| {
                let amount = payload_money(p, "amount_minor")?;
                let reason = p
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("the card was declined");
                let reference = p
                    .get("reference")
                    .and_then(Value::as_str)
                    .filter(|r| !r.is_empty())
                    .map(|r| format!("payment{r}"));
                Ok((
                    reference,
                    json!({"amount": amount.to_string(), "reason": reason}),
                ))
            },
            mailer,
        }
    }
}

#[async_trait]
impl TaskHandler for EventMail {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn run(&self, ctx: &TaskContext, task: &Task) -> Result<(), TaskError> {
        let account_id = task
            .account_id
            .ok_or_else(|| TaskError::permanent("task has no account"))?;
        let (key, vars) = (self.extract)(&task.payload)?;
        let key = key.unwrap_or_else(|| format!("task{}", task.id));
        let account = ctx.db.accounts().get(account_id).await?;
        let recipients = account_recipients(&ctx.db, &account).await?;
        if recipients.is_empty() {
            tracing::info!(task_id = %task.id, account_id = %account_id, "nobody to notify");
            return Ok(());
        }
        let n = compose_queue_deliver(
            ctx,
            self.mailer.as_deref(),
            self.event,
            &account,
            &key,
            &recipients,
            &vars,
        )
        .await?;
        tracing::info!(task_id = %task.id, event = %self.event, messages = n, "notification queued");
        Ok(())
    }
}

/// `notify.welcome_user`: the welcome mail for a new user. The task payload is the
/// `user.created` event payload (`user_id`, `login`, `email`, `display_name`,
/// `language`). Deduplicated per user (`welcome_user:<user id>`).
#[derive(Debug, Clone, Default)]
pub struct WelcomeUser {
    pub mailer: Option<Arc<Mailer>>,
}

impl WelcomeUser {
    pub const KIND: &'static str = "notify.welcome_user";
    pub const TEMPLATE: &'static str = "welcome_user";
}

#[async_trait]
impl TaskHandler for WelcomeUser {
    fn kind(&self) -> &'static str {
        Self::KIND
    }

    async fn run(&self, ctx: &TaskContext, task: &Task) -> Result<(), TaskError> {
        let p = &task.payload;
        // A malformed payload will not improve with retries: fail at once.
        let user_id = payload_int(p, "user_id")?;
        let email = p
            .get("email")
            .and_then(Value::as_str)
            .filter(|e| !e.trim().is_empty())
            .ok_or_else(|| TaskError::permanent("payload has no `email`"))?;
        let language = p
            .get("language")
            .and_then(Value::as_str)
            .filter(|l| !l.trim().is_empty());
        let login = p.get("login").and_then(Value::as_str).unwrap_or_default();
        let display_name = p
            .get("display_name")
            .and_then(Value::as_str)
            .unwrap_or(login);
        let account = match task.account_id {
            Some(a) => Some(ctx.db.accounts().get(a).await?),
            None => None,
        };
        let mut languages: Vec<&str> = language.into_iter().collect();
        if let Some(a) = &account {
            languages.push(a.language.as_str());
        }
        let seller = match &account {
            Some(a) => Some(seller_of(&ctx.db, a).await?),
            None => ctx.db.accounts().provider().await?,
        };
        let mut vars = json!({
            "login": login, "display_name": display_name, "email": email,
            "recipient_name": display_name,
            "account_name": account.as_ref().map(|a| a.name.clone()).unwrap_or_default(),
            "seller_name": seller.as_ref().map(|a| a.name.clone()).unwrap_or_default(),
        });
        let rendered = match &seller {
            Some(s) => ctx
                .db
                .notifications()
                .compose(s.id, NotificationEvent::WelcomeUser, &languages, &vars)
                .await?
                .map_err(TaskError::permanent)?,
            None => {
                let doc = NotificationEvent::WelcomeUser.builtin();
                let text = doc
                    .pick(&languages)
                    .ok_or_else(|| TaskError::permanent("no text"))?;
                cascade_domain::notification::render(text, &vars).map_err(TaskError::permanent)?
            }
        };
        // The payload is the event's (what the user was created with).
        vars = p.clone();
        let msg = NewMessage {
            account_id: task.account_id,
            user_id: Some(UserId(user_id)),
            template: Self::TEMPLATE.into(),
            recipient: email.to_string(),
            language: rendered.language.clone(),
            payload: vars,
            subject: rendered.subject,
            body_text: rendered.text,
            body_html: rendered.html,
            dedup_key: Some(format!("{}:{}", Self::TEMPLATE, user_id)),
        };
        let mut tx = ctx.db.begin().await?;
        let (id, queued) = Outbox::queue(&mut tx, &msg, ctx.clock.now()).await?;
        tx.commit().await?;
        if queued {
            tracing::info!(task_id = %task.id, user_id, "welcome mail queued");
        }
        deliver(&ctx.db, self.mailer.as_deref(), id, ctx.clock.now()).await?;
        Ok(())
    }
}
