//! Searching names the way clerks type them, with filters and pages.

use tonic::Code;
use xinyong_proto::common::v1::SubjectKind;
use xinyong_proto::registry::v1::{RegisterEntityRequest, SearchEntitiesRequest};

use crate::support::{generated, spawn_app};

async fn register(app: &mut crate::support::App, region: &str, serial: u32, name: &str, kind: SubjectKind) -> String {
    let entity = generated(region, serial, name, kind);
    let code = entity.credit_code.clone();
    app.clerk.register_entity(RegisterEntityRequest { entity: Some(entity) }).await.unwrap();
    code
}

#[tokio::test]
async fn names_match_across_widths_forms_and_scripts_ranked_by_closeness() {
    let mut app = spawn_app().await;
    let exact = register(&mut app, "110108", 1, "联想(北京)有限公司", SubjectKind::Enterprise).await;
    let prefix = register(&mut app, "110108", 2, "联想北京科技服务有限公司", SubjectKind::Enterprise).await;
    let contains = register(&mut app, "310115", 3, "上海联想北京贸易有限公司", SubjectKind::Enterprise).await;
    register(&mut app, "440300", 4, "华为技术有限公司", SubjectKind::Enterprise).await;

    let hits = app
        .clerk
        .search_entities(SearchEntitiesRequest {
            name: "聯想（北京）有限責任公司".into(), ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert_eq!(
        hits[0].entity.as_ref().unwrap().credit_code,
        exact,
        "traditional, full-width and 有限责任公司 still match exactly"
    );
    assert_eq!(hits[0].r#match, "exact");
    assert_eq!(hits[0].score, 1.0);

    let hits = app
        .clerk
        .search_entities(SearchEntitiesRequest { name: "联想北京".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .hits;
    let order: Vec<(&str, &str)> =
        hits.iter().map(|hit| (hit.entity.as_ref().unwrap().credit_code.as_str(), hit.r#match.as_str())).collect();
    assert_eq!(order[..2].iter().map(|(_, m)| *m).collect::<Vec<_>>(), ["prefix", "prefix"]);
    assert!(order[..2].iter().any(|(code, _)| *code == exact) && order[..2].iter().any(|(code, _)| *code == prefix));
    assert_eq!(order[2], (contains.as_str(), "contains"));
    assert!(hits.windows(2).all(|pair| pair[0].score >= pair[1].score));

    let similar = app
        .clerk
        .search_entities(SearchEntitiesRequest { name: "华为技朮有限公司".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert_eq!(similar.len(), 1);
    assert_eq!(similar[0].r#match, "similar");
    assert!(similar[0].score > 0.0 && similar[0].score < 0.8);
    app.stop().await;
}

#[tokio::test]
async fn filters_and_pages() {
    let mut app = spawn_app().await;
    for serial in 0..25 {
        register(&mut app, "110108", serial, &format!("海淀餐饮店{serial:02}"), SubjectKind::IndividualBusiness).await;
    }
    for serial in 100..105 {
        register(&mut app, "110105", serial, &format!("朝阳餐饮有限公司{serial}"), SubjectKind::Enterprise).await;
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .clerk
            .search_entities(SearchEntitiesRequest {
                name: "餐饮".into(),
                region_prefix: "110108".into(),
                kinds: vec![SubjectKind::IndividualBusiness as i32],
                page_size: 10,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.hits.iter().map(|hit| hit.entity.as_ref().unwrap().credit_code.clone()));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen.len(), 25, "every Haidian shop once across pages");
    let unique: std::collections::HashSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 25);

    let by_filter_only = app
        .clerk
        .search_entities(SearchEntitiesRequest {
            region_prefix: "1101".into(),
            kinds: vec![SubjectKind::Enterprise as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_filter_only.hits.len(), 5);
    assert!(by_filter_only.hits.iter().all(|hit| hit.r#match == "filter"));

    let bad = app
        .clerk
        .search_entities(SearchEntitiesRequest { page_size: 1000, page_token: "zz".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("page_token"), "{}", bad.message());
    app.stop().await;
}

#[tokio::test]
async fn text_running_into_the_company_form_or_only_forms_still_matches_contains() {
    let mut app = spawn_app().await;
    let huawei = register(&mut app, "440300", 1, "华为技术有限公司", SubjectKind::Enterprise).await;
    let ping_an = register(&mut app, "440300", 2, "中国平安保险(集团)股份有限公司", SubjectKind::Enterprise).await;
    let shop = register(&mut app, "110108", 3, "海淀餐饮店", SubjectKind::IndividualBusiness).await;
    let search = |name: &str| SearchEntitiesRequest { name: name.into(), ..Default::default() };
    let found = |hits: &[xinyong_proto::registry::v1::SearchHit]| -> Vec<(String, String)> {
        hits.iter().map(|hit| (hit.entity.as_ref().unwrap().credit_code.clone(), hit.r#match.clone())).collect()
    };

    let hits = app.clerk.search_entities(search("技术有限")).await.unwrap().into_inner().hits;
    assert_eq!(found(&hits), [(huawei.clone(), "contains".to_owned())], "the text ends inside 有限公司");
    let hits = app.clerk.search_entities(search("平安保险集团股份")).await.unwrap().into_inner().hits;
    assert_eq!(found(&hits), [(ping_an.clone(), "contains".to_owned())]);
    let hits = app.clerk.search_entities(search("有限公司")).await.unwrap().into_inner().hits;
    let mut codes: Vec<String> = found(&hits).into_iter().map(|(code, _)| code).collect();
    codes.sort();
    let mut companies = vec![huawei, ping_an];
    companies.sort();
    assert_eq!(codes, companies, "a text of company forms alone matches every company, and not the shop");
    let hits = app.clerk.search_entities(search("餐饮店")).await.unwrap().into_inner().hits;
    assert_eq!(found(&hits), [(shop, "contains".to_owned())]);
    app.stop().await;
}

/// The index holds `left(name_normalised, name_core_length)`: if the statement stopped naming that
/// expression, every search would read the whole table, and only the plan shows it.
#[tokio::test]
async fn names_are_found_through_the_trigram_index_of_cores() {
    let mut app = spawn_app().await;
    register(&mut app, "110108", 1, "联想(北京)有限公司", SubjectKind::Enterprise).await;
    // A small table is cheaper to read whole; forbid that, so the plan shows what could be used.
    let options = (*app.pool.connect_options()).clone().options([("enable_seqscan", "off")]);
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect_with(options).await.unwrap();
    let store = xinyong_registry::store::Store::new(pool);
    for name in ["联想北京", "华为技朮有限公司", "有限公司"] {
        let query = xinyong_registry::store::SearchQuery {
            name_normalised: xinyong_domain::name::normalise(name),
            limit: 10,
            ..Default::default()
        };
        let plan = store.explain_search(&query).await.unwrap().join("\n");
        assert!(plan.contains("entities_name_core_trgm"), "{name}: {plan}");
    }
    app.stop().await;
}
