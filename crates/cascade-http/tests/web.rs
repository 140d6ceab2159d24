//! The web framework in-process, on both backends: HTML 404 for browser paths and
//! problem+json for the API, the login form (same users and session as the API), CSRF
//! refusal that changes nothing, the language switch and right-to-left layout.

mod common;

use axum::http::{Method, StatusCode};
use common::*;

/// The value of `name` in the response's `Set-Cookie` headers.
fn set_cookie(r: &Resp, name: &str) -> Option<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap_or("").to_string())
}

/// The CSRF token in a page's first form.
fn csrf_of(html: &str) -> String {
    let i = html.find("name=\"_csrf\" value=\"").expect("a CSRF field") + 20;
    html[i..i + 64].to_string()
}

cascade_testkit::both_backends! {
    async fn not_found_is_html_for_pages_and_problem_for_the_api(db) {
        let app = TestApp::new(db);
        let page = app.get("/no/such/page", ANON).await.expect(StatusCode::NOT_FOUND);
        assert!(page.content_type().unwrap().starts_with("text/html"), "{:?}", page.content_type());
        assert!(page.text.contains("Page not found"), "{}", page.text);
        assert!(page.text.contains("<html lang=\"en\" dir=\"ltr\">"));
        app.get("/api/v1/no-such", ANON).await.expect_problem(StatusCode::NOT_FOUND, "not_found");
        // An unknown page asked in French is the French 404.
        let fr = app.req(Method::GET, "/nothing").header("accept-language", "fr-FR,fr;q=0.9").send().await;
        assert_eq!(fr.status, StatusCode::NOT_FOUND);
        assert!(fr.text.contains("Page introuvable"), "{}", fr.text);
    }

    async fn login_form_needs_its_csrf_token_and_opens_the_api_session(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let _ = &ch;
        let form = app.get("/login", ANON).await.expect(StatusCode::OK);
        let anon = set_cookie(&form, "cascade_anon").expect("an anonymous cookie binds the token");
        let token = csrf_of(&form.text);
        let cookie = format!("cascade_anon={anon}");

        // Without the token: refused, no session.
        let body = format!("login=p-admin&password={}", PASSWORD.replace(' ', "+"));
        let forged = app.req(Method::POST, "/login").header("cookie", &cookie)
            .raw(body.clone(), Some("application/x-www-form-urlencoded")).send().await;
        assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.text);
        assert!(set_cookie(&forged, "cascade_session").is_none());
        assert!(forged.text.contains("Refused"));
        // A token of another browser does not do either.
        let other = app.get("/login", ANON).await;
        let wrong = format!("{body}&_csrf={}", csrf_of(&other.text));
        let r = app.req(Method::POST, "/login").header("cookie", &cookie)
            .raw(wrong, Some("application/x-www-form-urlencoded")).send().await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);

        // Wrong password: the form again, 401.
        let bad = format!("login=p-admin&password=nope&_csrf={token}");
        let r = app.req(Method::POST, "/login").header("cookie", &cookie)
            .raw(bad, Some("application/x-www-form-urlencoded")).send().await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.text.contains("Wrong login or password"));

        // With it: logged in, redirected, and the cookie works on the API.
        let good = format!("{body}&_csrf={token}&next=%2Fpanel");
        let r = app.req(Method::POST, "/login").header("cookie", &cookie)
            .raw(good, Some("application/x-www-form-urlencoded")).send().await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        assert_eq!(r.header("location"), Some("/panel"));
        let session = set_cookie(&r, "cascade_session").expect("session cookie");
        app.get("/api/v1/me", Cred::Session(session.clone())).await.expect(StatusCode::OK);
        let home = app.get("/panel", Cred::Session(session.clone())).await.expect(StatusCode::OK);
        assert!(home.text.contains("Log out"));

        // Logging out needs the session's token too.
        let r = app.req(Method::POST, "/logout").cred(Cred::Session(session.clone()))
            .raw("", Some("application/x-www-form-urlencoded")).send().await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        app.get("/api/v1/me", Cred::Session(session.clone())).await.expect(StatusCode::OK);
        let t = csrf_of(&home.text);
        let r = app.req(Method::POST, "/logout").cred(Cred::Session(session.clone()))
            .raw(format!("_csrf={t}"), Some("application/x-www-form-urlencoded")).send().await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        app.get("/api/v1/me", Cred::Session(session)).await.expect(StatusCode::UNAUTHORIZED);
    }

    async fn pages_need_a_login_and_arabic_is_right_to_left(db) {
        let app = TestApp::new(db);
        let ch = Channel::build(&app).await;
        let r = app.get("/panel", ANON).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.header("location"), Some("/login"));
        let _ = &ch;
        let s = app.session("p-admin", PASSWORD).await;
        let Cred::Session(secret) = &s else { unreachable!() };
        let r = app.get("/lang/ar?next=%2Fpanel", ANON).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(set_cookie(&r, "cascade_lang").as_deref(), Some("ar"));
        // An outside `next` is not followed.
        let r = app.get("/lang/fr?next=https%3A%2F%2Fevil.example", ANON).await;
        assert_eq!(r.header("location"), Some("/panel"));
        let page = app.req(Method::GET, "/panel")
            .header("cookie", &format!("cascade_session={secret}; cascade_lang=ar")).send().await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        assert!(page.text.contains("<html lang=\"ar\" dir=\"rtl\">"), "{}", page.text);
        assert!(page.text.contains("تسجيل الخروج"));
    }
}
