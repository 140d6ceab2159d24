//! Seller panel accounts and money in headless Chromium against `cascade demo`:
//! Northwind sees revenue and open invoices on its dashboard, records a bank transfer for
//! Contoso (a bad amount is refused visibly), creates a user with a role for Contoso,
//! hides the balance screen from its customers, and Contoso's billing page then has no
//! balance or top-up. Screenshots go to `artifacts/screenshots/`. The WebDriver helpers
//! are shared in `tests/common/mod.rs`.

mod common;

use common::{SellerDemo, click, login, logout, shot, text_of};
use fantoccini::{Client, Locator};

/// From the accounts page, follow a link of Contoso's row.
async fn contoso_link(c: &Client, base: &str, href_end: &str) {
    c.goto(&format!("{base}/seller/accounts")).await.unwrap();
    c.find(Locator::XPath(&format!(
        "//tr[td[contains(., 'Contoso')]]//a[substring(@href, string-length(@href) - {}) = '{href_end}']",
        href_end.len() - 1
    )))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
}

#[test]
fn reseller_sees_its_money_records_a_payment_manages_users_and_hides_a_billing_screen() {
    let demo = SellerDemo::start();
    let base = demo.base.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = demo.session().await;

        login(&c, &base, "northwind-admin").await;
        c.goto(&format!("{base}/seller/dashboard")).await.unwrap();
        let revenue = text_of(&c, "#revenue-month").await;
        let open = text_of(&c, "#open-invoices").await;
        shot(&c, "seller-dashboard-money").await;
        assert!(revenue.contains("Revenue this month"), "{revenue}");
        assert!(open.contains("Open invoices"), "{open}");

        // Contoso's invoices and payments: record a bank transfer that stays open.
        contoso_link(&c, &base, "/money").await;
        c.wait()
            .for_element(Locator::Css("form#record-payment"))
            .await
            .unwrap();
        c.find(Locator::Css("form#record-payment input[name=amount]"))
            .await
            .unwrap()
            .send_keys("12.34")
            .await
            .unwrap();
        c.find(Locator::Css("form#record-payment input[name=external_ref]"))
            .await
            .unwrap()
            .send_keys("BANK-7731")
            .await
            .unwrap();
        click(&c, "form#record-payment button[type=submit]").await;
        c.wait()
            .for_element(Locator::Css("table#payments"))
            .await
            .unwrap();
        let payments = text_of(&c, "table#payments").await;
        shot(&c, "seller-invoices-payments").await;
        assert!(
            payments.contains("BANK-7731")
                && payments.contains("12.34 EUR")
                && payments.contains("Bank transfer"),
            "{payments}"
        );
        // A bad amount: an error page naming the field (the HTTP test checks nothing is written).
        contoso_link(&c, &base, "/money").await;
        c.wait()
            .for_element(Locator::Css("form#record-payment"))
            .await
            .unwrap();
        c.find(Locator::Css("form#record-payment input[name=amount]"))
            .await
            .unwrap()
            .send_keys("lots")
            .await
            .unwrap();
        click(&c, "form#record-payment button[type=submit]").await;
        let err = text_of(&c, "main").await;
        shot(&c, "seller-payment-refused").await;
        assert!(err.contains("amount"), "{err}");

        // Contoso's users: create a clerk with a role.
        contoso_link(&c, &base, "/users").await;
        c.wait()
            .for_element(Locator::Css("form#create-user"))
            .await
            .unwrap();
        for (name, value) in [
            ("login", "contoso-clerk"),
            ("display_name", "Clara Clerk"),
            ("email", "clara@contoso.example"),
        ] {
            c.find(Locator::Css(&format!(
                "form#create-user input[name={name}]"
            )))
            .await
            .unwrap()
            .send_keys(value)
            .await
            .unwrap();
        }
        c.find(Locator::XPath(
            "//form[@id='create-user']//label[contains(., 'Billing staff')]/input",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
        click(&c, "form#create-user button[type=submit]").await;
        c.wait()
            .for_element(Locator::Css("table#users"))
            .await
            .unwrap();
        let users = text_of(&c, "table#users").await;
        shot(&c, "seller-users-roles").await;
        assert!(
            users.contains("contoso-clerk")
                && users.contains("Clara Clerk")
                && users.contains("Billing staff"),
            "{users}"
        );

        // Northwind hides the balance screen from its customers.
        c.goto(&format!("{base}/seller/billing-visibility"))
            .await
            .unwrap();
        c.wait()
            .for_element(Locator::Css("form#billing-visibility"))
            .await
            .unwrap();
        click(&c, "form#billing-visibility input[name=s_balance]").await;
        click(&c, "form#billing-visibility button[value=set]").await;
        c.wait()
            .for_element(Locator::Css("button[value=reset]"))
            .await
            .unwrap();
        let source = text_of(&c, "#visibility-source").await;
        shot(&c, "seller-billing-visibility").await;
        assert!(source.contains("own choice"), "{source}");

        // Contoso's panel: billing without the balance and the top-up.
        logout(&c).await;
        login(&c, &base, "contoso-admin").await;
        c.goto(&format!("{base}/panel/billing")).await.unwrap();
        let page = c.source().await.unwrap();
        shot(&c, "customer-billing-without-balance").await;
        assert!(
            !page.contains("class=\"balance\"") && !page.contains("/panel/billing/topup"),
            "{page}"
        );
        assert!(
            page.contains("class=\"invoices\"") || page.contains("Invoices"),
            "{page}"
        );
        c.close().await.unwrap();
    });
}
