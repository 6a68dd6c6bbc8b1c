//! The customer portal as a person uses it: the built `web/dist` bundle in headless Chromium,
//! served by a real server with its own database.

use neruba::testing::TestApp;
use neruba_e2e::Browser;

const STORED_KEY: &str = "neruba.apiKey";

async fn sign_in_with_form(browser: &Browser, app: &TestApp, secret: &str) {
    browser.goto(&format!("{}/portal/", app.base_url)).await;
    browser.type_into("api-key-input", secret).await;
    browser.click("sign-in").await;
}

async fn wait_for_project(browser: &Browser, name: &str) {
    browser
        .wait_for_text("project-name", &format!("{name:?}"), |text| text == name)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn portal_shows_project_fetched_from_graphql() {
    let browser = Browser::launch().await;
    let app = TestApp::spawn().await;
    let project = app.create_project("Acme e2e").await;
    let secret = app.create_api_key(&project, &["read"]).await;

    sign_in_with_form(&browser, &app, &secret).await;

    wait_for_project(&browser, "Acme e2e").await;
    let scopes = browser
        .wait_for_text("scopes", "the READ scope", |text| text.contains("READ"))
        .await;
    assert!(
        !scopes.contains("INGEST"),
        "a read-only key shows only READ, got {scopes:?}"
    );
    assert_eq!(browser.text_of("project-id").await.as_deref(), Some(project.as_str()));
    assert!(!browser.is_present("error").await);
    browser.save_artifact("portal").await;

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn portal_rejects_a_revoked_or_bogus_key() {
    let browser = Browser::launch().await;
    let app = TestApp::spawn().await;
    let project = app.create_project("Acme e2e").await;
    let revoked = app.create_api_key(&project, &["read"]).await;
    app.revoke_api_key_by_secret(&revoked).await;

    for secret in [revoked.as_str(), "nrb_bogus"] {
        sign_in_with_form(&browser, &app, secret).await;

        let error = browser
            .wait_for_text("error", "an error message", |text| !text.trim().is_empty())
            .await;
        assert!(
            error.contains("not accepted"),
            "the message says the key was refused, got {error:?}"
        );
        assert!(
            browser.is_present("api-key-input").await,
            "the sign-in form is offered again"
        );
        assert!(!browser.is_present("project-name").await);
        assert_eq!(
            browser.local_storage(STORED_KEY).await,
            None,
            "a refused key is not kept"
        );
    }
    browser.save_artifact("portal-rejected").await;

    browser.close().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn key_in_the_url_fragment_signs_in_and_survives_a_reload() {
    let browser = Browser::launch().await;
    let app = TestApp::spawn().await;
    let project = app.create_project("Acme e2e").await;
    let secret = app.create_api_key(&project, &["read", "ingest"]).await;

    browser.goto(&format!("{}/portal/#key={secret}", app.base_url)).await;
    wait_for_project(&browser, "Acme e2e").await;
    let url = browser.current_url().await;
    assert!(
        !url.contains(&secret),
        "the key is removed from the address bar, got {url}"
    );
    assert_eq!(
        browser.local_storage(STORED_KEY).await.as_deref(),
        Some(secret.as_str())
    );

    browser.reload().await;
    wait_for_project(&browser, "Acme e2e").await;
    browser
        .wait_for_text("scopes", "READ and INGEST", |t| {
            t.contains("READ") && t.contains("INGEST")
        })
        .await;

    browser.click("sign-out").await;
    browser.wait_for("api-key-input").await;
    assert_eq!(
        browser.local_storage(STORED_KEY).await,
        None,
        "signing out forgets the key"
    );
    browser.reload().await;
    browser.wait_for("api-key-input").await;
    assert!(
        !browser.is_present("project-name").await,
        "a reload after signing out stays signed out"
    );

    browser.close().await;
    app.stop().await;
}
