//! `spawn_app`: grading on a free port in a throw-away database, with clients that call as the
//! gateway would, and helpers that put events on the bus as the producing services would.

use std::time::Duration;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use xinyong_domain::credit_code::{check_character, organisation_check};
use xinyong_domain::grading::PUBLIC_CREDIT;
use xinyong_grading::cache::GradeCache;
use xinyong_grading::grades::{Grader, Schemes};
use xinyong_grading::store::Store;
use xinyong_grading::{GradingSection, GradingSettings};
use xinyong_platform::PlatformSettings;
use xinyong_platform::bus::Event;
use xinyong_platform::identity::{Caller, InternalInterceptor};
use xinyong_platform::metrics::Metrics;
use xinyong_platform::redis::Redis;
use xinyong_platform::testing::{Spawned, TestDatabase, connect_when_serving, publish_event, redis_url};
use xinyong_proto::common::v1::{EntityStatus, Grade, Nature, SubjectKind};
use xinyong_proto::events::v1::{EntityRegistered, RecordFacts, RecordIngested};
use xinyong_proto::grading::v1::grading_service_client::GradingServiceClient;
use xinyong_proto::grading::v1::{GetGradeRequest, GradeInfo};

pub type Client = GradingServiceClient<InterceptedService<Channel, InternalInterceptor>>;

pub struct App {
    pub plain: Client,
    pub risk_office: Client,
    pub settings: PlatformSettings,
    pub pool: sqlx::PgPool,
    pub service: Spawned,
    _database: TestDatabase,
}

pub async fn spawn_app() -> App {
    spawn_app_with(|_| {}).await
}

/// `adjust` changes the settings before the service starts (a Redis behind a proxy, a chunk size).
pub async fn spawn_app_with(adjust: impl FnOnce(&mut GradingSettings)) -> App {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).try_init();
    let database = TestDatabase::new().await;
    let mut settings =
        GradingSettings { platform: database.settings("grading", &redis_url()), grading: GradingSection::default() };
    adjust(&mut settings);
    let platform = settings.platform.clone();
    let token = platform.internal.token.clone();
    let service = Spawned::start(|listener, stop| xinyong_grading::run(settings, listener, None, stop)).await;
    let channel = connect_when_serving(service.address, "xinyong.grading.v1.GradingService").await;
    let client = |caller: Caller| {
        GradingServiceClient::with_interceptor(channel.clone(), InternalInterceptor::new(&token, Some(caller)).unwrap())
    };
    let pool = database.pool_of("grading").await;
    App {
        plain: client(Caller::new("credit-office", vec![])),
        risk_office: client(Caller::new("risk-office", vec!["internal_grades".into()])),
        settings: platform,
        pool,
        service,
        _database: database,
    }
}

/// A valid credit code of an enterprise in `region`, distinct per `n`.
pub fn code(region: &str, n: u32) -> String {
    let organisation = format!("{:08}", 10_000_000 + n);
    let first17 = format!("91{region}{organisation}{}", organisation_check(&organisation));
    format!("{first17}{}", check_character(&first17).unwrap())
}

pub fn industry_risk() -> String {
    PUBLIC_CREDIT
        .replace("\"scheme\": \"public_credit\"", "\"scheme\": \"food_industry_risk\"")
        .replace("\"internal\": false", "\"internal\": true")
}

impl App {
    /// A pool of `size` connections to grading's database, for work that holds some of its own
    /// (a sweep's or a recompute's lock besides the work), with `adjust` applied to their options
    /// (a deployment's settings, another schema).
    pub async fn own_pool(
        &self,
        size: u32,
        adjust: impl FnOnce(sqlx::postgres::PgConnectOptions) -> sqlx::postgres::PgConnectOptions,
    ) -> sqlx::PgPool {
        let options = adjust(xinyong_platform::db::connect_options(&self.settings.database).unwrap());
        sqlx::postgres::PgPoolOptions::new().max_connections(size).connect_with(options).await.unwrap()
    }

    /// The parts a test drives directly (a regrade, the sweep, a recompute), over the service's own
    /// database and Redis, with the rule sets published so far.
    pub async fn grader_and_cache(&self) -> (Grader, GradeCache) {
        let schemes = Schemes::default();
        schemes.refresh(&Store::new(self.pool.clone())).await.unwrap();
        let redis = Redis::connect_and_wait(&self.settings.redis, Duration::from_secs(2)).await.unwrap();
        let cache = GradeCache::new(redis, Metrics::new("grading-test"), Duration::from_secs(60), schemes.clone());
        (Grader::new(schemes), cache)
    }

    pub async fn publish<E: Event>(&self, producer: &str, event: &E) {
        publish_event(&self.settings, producer, event).await;
    }

    pub async fn register(&self, credit_code: &str, region: &str) {
        self.publish("registry", &registered(credit_code, region)).await;
    }

    /// Wait until the subject's grade under `scheme` satisfies `done`; its last value otherwise.
    pub async fn grade_when(
        &self,
        credit_code: &str,
        scheme: &str,
        done: impl Fn(&GradeInfo) -> bool,
    ) -> Option<GradeInfo> {
        let mut client = self.risk_office.clone();
        let mut last = None;
        for _ in 0..200 {
            let answer = client
                .get_grade(GetGradeRequest { credit_code: credit_code.into(), scheme: scheme.into() })
                .await
                .ok()
                .and_then(|response| response.into_inner().grade);
            if let Some(grade) = &answer
                && done(grade)
            {
                return answer;
            }
            last = answer.or(last);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        last
    }

    pub async fn grade_becomes(&self, credit_code: &str, grade: Grade) -> GradeInfo {
        let found = self.grade_when(credit_code, "", |info| info.grade == grade as i32).await;
        match found {
            Some(info) if info.grade == grade as i32 => info,
            other => panic!("{credit_code} never graded {grade:?}; last: {other:?}"),
        }
    }

    pub async fn stop(self) {
        self.service.stop().await;
    }
}

pub fn registered(credit_code: &str, region: &str) -> EntityRegistered {
    EntityRegistered {
        credit_code: credit_code.into(),
        name: "测试有限公司".into(),
        kind: SubjectKind::Enterprise as i32,
        region_code: region.into(),
        industry_code: "F5211".into(),
        business_scope: String::new(),
        established_on: "2020-01-01".into(),
        status: EntityStatus::Operating as i32,
    }
}

/// A record of `category` and `nature`, decided on `decided_on`, published for a year.
pub fn record(credit_code: &str, record_id: &str, nature: Nature, decided_on: &str) -> RecordIngested {
    let until = chrono::NaiveDate::parse_from_str(decided_on, "%Y-%m-%d").unwrap() + chrono::Months::new(36);
    RecordIngested {
        credit_code: credit_code.into(),
        record_id: record_id.into(),
        department_id: "samr-110108".into(),
        category: "penalty".into(),
        nature: nature as i32,
        decided_on: decided_on.into(),
        facts: Some(RecordFacts {
            category: "penalty".into(),
            nature: nature as i32,
            decided_on: decided_on.into(),
            penalty_kind: xinyong_proto::ingestion::v1::PenaltyKind::Fine as i32,
            published: true,
            disclosure_until: until.to_string(),
            removed_on: String::new(),
            version: 1,
        }),
    }
}

/// A day relative to today (China time), `YYYY-MM-DD`.
pub fn days_ago(days: i64) -> String {
    (xinyong_domain::calendar::today() - chrono::Duration::days(days)).to_string()
}
