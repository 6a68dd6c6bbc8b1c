//! The payment rules, without a database.

use rust_decimal::Decimal;

use super::*;

const NOW: i64 = 1_764_547_200;

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

#[test]
fn a_signature_under_the_secret_within_the_tolerance_verifies() {
    let body = br#"{"id":"evt_1"}"#;
    let header = sign(body, "whsec_test_secret", NOW - 10);
    assert_eq!(
        verify_signature(&header, body, &["whsec_test_secret"], NOW, 300),
        Ok(NOW - 10)
    );
}

#[test]
fn a_signature_under_another_secret_or_of_another_body_is_refused() {
    let body = br#"{"id":"evt_1"}"#;
    let header = sign(body, "whsec_wrong", NOW);
    assert_eq!(
        verify_signature(&header, body, &["whsec_test_secret"], NOW, 300),
        Err(SignatureError::Mismatch)
    );
    let header = sign(body, "whsec_test_secret", NOW);
    assert_eq!(
        verify_signature(&header, br#"{"id":"evt_2"}"#, &["whsec_test_secret"], NOW, 300),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn a_timestamp_outside_the_tolerance_either_way_is_stale() {
    let body = b"{}";
    for t in [NOW - 301, NOW + 301] {
        let header = sign(body, "whsec_test_secret", t);
        assert!(matches!(
            verify_signature(&header, body, &["whsec_test_secret"], NOW, 300),
            Err(SignatureError::Stale { .. })
        ));
    }
    let header = sign(body, "whsec_test_secret", NOW - 300);
    assert!(verify_signature(&header, body, &["whsec_test_secret"], NOW, 300).is_ok());
}

#[test]
fn any_of_several_signatures_and_any_of_several_secrets_verifies() {
    let body = b"{}";
    let old = sign(body, "whsec_old_secret", NOW);
    let new = sign(body, "whsec_new_secret", NOW);
    let v1 = |h: &str| h.split_once(",v1=").unwrap().1.to_string();
    // Stripe during a rotation: one v1 per secret, and a v0 to ignore.
    let header = format!("t={NOW},v1={},v1={},v0=deadbeef", v1(&old), v1(&new));
    assert!(verify_signature(&header, body, &["whsec_new_secret"], NOW, 300).is_ok());
    assert!(verify_signature(&header, body, &["whsec_old_secret"], NOW, 300).is_ok());
    // Neruba during a rotation: both secrets configured, Stripe signs with one.
    assert!(verify_signature(&old, body, &["whsec_new_secret", "whsec_old_secret"], NOW, 300).is_ok());
    assert_eq!(
        verify_signature(&old, body, &["whsec_new_secret"], NOW, 300),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn malformed_headers_are_refused_before_any_hmac() {
    for header in [
        "",
        "garbage",
        "t=abc,v1=00",
        "v1=00",
        &format!("t={NOW}"),
        &format!("t={NOW},v1=nothex"),
        &format!("t={NOW},t={NOW},v1={}", "0".repeat(64)),
        &"x".repeat(5000),
    ] {
        assert!(
            matches!(
                verify_signature(header, b"{}", &["whsec_test_secret"], NOW, 300),
                Err(SignatureError::Malformed(_))
            ),
            "{header}"
        );
    }
}

#[test]
fn return_urls_are_http_or_https_with_a_host_and_bounded() {
    for ok in [
        "https://shop.example/ok",
        "http://localhost:3000/done?x=1",
        "https://a.example",
    ] {
        assert_eq!(parse_return_url("successUrl", ok).unwrap(), ok);
    }
    let long = format!("https://a.example/{}", "x".repeat(MAX_URL_LEN));
    for bad in [
        "javascript:alert(1)",
        "ftp://a.example/",
        "https://",
        "https:///path",
        "https://a.example/ space",
        "//a.example",
        "data:text/html,hi",
        long.as_str(),
    ] {
        match parse_return_url("successUrl", bad) {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "successUrl"),
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn minor_units_follow_the_currency() {
    let usd = Currency::from_iso_code("USD").unwrap();
    let jpy = Currency::from_iso_code("JPY").unwrap();
    let kwd = Currency::from_iso_code("KWD").unwrap();
    assert_eq!(to_minor_units("amount", dec("12.34"), &usd).unwrap(), 1234);
    assert_eq!(to_minor_units("amount", dec("500"), &jpy).unwrap(), 500);
    assert_eq!(to_minor_units("amount", dec("1.005"), &kwd).unwrap(), 1005);
    assert!(to_minor_units("amount", dec("1.005"), &usd).is_err());
    let credits = Currency::credit_unit("code", "CREDITS", "decimals", 2).unwrap();
    assert!(to_minor_units("amount", dec("1"), &credits).is_err());
}

#[test]
fn top_up_limits_bound_the_amount_and_their_presets() {
    let limits = TopUpLimits::parse("5", "500.00", &["10".into(), "50".into()]).unwrap();
    assert_eq!(limits.maximum, dec("500"));
    assert!(limits.check("amount", dec("5")).is_ok());
    assert!(limits.check("amount", dec("500")).is_ok());
    for bad in ["4.99", "500.01"] {
        match limits.check("amount", dec(bad)) {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "amount"),
            other => panic!("{bad}: {other:?}"),
        }
    }
    assert_eq!(
        TopUpLimits::presets_from_json(&limits.presets_json()).unwrap(),
        vec![dec("10"), dec("50")]
    );
    let field = |r: Result<TopUpLimits, Error>| match r {
        Err(Error::Invalid { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(field(TopUpLimits::parse("0", "5", &[])), "minimum");
    assert_eq!(field(TopUpLimits::parse("5", "4", &[])), "maximum");
    assert_eq!(field(TopUpLimits::parse("5", "10", &["11".into()])), "presets.0");
    assert_eq!(
        field(TopUpLimits::parse("5", "10", &["6".into(), "6.0".into()])),
        "presets.1"
    );
    let defaults = TopUpLimits::default();
    assert_eq!((defaults.minimum, defaults.maximum), (dec("1"), dec("10000")));
}

#[test]
fn events_say_what_to_do() {
    let completed = br#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":{"id":"cs_1","payment_status":"paid","payment_intent":"pi_1","amount_total":1234,"currency":"usd"}}}"#;
    assert_eq!(
        parse_event(completed).unwrap().action,
        Action::Succeeded {
            session: "cs_1".into(),
            payment_intent: Some("pi_1".into()),
            amount_total: Some(1234),
            currency: Some("usd".into()),
        }
    );
    let processing = br#"{"id":"evt_2","type":"checkout.session.completed","data":{"object":{"id":"cs_1","payment_status":"unpaid"}}}"#;
    assert_eq!(parse_event(processing).unwrap().action, Action::Ignored);
    let expired = br#"{"id":"evt_3","type":"checkout.session.expired","data":{"object":{"id":"cs_1"}}}"#;
    assert!(matches!(parse_event(expired).unwrap().action, Action::Failed { .. }));
    let refunded = br#"{"id":"evt_4","type":"charge.refunded","data":{"object":{"id":"ch_1","payment_intent":"pi_1","amount":1234,"amount_refunded":1234}}}"#;
    assert_eq!(parse_event(refunded).unwrap().object_ref(), Some("pi_1"));
    let other = br#"{"id":"evt_5","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#;
    assert_eq!(parse_event(other).unwrap().action, Action::Ignored);
    for bad in [
        &b"not json"[..],
        br#"{"type":"x","data":{"object":{}}}"#,
        br#"{"id":"evt","type":"x"}"#,
    ] {
        assert!(matches!(parse_event(bad), Err(Error::BadRequest(_))));
    }
}
