//! Rule sets: the shipped schemes, versions, refusals, internal schemes.

use tonic::Code;
use tonic_types::StatusExt;
use xinyong_domain::grading::PUBLIC_CREDIT;
use xinyong_proto::grading::v1::{ListRuleSetsRequest, PublishRuleSetRequest};

use crate::support::{industry_risk, spawn_app};

#[tokio::test]
async fn the_shipped_schemes_are_published_and_new_versions_never_replace_old_ones() {
    let mut app = spawn_app().await;
    let shipped =
        app.plain.list_rule_sets(ListRuleSetsRequest { scheme: String::new() }).await.unwrap().into_inner().rule_sets;
    let names: Vec<(&str, i32, &str)> =
        shipped.iter().map(|r| (r.scheme.as_str(), r.version, r.published_by.as_str())).collect();
    assert_eq!(names, [("district_supervision", 1, "platform"), ("public_credit", 1, "platform")]);

    // The same document again publishes nothing; a changed one is version 2, and version 1 stays.
    let same = app
        .plain
        .publish_rule_set(PublishRuleSetRequest { scheme: String::new(), document: PUBLIC_CREDIT.into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(same.rule_set.unwrap().version, 1);
    let changed = PUBLIC_CREDIT.replace("\"at_least\": 6", "\"at_least\": 4");
    let published = app
        .plain
        .publish_rule_set(PublishRuleSetRequest { scheme: "public_credit".into(), document: changed.clone() })
        .await
        .unwrap()
        .into_inner();
    let rule_set = published.rule_set.unwrap();
    assert_eq!((rule_set.version, rule_set.published_by.as_str()), (2, "credit-office"));
    let versions = app
        .plain
        .list_rule_sets(ListRuleSetsRequest { scheme: "public_credit".into() })
        .await
        .unwrap()
        .into_inner()
        .rule_sets;
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].document, PUBLIC_CREDIT, "version 1 is kept as published");
    assert_eq!(versions[1].document, changed);
    app.service.stop().await;
}

#[tokio::test]
async fn a_malformed_rule_set_is_refused_with_the_place_and_the_reason() {
    let mut app = spawn_app().await;
    let bad = PUBLIC_CREDIT.replace("[\"GENERAL_DISHONESTY\"], \"at_least\": 6", "[\"GENERAL\"], \"at_least\": 6");
    let status =
        app.plain.publish_rule_set(PublishRuleSetRequest { scheme: String::new(), document: bad }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let violation = &details.bad_request().unwrap().field_violations[0];
    assert_eq!(violation.field, "document (rules[4].when.records.natures[0])");
    assert!(violation.description.contains("`GENERAL` is not one of"), "{}", violation.description);
    let wrong_scheme = app
        .plain
        .publish_rule_set(PublishRuleSetRequest { scheme: "other".into(), document: PUBLIC_CREDIT.into() })
        .await
        .unwrap_err();
    assert!(wrong_scheme.message().contains("scheme"), "{}", wrong_scheme.message());
    app.service.stop().await;
}

#[tokio::test]
async fn an_internal_scheme_is_hidden_without_the_permission() {
    let mut app = spawn_app().await;
    let refused = app
        .plain
        .publish_rule_set(PublishRuleSetRequest { scheme: String::new(), document: industry_risk() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(refused.message().contains("internal_grades"));
    app.risk_office
        .publish_rule_set(PublishRuleSetRequest { scheme: String::new(), document: industry_risk() })
        .await
        .unwrap();

    let seen_by_plain =
        app.plain.list_rule_sets(ListRuleSetsRequest { scheme: String::new() }).await.unwrap().into_inner().rule_sets;
    assert!(seen_by_plain.iter().all(|r| r.scheme != "food_industry_risk"), "hidden without internal_grades");
    let asked_by_name = app
        .plain
        .list_rule_sets(ListRuleSetsRequest { scheme: "food_industry_risk".into() })
        .await
        .unwrap()
        .into_inner()
        .rule_sets;
    assert!(asked_by_name.is_empty(), "not even by name");
    let seen_by_risk = app
        .risk_office
        .list_rule_sets(ListRuleSetsRequest { scheme: "food_industry_risk".into() })
        .await
        .unwrap()
        .into_inner()
        .rule_sets;
    assert_eq!(seen_by_risk.len(), 1);
    assert!(seen_by_risk[0].internal);
    app.service.stop().await;
}
