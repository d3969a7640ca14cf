//! Registering, reading with and without the personal-data permission, status changes, events,
//! the cache and its fallback.

use tonic::Code;
use tonic_types::StatusExt;
use xinyong_platform::testing::{TcpProxy, redis_address, redis_url};
use xinyong_proto::common::v1::Person;
use xinyong_proto::common::v1::{EntityStatus, SubjectKind};
use xinyong_proto::registry::v1::{
    CheckSubjectsRequest, GetEntityRequest, RegisterEntityRequest, SearchEntitiesRequest, UpdateEntityRequest,
    UpdateEntityStatusRequest, ValidateCreditCodeRequest, get_entity_request,
};

use crate::support::{lenovo, spawn_app, spawn_app_with_redis};

fn by_code(code: &str) -> GetEntityRequest {
    GetEntityRequest { key: Some(get_entity_request::Key::CreditCode(code.into())), include_history: false }
}

fn with_history(code: &str) -> GetEntityRequest {
    GetEntityRequest { include_history: true, ..by_code(code) }
}

#[tokio::test]
async fn validate_credit_code_explains_and_parses() {
    let mut app = spawn_app().await;
    let valid = app
        .clerk
        .validate_credit_code(ValidateCreditCodeRequest { credit_code: "9144030071526726XG".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(valid.valid);
    let parts = valid.parts.unwrap();
    assert_eq!((parts.region_code.as_str(), parts.organisation_code.as_str()), ("440300", "71526726X"));
    assert_eq!(parts.kind, SubjectKind::Enterprise as i32);
    let invalid = app
        .clerk
        .validate_credit_code(ValidateCreditCodeRequest { credit_code: "91110000600037341X".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(!invalid.valid);
    assert_eq!(invalid.reason, "check digit should be `L`, found `X`");
    app.stop().await;
}

#[tokio::test]
async fn registering_is_idempotent_and_refuses_different_data() {
    let mut app = spawn_app().await;
    let first = app.clerk.register_entity(RegisterEntityRequest { entity: Some(lenovo()) }).await.unwrap().into_inner();
    assert!(first.created);
    let entity = first.entity.unwrap();
    assert_eq!(entity.status, EntityStatus::Operating as i32);
    assert_eq!(entity.registered_capital, "56500.00");

    let again = app.clerk.register_entity(RegisterEntityRequest { entity: Some(lenovo()) }).await.unwrap().into_inner();
    assert!(!again.created, "the same data again is a no-op");

    let mut changed = lenovo();
    changed.address = "北京市海淀区别处".into();
    changed.legal_representative.as_mut().unwrap().id_number =
        xinyong_domain::resident_id::complete("11010519491231003").unwrap();
    let refused = app.clerk.register_entity(RegisterEntityRequest { entity: Some(changed) }).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("address, legal_representative.id_number"), "{}", refused.message());
    assert!(refused.message().contains("UpdateEntity"), "points to the call that changes it: {}", refused.message());

    let (subjects, events): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM entities), (SELECT count(*) FROM outbox WHERE event_type = 'xinyong.events.v1.EntityRegistered')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!((subjects, events), (1, 1), "one subject, announced once");

    // An old registration number names one subject; subjects without one never clash.
    let mut other = crate::support::generated("110000", 7, "另一家公司", SubjectKind::Enterprise);
    other.registration_number = lenovo().registration_number;
    let taken = app.clerk.register_entity(RegisterEntityRequest { entity: Some(other.clone()) }).await.unwrap_err();
    assert_eq!(taken.code(), Code::FailedPrecondition, "{taken:?}");
    assert!(taken.message().contains("registration_number"), "{}", taken.message());
    for serial in [7, 8] {
        let mut without = crate::support::generated("110108", serial, "无注册号企业", SubjectKind::Enterprise);
        without.registration_number = String::new();
        let created = app.clerk.register_entity(RegisterEntityRequest { entity: Some(without) }).await.unwrap();
        assert!(created.into_inner().created);
    }
    app.stop().await;
}

#[tokio::test]
async fn bad_input_names_every_field_and_writes_nothing() {
    let mut app = spawn_app().await;
    let mut entity = lenovo();
    entity.credit_code = "91I10000600037341L".into();
    entity.kind = SubjectKind::FarmerCooperative as i32;
    entity.industry_code = "52".into();
    entity.established_on = "12/11/1992".into();
    let status = app.clerk.register_entity(RegisterEntityRequest { entity: Some(entity) }).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let details = status.get_error_details();
    let fields: Vec<&str> = details.bad_request().unwrap().field_violations.iter().map(|v| v.field.as_str()).collect();
    assert_eq!(fields, ["credit_code", "industry_code", "established_on"]);
    assert!(status.message().contains("character `I` is not allowed at position 3"), "{}", status.message());

    let mut wrong_kind = lenovo();
    wrong_kind.kind = SubjectKind::FarmerCooperative as i32;
    let status = app.clerk.register_entity(RegisterEntityRequest { entity: Some(wrong_kind) }).await.unwrap_err();
    assert!(status.message().contains("kind: SUBJECT_KIND_FARMER_COOPERATIVE does not agree"), "{}", status.message());

    let missing = app.clerk.register_entity(RegisterEntityRequest { entity: None }).await.unwrap_err();
    assert!(missing.message().contains("entity: required"));

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM entities").fetch_one(&app.pool).await.unwrap();
    assert_eq!(count, 0, "nothing half-written");
    app.stop().await;
}

#[tokio::test]
async fn the_id_number_is_masked_without_the_permission_and_never_stored_in_clear() {
    let mut app = spawn_app().await;
    let registered =
        app.clerk.register_entity(RegisterEntityRequest { entity: Some(lenovo()) }).await.unwrap().into_inner();
    let person = registered.entity.unwrap().legal_representative.unwrap();
    assert_eq!(person.id_number, "110105********002X");
    assert!(person.id_number_masked);

    let masked = app.clerk.get_entity(by_code("91110000600037341L")).await.unwrap().into_inner();
    assert_eq!(masked.entity.unwrap().legal_representative.unwrap().id_number, "110105********002X");

    let clear = app.officer.get_entity(by_code("91110000600037341l")).await.unwrap().into_inner();
    let person = clear.entity.unwrap().legal_representative.unwrap();
    assert_eq!(person.id_number, "11010519491231002X");
    assert!(!person.id_number_masked);

    // Nowhere in the table, its indexes' columns or the outbox is the number in clear.
    let dump: String = sqlx::query_scalar(
        "SELECT (SELECT string_agg(t::text, ' ') FROM entities t) || (SELECT string_agg(encode(envelope, 'escape'), ' ') FROM outbox)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(!dump.contains("11010519491231002X") && !dump.contains("19491231"), "clear ID number stored");

    // Nor in Redis.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let cached: Vec<u8> = redis::cmd("GET")
        .arg(format!("{}:registry:entity:91110000600037341L", app.redis_prefix))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!cached.is_empty(), "the summary is cached");
    assert!(!String::from_utf8_lossy(&cached).contains("19491231"));

    let by_number = app
        .clerk
        .get_entity(GetEntityRequest {
            key: Some(get_entity_request::Key::RegistrationNumber(lenovo().registration_number)),
            include_history: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_number.entity.unwrap().credit_code, "91110000600037341L");

    let unknown = app.clerk.get_entity(by_code("9144030071526726XG")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert!(unknown.message().contains("9144030071526726XG"));
    app.stop().await;
}

#[tokio::test]
async fn status_changes_keep_history_and_deregistration_is_final() {
    let mut app = spawn_app().await;
    app.clerk.register_entity(RegisterEntityRequest { entity: Some(lenovo()) }).await.unwrap();
    // Cache the operating status first, so the change must invalidate it.
    app.clerk.get_entity(by_code("91110000600037341L")).await.unwrap();

    let revoke = |status: EntityStatus, on: &str, reason: &str| UpdateEntityStatusRequest {
        credit_code: "91110000600037341L".into(),
        status: status as i32,
        effective_on: on.into(),
        reason: reason.into(),
    };
    let revoked = app
        .clerk
        .update_entity_status(revoke(EntityStatus::LicenceRevoked, "2025-03-01", "京海市监罚〔2025〕12号"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.entity.unwrap().status, EntityStatus::LicenceRevoked as i32);
    assert_eq!(revoked.history.len(), 2, "registration and revocation");
    assert_eq!(revoked.history[1].department_id, "samr-110108");

    let read = app.clerk.get_entity(by_code("91110000600037341L")).await.unwrap().into_inner();
    assert_eq!(read.entity.unwrap().status, EntityStatus::LicenceRevoked as i32, "the cache was invalidated");

    let no_reason =
        app.clerk.update_entity_status(revoke(EntityStatus::Deregistered, "2025-04-01", " ")).await.unwrap_err();
    assert_eq!(no_reason.code(), Code::InvalidArgument);
    assert!(no_reason.message().contains("reason"));
    let backdated =
        app.clerk.update_entity_status(revoke(EntityStatus::Deregistered, "2025-01-01", "注销")).await.unwrap_err();
    assert!(backdated.message().contains("effective_on"), "{}", backdated.message());

    app.clerk.update_entity_status(revoke(EntityStatus::Deregistered, "2025-04-01", "注销登记")).await.unwrap();
    let after =
        app.clerk.update_entity_status(revoke(EntityStatus::Operating, "2025-05-01", "恢复")).await.unwrap_err();
    assert_eq!(after.code(), Code::FailedPrecondition);
    assert!(after.message().contains("final"), "{}", after.message());

    let events: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM outbox ORDER BY seq").fetch_all(&app.pool).await.unwrap();
    assert_eq!(
        events,
        [
            "xinyong.events.v1.EntityRegistered",
            "xinyong.events.v1.EntityStatusChanged",
            "xinyong.events.v1.EntityStatusChanged"
        ]
    );
    let with_history = app.clerk.get_entity(with_history("91110000600037341L")).await.unwrap().into_inner();
    assert_eq!(with_history.history.len(), 3);
    app.stop().await;
}

#[tokio::test]
async fn a_change_registration_updates_the_subject_and_keeps_what_it_replaced() {
    let mut app = spawn_app().await;
    app.clerk.register_entity(RegisterEntityRequest { entity: Some(lenovo()) }).await.unwrap();
    // Cached before the change, so the change must invalidate it.
    app.clerk.get_entity(by_code("91110000600037341L")).await.unwrap();

    let new_representative = xinyong_domain::resident_id::complete("11010819800101001").unwrap();
    let mut changed = lenovo();
    changed.name = "联想集团(北京)有限公司".into();
    changed.address = "北京市海淀区西北旺东路10号院".into();
    changed.legal_representative =
        Some(Person { name: "刘军".into(), id_number: new_representative.clone(), id_number_masked: false });
    let update = |entity, reason: &str| UpdateEntityRequest { entity: Some(entity), reason: reason.into() };
    let updated = app.clerk.update_entity(update(changed.clone(), "京海市监变〔2026〕3号")).await.unwrap().into_inner();
    assert_eq!(
        updated.changed_fields,
        ["name", "address", "legal_representative.name", "legal_representative.id_number"]
    );
    assert_eq!(updated.version, 2);
    let entity = updated.entity.unwrap();
    assert_eq!(entity.name, "联想集团(北京)有限公司");
    assert_eq!(entity.status, EntityStatus::Operating as i32, "the status is not touched");
    assert_eq!(
        entity.legal_representative.unwrap().id_number,
        xinyong_domain::masking::mask_id_number(&new_representative)
    );

    let read = app.clerk.get_entity(by_code("91110000600037341L")).await.unwrap().into_inner();
    assert_eq!(read.entity.unwrap().name, "联想集团(北京)有限公司", "the cache was invalidated");
    let clear = app.officer.get_entity(by_code("91110000600037341L")).await.unwrap().into_inner();
    assert_eq!(clear.entity.unwrap().legal_representative.unwrap().id_number, new_representative);

    // The same data again is a retry: nothing changes, no version, no event.
    let again = app.clerk.update_entity(update(changed.clone(), "京海市监变〔2026〕3号")).await.unwrap().into_inner();
    assert!(again.changed_fields.is_empty());
    assert_eq!(again.version, 2);

    let history = app.clerk.get_entity(with_history("91110000600037341L")).await.unwrap().into_inner();
    assert_eq!(history.versions.len(), 1);
    let replaced = &history.versions[0];
    assert_eq!((replaced.version, replaced.reason.as_str()), (1, "京海市监变〔2026〕3号"));
    assert_eq!(replaced.department_id, "samr-110108");
    let previous: Vec<(&str, &str)> =
        replaced.changes.iter().map(|change| (change.field.as_str(), change.previous.as_str())).collect();
    assert_eq!(
        previous,
        [
            ("name", "联想(北京)有限公司"),
            ("address", "北京市海淀区上地信息产业基地创业路6号"),
            ("legal_representative.name", "杨元庆"),
            ("legal_representative.id_number", "110105********002X"),
        ]
    );
    assert_eq!(history.history.len(), 1, "the status history is its own");

    // Search finds the subject under its new name.
    let hits = app
        .clerk
        .search_entities(SearchEntitiesRequest { name: "联想集团".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .hits;
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].entity.as_ref().unwrap().credit_code, "91110000600037341L");

    // Neither number is kept in clear anywhere: the versions keep the masked one.
    let dump: String = sqlx::query_scalar(
        "SELECT (SELECT string_agg(t::text, ' ') FROM entities t) || (SELECT string_agg(v::text, ' ') FROM entity_versions v)
             || (SELECT string_agg(encode(envelope, 'escape'), ' ') FROM outbox)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(!dump.contains("19491231") && !dump.contains("19800101"), "clear ID number stored");
    let events: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM outbox ORDER BY seq").fetch_all(&app.pool).await.unwrap();
    assert_eq!(events, ["xinyong.events.v1.EntityRegistered", "xinyong.events.v1.EntityUpdated"]);

    // Bad input names its field and changes nothing.
    let no_reason = app.clerk.update_entity(update(lenovo(), " ")).await.unwrap_err();
    assert_eq!(no_reason.code(), Code::InvalidArgument);
    assert!(no_reason.message().contains("reason"), "{}", no_reason.message());
    let mut with_status = lenovo();
    with_status.status = EntityStatus::Deregistered as i32;
    let status = app.clerk.update_entity(update(with_status, "注销")).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("UpdateEntityStatus"), "{}", status.message());
    let mut wrong_kind = changed.clone();
    wrong_kind.kind = SubjectKind::IndividualBusiness as i32;
    let kind = app.clerk.update_entity(update(wrong_kind, "变更")).await.unwrap_err();
    assert_eq!(kind.get_error_details().bad_request().unwrap().field_violations[0].field, "kind");
    let mut unknown = lenovo();
    unknown.credit_code = "9144030071526726XG".into();
    unknown.registration_number = String::new();
    unknown.region_code = "440300".into();
    let missing = app.clerk.update_entity(update(unknown, "变更")).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains("9144030071526726XG"));
    let versions: i64 = sqlx::query_scalar("SELECT count(*) FROM entity_versions").fetch_one(&app.pool).await.unwrap();
    assert_eq!(versions, 1);
    app.stop().await;
}

#[tokio::test]
async fn check_subjects_answers_which_codes_are_registered_in_one_call() {
    let mut app = spawn_app().await;
    app.clerk.register_entity(RegisterEntityRequest { entity: Some(lenovo()) }).await.unwrap();
    let asked = vec!["91110000600037341L".to_owned(), "9144030071526726XG".to_owned(), "not a code".to_owned()];
    let answer = app.clerk.check_subjects(CheckSubjectsRequest { credit_codes: asked }).await.unwrap().into_inner();
    assert_eq!(answer.registered, ["91110000600037341L"]);
    let empty = app.clerk.check_subjects(CheckSubjectsRequest::default()).await.unwrap().into_inner();
    assert!(empty.registered.is_empty());
    let too_many = CheckSubjectsRequest { credit_codes: vec!["91110000600037341L".to_owned(); 5001] };
    let refused = app.clerk.check_subjects(too_many).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("credit_codes") && refused.message().contains("5001"), "{}", refused.message());
    app.stop().await;
}

#[tokio::test]
async fn events_are_published_to_the_registry_stream() {
    let mut app = spawn_app().await;
    app.clerk.register_entity(RegisterEntityRequest { entity: Some(lenovo()) }).await.unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let stream = format!("{}:events:registry", app.redis_prefix);
    for _ in 0..250 {
        let length: i64 = redis::cmd("XLEN").arg(&stream).query_async(&mut connection).await.unwrap();
        if length == 1 {
            app.stop().await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("EntityRegistered never reached {stream}");
}

#[tokio::test]
async fn with_redis_gone_the_registry_answers_from_postgres() {
    let proxy = TcpProxy::start(redis_address(&redis_url())).await;
    let mut app = spawn_app_with_redis(&format!("redis://{}", proxy.address)).await;
    app.clerk.register_entity(RegisterEntityRequest { entity: Some(lenovo()) }).await.unwrap();
    app.clerk.get_entity(by_code("91110000600037341L")).await.unwrap();

    proxy.cut().await;
    let read = app.clerk.get_entity(by_code("91110000600037341L")).await.expect("answered without Redis").into_inner();
    assert_eq!(read.entity.unwrap().name, "联想(北京)有限公司");
    let status = app
        .clerk
        .update_entity_status(UpdateEntityStatusRequest {
            credit_code: "91110000600037341L".into(),
            status: EntityStatus::MovedOut as i32,
            effective_on: "2025-06-01".into(),
            reason: "迁出至天津".into(),
        })
        .await
        .expect("changes need no Redis");
    assert_eq!(status.into_inner().entity.unwrap().status, EntityStatus::MovedOut as i32);
    let unpublished: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert!(unpublished >= 1, "the event waits in the outbox until Redis is back");
    app.stop().await;
}
