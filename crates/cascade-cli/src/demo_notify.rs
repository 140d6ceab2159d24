//! Demo notification templates: the provider's in English, French and Arabic, and an own
//! copy of the order-completed mail at Bluebird IT, so the demo shows inheritance
//! (Northwind and Alpine follow the provider live; Bluebird's customers get Bluebird's
//! text).

use cascade_domain::clock::Timestamp;
use cascade_domain::ids::AccountId;
use cascade_domain::notification::{NotificationEvent, TemplateInput, TemplateTextInput, validate};
use cascade_store::Db;
use cascade_store::notifications::Notifications;

type Text = (&'static str, &'static str, &'static str);

const PROVIDER: &[(NotificationEvent, &[Text])] = &[
    (
        NotificationEvent::OrderCompleted,
        &[
            (
                "en",
                "Your order {{ order_id }} is complete",
                "Hello {{ recipient_name }},\n\nyour order {{ order_id }} for {{ account_name }} is complete and the service is ready.\n\n{{ seller_name }}",
            ),
            (
                "fr",
                "Votre commande {{ order_id }} est terminée",
                "Bonjour {{ recipient_name }},\n\nvotre commande {{ order_id }} pour {{ account_name }} est terminée et le service est prêt.\n\n{{ seller_name }}",
            ),
            (
                "ar",
                "اكتمل طلبك رقم {{ order_id }}",
                "مرحبا {{ recipient_name }}،\n\nاكتمل طلبك رقم {{ order_id }} لحساب {{ account_name }} والخدمة جاهزة.\n\n{{ seller_name }}",
            ),
        ],
    ),
    (
        NotificationEvent::PaymentFailed,
        &[
            (
                "en",
                "Payment of {{ amount }} failed",
                "Hello {{ recipient_name }},\n\nwe could not collect {{ amount }}: {{ reason }}.\n\n{{ seller_name }}",
            ),
            (
                "fr",
                "Échec du paiement de {{ amount }}",
                "Bonjour {{ recipient_name }},\n\nnous n'avons pas pu encaisser {{ amount }} : {{ reason }}.\n\n{{ seller_name }}",
            ),
            (
                "ar",
                "فشل دفع مبلغ {{ amount }}",
                "مرحبا {{ recipient_name }}،\n\nتعذر تحصيل مبلغ {{ amount }}: {{ reason }}.\n\n{{ seller_name }}",
            ),
        ],
    ),
    (
        NotificationEvent::PasswordReset,
        &[
            (
                "en",
                "Reset your password",
                "Hello {{ recipient_name }},\n\nyour reset code for {{ login }} (valid until {{ expires_at }}):\n\n{{ token }}\n\n{{ seller_name }}",
            ),
            (
                "fr",
                "Réinitialisez votre mot de passe",
                "Bonjour {{ recipient_name }},\n\nvotre code de réinitialisation pour {{ login }} (valable jusqu'au {{ expires_at }}) :\n\n{{ token }}\n\n{{ seller_name }}",
            ),
            (
                "ar",
                "إعادة تعيين كلمة المرور",
                "مرحبا {{ recipient_name }}،\n\nرمز إعادة التعيين لـ {{ login }} (صالح حتى {{ expires_at }}):\n\n{{ token }}\n\n{{ seller_name }}",
            ),
        ],
    ),
];

const BLUEBIRD: &[Text] = &[
    (
        "fr",
        "Bluebird IT : commande {{ order_id }} livrée",
        "Bonjour {{ recipient_name }},\n\nBluebird IT a livré votre commande {{ order_id }}. Merci de votre confiance !",
    ),
    (
        "en",
        "Bluebird IT: order {{ order_id }} delivered",
        "Hello {{ recipient_name }},\n\nBluebird IT has delivered your order {{ order_id }}. Thank you!",
    ),
];

async fn save(
    db: &Db,
    account: AccountId,
    event: NotificationEvent,
    texts: &[Text],
    now: Timestamp,
) -> anyhow::Result<()> {
    let input = TemplateInput {
        default_language: texts[0].0.into(),
        texts: texts
            .iter()
            .map(|(l, s, t)| TemplateTextInput {
                language: (*l).into(),
                subject: (*s).into(),
                text: (*t).into(),
                html: None,
            })
            .collect(),
    };
    let doc = validate(event, &input).map_err(|e| anyhow::anyhow!("demo template {event}: {e}"))?;
    let mut tx = db.begin().await?;
    Notifications::save(&mut tx, account, event, &doc, now).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn seed(
    db: &Db,
    provider: AccountId,
    bluebird: AccountId,
    now: Timestamp,
) -> anyhow::Result<()> {
    for (event, texts) in PROVIDER {
        save(db, provider, *event, texts, now).await?;
    }
    save(
        db,
        bluebird,
        NotificationEvent::OrderCompleted,
        BLUEBIRD,
        now,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_templates_are_valid() {
        for (event, texts) in PROVIDER
            .iter()
            .chain([(NotificationEvent::OrderCompleted, BLUEBIRD)].iter())
        {
            let input = TemplateInput {
                default_language: texts[0].0.into(),
                texts: texts
                    .iter()
                    .map(|(l, s, t)| TemplateTextInput {
                        language: (*l).into(),
                        subject: (*s).into(),
                        text: (*t).into(),
                        html: None,
                    })
                    .collect(),
            };
            validate(*event, &input).unwrap();
        }
    }
}
