//! The seller panel's lists and plan limits in headless Chromium against `cascade demo`:
//! Northwind (an L1 reseller) opens its invoices, filters them (paid, by customer name),
//! follows a PDF link (an `application/pdf` answer), looks at its customers' orders and
//! subscriptions, on a phone-sized screen and in Arabic (right to left); the provider
//! edits the included units of a rate of its own plan and sees the new value. Screenshots
//! go to `artifacts/screenshots/`; the WebDriver helpers are in `tests/common/mod.rs`.

mod common;

use common::{SellerDemo, click, fill, login, logout, shot, text_of};
use fantoccini::{Client, Locator};

/// The `data-document` ids of the invoices table.
async fn invoice_rows(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for r in c
        .find_all(Locator::Css("table#invoices tr[data-document]"))
        .await
        .unwrap()
    {
        out.push(r.attr("data-document").await.unwrap().unwrap());
    }
    out
}

#[test]
fn reseller_lists_invoices_orders_subscriptions_and_the_provider_edits_plan_limits() {
    let demo = SellerDemo::start();
    let base = demo.base.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = demo.session().await;
        login(&c, &base, "northwind-admin").await;

        // Invoices: the demo's Contoso order was invoiced by Northwind and paid.
        c.goto(&format!("{base}/seller/dashboard")).await.unwrap();
        assert!(c.source().await.unwrap().contains("href=\"/seller/invoices\""), "in the navigation");
        c.goto(&format!("{base}/seller/invoices")).await.unwrap();
        c.wait().for_element(Locator::Css("table#invoices")).await.unwrap();
        let all = invoice_rows(&c).await;
        shot(&c, "seller-invoices").await;
        assert!(!all.is_empty(), "the demo's invoices are listed");
        assert!(text_of(&c, "table#invoices").await.contains("Contoso"));
        c.find(Locator::Css("form#filter select[name=status] option[value=paid]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        fill(&c, "form#filter input[name=customer]", "contoso").await;
        click(&c, "form#filter button[type=submit]").await;
        c.wait().for_element(Locator::Css("table#invoices")).await.unwrap();
        let url = c.current_url().await.unwrap();
        assert!(url.as_str().contains("status=paid") && url.as_str().contains("customer=contoso"), "{url}");
        let filtered = text_of(&c, "table#invoices").await;
        shot(&c, "seller-invoices-filtered").await;
        assert!(filtered.contains("Contoso") && !filtered.contains("Globex"), "{filtered}");
        for row in c.find_all(Locator::Css("table#invoices tr[data-status]")).await.unwrap() {
            assert_eq!(row.attr("data-status").await.unwrap().as_deref(), Some("paid"));
        }
        // The PDF link answers a PDF (fetched with the session's cookie).
        let href = c
            .find(Locator::Css("table#invoices a.pdf"))
            .await
            .unwrap()
            .attr("href")
            .await
            .unwrap()
            .unwrap();
        let ct = c
            .execute(
                "return fetch(arguments[0]).then(r => r.status + ' ' + r.headers.get('content-type'))",
                vec![serde_json::json!(href)],
            )
            .await
            .unwrap();
        assert_eq!(ct.as_str(), Some("200 application/pdf"), "{ct}");

        // Orders and subscriptions of Northwind's customers.
        c.goto(&format!("{base}/seller/orders")).await.unwrap();
        let orders = text_of(&c, "table#orders").await;
        shot(&c, "seller-orders").await;
        assert!(orders.contains("Contoso") && orders.contains("SO"), "{orders}");
        c.goto(&format!("{base}/seller/orders?status=attention")).await.unwrap();
        c.wait().for_element(Locator::Css("table#orders")).await.unwrap();
        shot(&c, "seller-orders-attention").await;
        c.goto(&format!("{base}/seller/subscriptions")).await.unwrap();
        let subs = text_of(&c, "table#subscriptions").await;
        shot(&c, "seller-subscriptions").await;
        assert!(subs.contains("Contoso"), "{subs}");
        c.goto(&format!("{base}/seller/dashboard")).await.unwrap();
        let card = text_of(&c, "#orders-attention").await;
        assert!(card.contains("Orders needing attention"), "{card}");

        // A phone: the navigation folds into the menu button; the list still reads.
        c.set_window_size(390, 844).await.unwrap();
        c.goto(&format!("{base}/seller/invoices")).await.unwrap();
        assert!(c.find(Locator::Css("details.menu-button summary")).await.unwrap().is_displayed().await.unwrap());
        shot(&c, "seller-invoices-phone").await;
        // Arabic, right to left.
        c.goto(&format!("{base}/lang/ar?next=/seller/invoices")).await.unwrap();
        c.wait().for_element(Locator::Css("html[dir=rtl]")).await.unwrap();
        let title = text_of(&c, "main").await;
        shot(&c, "seller-invoices-phone-ar").await;
        assert!(title.contains("الفواتير"), "{title}");
        c.goto(&format!("{base}/lang/en?next=/seller/dashboard")).await.unwrap();
        c.set_window_size(1280, 1000).await.unwrap();
        logout(&c).await;

        // The provider edits the included units of a rate of one of its own plans.
        login(&c, &base, "provider-admin").await;
        c.goto(&format!("{base}/seller/plans")).await.unwrap();
        let mut hrefs = Vec::new();
        for a in c.find_all(Locator::Css("table#plans a")).await.unwrap() {
            hrefs.push(a.attr("href").await.unwrap().unwrap());
        }
        let mut edited = None;
        for h in hrefs {
            c.goto(&format!("{base}{h}")).await.unwrap();
            let Ok(input) = c.find(Locator::Css("form#prices input[name$='.included']")).await else {
                continue;
            };
            let name = input.attr("name").await.unwrap().unwrap();
            let uid = name.trim_start_matches("rate.").trim_end_matches(".included").to_string();
            let value = |n: String| {
                let c = c.clone();
                async move {
                    c.find(Locator::Css(&format!("input[name='{n}']"))).await.unwrap()
                        .prop("value").await.unwrap().unwrap().parse::<i64>().unwrap()
                }
            };
            let included = value(name.clone()).await;
            let max = value(format!("rate.{uid}.max")).await;
            let min = value(format!("rate.{uid}.min")).await;
            let new = if max == -1 || included < max { included + 1 } else { (included - 1).max(min) };
            if included == -1 || new == included {
                continue;
            }
            fill(&c, &format!("input[name='{name}']"), &new.to_string()).await;
            shot(&c, "seller-plan-limits-edited").await;
            click(&c, "form#prices button[type=submit]").await;
            c.wait().for_element(Locator::Css("form#prices")).await.unwrap();
            assert_eq!(value(name.clone()).await, new, "the saved value is shown");
            // An invalid one: an inline error, the value unchanged.
            fill(&c, &format!("input[name='{name}']"), "-5").await;
            click(&c, "form#prices button[type=submit]").await;
            c.wait().for_element(Locator::Css("#prices-error")).await.unwrap();
            let err = text_of(&c, "#prices-error").await;
            shot(&c, "seller-plan-limits-refused").await;
            assert!(err.contains("included"), "{err}");
            c.goto(&format!("{base}{h}")).await.unwrap();
            assert_eq!(value(name.clone()).await, new, "nothing written");
            edited = Some(new);
            break;
        }
        assert!(edited.is_some(), "a provider plan with a rate to edit");
        c.close().await.unwrap();
    });
}
