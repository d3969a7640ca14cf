//! `xinyong.reports.v1.ReportService`.

use chrono::Utc;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prost::Message;
use tonic::{Request, Response, Status};
use uuid::Uuid;
use xinyong_domain::calendar::{day_at, today};
use xinyong_domain::credit_code::CreditCode;
use xinyong_platform::error::{keyset_page, uuid_page, violation};
use xinyong_platform::identity::{PERMISSION_ADMIN, digests_equal};
use xinyong_platform::metrics::Metrics;
use xinyong_platform::timestamp;
use xinyong_platform::{ApiError, Caller};
use xinyong_proto::common::v1::DateRange;
use xinyong_proto::ingestion::v1::ListRecordsRequest;
use xinyong_proto::reports::v1 as pb;
use xinyong_proto::reports::v1::report_service_server::ReportService;

use crate::gather::Owners;
use crate::report;
use crate::store::{ReportRow, Store};

/// The longest `source_request_id` kept.
const MAX_SOURCE_ID: usize = 128;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

pub struct Reports {
    store: Store,
    owners: Owners,
    issued: Family<KindLabels, Counter>,
}

impl Reports {
    pub fn new(store: Store, owners: Owners, metrics: &Metrics) -> Reports {
        let issued = Family::<KindLabels, Counter>::default();
        metrics.register("reports_issued", "credit reports issued, by kind", issued.clone());
        // Both series from the start, so that a rate over them is defined before the first report.
        for kind in [pb::ReportKind::Credit, pb::ReportKind::Special] {
            issued.get_or_create(&KindLabels { kind: kind_name(kind) }).get();
        }
        Reports { store, owners, issued }
    }

    /// Gather what a report of `kind` says about `credit_code`, for `caller`.
    async fn gather(
        &self,
        caller: &Caller,
        credit_code: &str,
        kind: pb::ReportKind,
        period: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    ) -> Result<pb::CreditReport, ApiError> {
        // The subject first: a code the registry does not know is NOT_FOUND before anyone else
        // is asked.
        let entity = self.owners.entity(caller, credit_code).await?;
        let query =
            |categories: &[&str], expired: bool, withdrawn: bool, decided: Option<DateRange>| ListRecordsRequest {
                credit_code: credit_code.to_owned(),
                categories: categories.iter().map(|category| (*category).to_owned()).collect(),
                include_expired: expired,
                include_withdrawn: withdrawn,
                include_history: true,
                decided,
                ..Default::default()
            };
        let mut report = pb::CreditReport {
            kind: kind as i32,
            credit_code: credit_code.to_owned(),
            entity: Some(entity),
            ..Default::default()
        };
        match (kind, period) {
            (pb::ReportKind::Special, Some((from, to))) => {
                let period = DateRange { from: from.to_string(), to: to.to_string() };
                let areas: Vec<&str> = report::SPECIAL_AREAS
                    .iter()
                    .map(|(category, _)| *category)
                    .filter(|category| *category != "serious_dishonesty_list")
                    .collect();
                // Withdrawn records were the provider's mistakes, and repaired ones are no longer
                // used: neither is a violation the report shows. Records past their disclosure
                // period and unpublished minor penalties (summary procedure) are.
                let (area_records, list_records, sanctions) = tokio::try_join!(
                    self.owners.records(caller, query(&areas, true, false, Some(period.clone()))),
                    self.owners.records(caller, query(&["serious_dishonesty_list"], true, false, None)),
                    self.owners.sanctions(caller, credit_code),
                )?;
                let (records, sections) =
                    report::special_sections(area_records, list_records, &sanctions.listings, from, to);
                report.period = Some(period);
                report.records = records;
                report.sections = sections;
            }
            _ => {
                let (grades, sanctions, mut in_force, every) = tokio::try_join!(
                    self.owners.grades(caller, credit_code),
                    self.owners.sanctions(caller, credit_code),
                    // In force and published; and every record, for the repaired ones.
                    self.owners.records(caller, query(&[], false, false, None)),
                    self.owners.records(caller, query(&[], true, true, None)),
                )?;
                report::newest_first(&mut in_force);
                report.grades = grades;
                report.listings = sanctions.listings;
                report.sanctions = sanctions.pushes;
                report.records = in_force;
                report.repairs = report::repairs(&every);
            }
        }
        Ok(report)
    }
}

fn decode(row: &ReportRow) -> Result<pb::CreditReport, ApiError> {
    pb::CreditReport::decode(row.body.as_slice()).map_err(ApiError::internal)
}

fn kind_name(kind: pb::ReportKind) -> &'static str {
    match kind {
        pb::ReportKind::Special => "special",
        _ => "credit",
    }
}

/// Why a report number is refused.
const NOT_A_NUMBER: &str = "not a report number (XYyyyymmdd-<32 hex digits>)";

#[tonic::async_trait]
impl ReportService for Reports {
    async fn issue_report(
        &self,
        request: Request<pb::IssueReportRequest>,
    ) -> Result<Response<pb::IssueReportResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let mut problems = Vec::new();
        let code = CreditCode::parse(request.credit_code.trim())
            .map_err(|error| problems.push(violation("credit_code", error.to_string())))
            .ok();
        let kind = match pb::ReportKind::try_from(request.kind) {
            Ok(kind @ (pb::ReportKind::Credit | pb::ReportKind::Special)) => kind,
            _ => {
                problems.push(violation("kind", "must be REPORT_KIND_CREDIT or REPORT_KIND_SPECIAL"));
                pb::ReportKind::Unspecified
            }
        };
        let today = today();
        let period = match kind {
            pb::ReportKind::Special => {
                report::special_period(request.period.as_ref(), today).map_err(|found| problems.extend(found)).ok()
            }
            _ => {
                if request.period.as_ref().is_some_and(|period| !period.from.is_empty() || !period.to.is_empty()) {
                    problems.push(violation("period", "only a special report covers a period"));
                }
                None
            }
        };
        let source = request.source_request_id.trim();
        if source.chars().count() > MAX_SOURCE_ID {
            problems.push(violation("source_request_id", format!("at most {MAX_SOURCE_ID} characters")));
        }
        ApiError::check(problems)?;
        let Some(code) = code else { return Err(ApiError::internal("validated code missing").into()) };
        let source = (!source.is_empty()).then_some(source);

        let retried = match source {
            Some(source) => self.store.by_source(&caller.department_id, source).await.map_err(ApiError::from)?,
            None => None,
        };
        if let Some(row) = retried {
            if row.credit_code != code.as_str() || row.kind != kind as i16 {
                let used_for = kind_name(pb::ReportKind::try_from(i32::from(row.kind)).unwrap_or_default());
                let reason = format!("was used for another report ({used_for}, about {})", row.credit_code);
                return Err(ApiError::invalid("source_request_id", reason).into());
            }
            return Ok(Response::new(pb::IssueReportResponse { report: Some(decode(&row)?), issued: false }));
        }

        let mut report = self.gather(&caller, code.as_str(), kind, period).await?;
        let (report_id, issued_at) = (Uuid::now_v7(), Utc::now());
        report.report_no = report::report_no(report_id, day_at(issued_at));
        report.issued_at = Some(timestamp(issued_at));
        report.issued_to.clone_from(&caller.department_id);
        let digest = report::digest(&report);
        report.digest = hex::encode(digest);
        let row = ReportRow {
            report_id,
            credit_code: code.as_str().to_owned(),
            kind: kind as i16,
            issued_to: caller.department_id.clone(),
            issued_at,
            digest: digest.to_vec(),
            body: report.encode_to_vec(),
        };
        let kept = self.store.insert(&row, source).await.map_err(ApiError::from)?;
        if kept.report_id != report_id {
            // The same request was issued by a retry running beside this one.
            return Ok(Response::new(pb::IssueReportResponse { report: Some(decode(&kept)?), issued: false }));
        }
        self.issued.get_or_create(&KindLabels { kind: kind_name(kind) }).inc();
        tracing::info!(report = %report.report_no, subject = %row.credit_code, kind = kind_name(kind), to = %row.issued_to, "report issued");
        Ok(Response::new(pb::IssueReportResponse { report: Some(report), issued: true }))
    }

    async fn get_report(
        &self,
        request: Request<pb::GetReportRequest>,
    ) -> Result<Response<pb::GetReportResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let id = report::report_id(&request.report_no).ok_or_else(|| ApiError::invalid("report_no", NOT_A_NUMBER))?;
        let row = self
            .store
            .get(id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound { what: "report", key: request.report_no.trim().to_owned() })?;
        if row.issued_to != caller.department_id && !caller.has(PERMISSION_ADMIN) {
            return Err(ApiError::PermissionDenied {
                permission: PERMISSION_ADMIN.to_owned(),
                detail: format!("report {} was issued to another department", request.report_no.trim()),
            }
            .into());
        }
        Ok(Response::new(pb::GetReportResponse { report: Some(decode(&row)?) }))
    }

    async fn list_reports(
        &self,
        request: Request<pb::ListReportsRequest>,
    ) -> Result<Response<pb::ListReportsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let request = request.into_inner();
        let (limit, before) = uuid_page(request.page_size, &request.page_token)?;
        let credit_code = match request.credit_code.trim() {
            "" => None,
            code => Some(CreditCode::parse(code).map_err(|error| ApiError::invalid("credit_code", error.to_string()))?),
        };
        let issued_to = match request.issued_to.trim() {
            "" => caller.department_id.as_str(),
            other if other == caller.department_id || caller.has(PERMISSION_ADMIN) => other,
            _ => {
                return Err(ApiError::PermissionDenied {
                    permission: PERMISSION_ADMIN.to_owned(),
                    detail: "only an administrator lists another department's reports".to_owned(),
                }
                .into());
            }
        };
        let rows = self
            .store
            .list(issued_to, credit_code.as_ref().map(CreditCode::as_str), before, limit + 1)
            .await
            .map_err(ApiError::from)?;
        let (rows, next_page_token) = keyset_page(rows, limit, |row| row.report_id);
        let reports = rows
            .into_iter()
            .map(|row| pb::ReportSummary {
                report_no: report::report_no(row.report_id, day_at(row.issued_at)),
                kind: i32::from(row.kind),
                credit_code: row.credit_code,
                issued_at: Some(timestamp(row.issued_at)),
                issued_to: row.issued_to,
                digest: hex::encode(row.digest),
            })
            .collect();
        Ok(Response::new(pb::ListReportsResponse { reports, next_page_token }))
    }

    async fn verify_report(
        &self,
        request: Request<pb::VerifyReportRequest>,
    ) -> Result<Response<pb::VerifyReportResponse>, Status> {
        let request = request.into_inner();
        let mut problems = Vec::new();
        let id = report::report_id(&request.report_no);
        if id.is_none() {
            problems.push(violation("report_no", NOT_A_NUMBER));
        }
        let given = hex::decode(request.digest.trim()).ok().filter(|digest| digest.len() == 32);
        if given.is_none() {
            problems.push(violation("digest", "must be 64 hexadecimal digits (SHA-256)"));
        }
        ApiError::check(problems)?;
        let (Some(id), Some(given)) = (id, given) else {
            return Err(ApiError::internal("validated input missing").into());
        };
        let Some(row) = self.store.get(id).await.map_err(ApiError::from)? else {
            return Ok(Response::new(pb::VerifyReportResponse::default()));
        };
        // The digest given must be the one issued, and the report kept must still hash to it: a
        // body changed in the database does not verify either.
        let intact = decode(&row).is_ok_and(|kept| digests_equal(&report::digest(&kept), &row.digest));
        if !intact {
            tracing::error!(report = %request.report_no.trim(), "a kept report no longer matches its digest");
        }
        if !(intact && digests_equal(&given, &row.digest)) {
            return Ok(Response::new(pb::VerifyReportResponse::default()));
        }
        Ok(Response::new(pb::VerifyReportResponse {
            valid: true,
            credit_code: row.credit_code,
            kind: i32::from(row.kind),
            issued_at: Some(timestamp(row.issued_at)),
            issued_to: row.issued_to,
        }))
    }
}
