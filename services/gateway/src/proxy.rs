//! Forwarding to the owning service, without decoding: the gateway routes by the gRPC path,
//! authenticates, checks the permission, replaces any identity headers the caller sent with the
//! authenticated ones plus the internal token, and streams the HTTP/2 request through (reading
//! only the subject's code of a call about one subject, for the audit log, as it passes).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use http::HeaderValue;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::Health;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus};

/// The identity headers, as names made at compile time: a header removed or set by its text has
/// its name parsed and checked on every call.
mod names {
    use http::HeaderName;
    use xinyong_platform::identity as id;
    pub const INTERNAL_TOKEN: HeaderName = HeaderName::from_static(id::INTERNAL_TOKEN_HEADER);
    pub const DEPARTMENT: HeaderName = HeaderName::from_static(id::DEPARTMENT_HEADER);
    pub const PERMISSIONS: HeaderName = HeaderName::from_static(id::PERMISSIONS_HEADER);
    pub const CLIENT_CERTIFICATE: HeaderName = HeaderName::from_static(id::CLIENT_CERTIFICATE_HEADER);
    /// `identity::RESERVED_HEADERS`, which a test holds these to.
    pub const RESERVED: [HeaderName; 4] = [INTERNAL_TOKEN, DEPARTMENT, PERMISSIONS, CLIENT_CERTIFICATE];
}
use xinyong_platform::metrics::answered_with;

use crate::audit::{self, AuditLog, Entry};
use crate::auth::{Authenticator, Presented, certificates_of};
use crate::limits::RateLimits;
use crate::subject;
use xinyong_platform::upstream::UpstreamConnection;

/// One upstream gRPC service: its full name and the service that owns it.
pub trait Upstream: Clone + Send + Sync + 'static {
    const NAME: &'static str;
    const SERVICE: &'static str;
}

macro_rules! upstreams {
    ($($marker:ident => $service:literal, $name:literal;)*) => {
        $(
            #[derive(Clone)]
            pub struct $marker;
            impl Upstream for $marker {
                const NAME: &'static str = $name;
                const SERVICE: &'static str = $service;
            }
        )*
        /// `(owning service, gRPC service name)` of every upstream.
        pub const UPSTREAMS: &[(&str, &str)] = &[$(($service, $name)),*];
    };
}

upstreams! {
    Registry => "registry", "xinyong.registry.v1.RegistryService";
    Ingestion => "ingestion", "xinyong.ingestion.v1.IngestionService";
    Grading => "grading", "xinyong.grading.v1.GradingService";
    Sanctions => "sanctions", "xinyong.sanctions.v1.SanctionsService";
    Lottery => "lottery", "xinyong.lottery.v1.LotteryService";
    Objections => "objections", "xinyong.objections.v1.ObjectionService";
    Reports => "reports", "xinyong.reports.v1.ReportService";
}

/// What every forwarded call passes through before it leaves, whichever service it is for.
#[derive(Clone)]
pub struct Checks {
    pub auth: Authenticator,
    pub limits: RateLimits,
    pub audit: AuditLog,
    pub internal_token: HeaderValue,
}

/// Forwards every call of upstream `U`.
#[derive(Clone)]
pub struct Forward<U> {
    upstream: UpstreamConnection,
    checks: Checks,
    _upstream: PhantomData<U>,
}

impl<U: Upstream> Forward<U> {
    pub fn new(upstream: UpstreamConnection, checks: Checks) -> Forward<U> {
        Forward { upstream, checks, _upstream: PhantomData }
    }
}

impl<U: Upstream> NamedService for Forward<U> {
    const NAME: &'static str = U::NAME;
}

impl<U: Upstream> tower::Service<http::Request<Body>> for Forward<U> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        let upstream = self.upstream.clone();
        let Checks { auth, limits, audit, internal_token } = self.checks.clone();
        Box::pin(async move {
            // Every call is recorded with how it was answered, refused ones too; its method and
            // department move into the entry.
            let method = audit::method(request.uri().path());
            let refused = async |department: String, method: String, status: tonic::Status| {
                audit.record(Entry::now(department, method, status.code())).await;
                Ok(status.into_http())
            };
            let certificates = certificates_of(request.extensions());
            let identity = match auth.authenticate(request.headers(), || Presented::of(certificates)).await {
                Ok(identity) => identity,
                Err(status) => return refused(String::new(), method, status).await,
            };
            if let Err(status) = identity.may_call(&method) {
                return refused(identity.department_id, method, status).await;
            }
            // After the permission check: a call refused for want of a permission is not counted
            // against the department's rate.
            if let Some(own) = identity.calls_per_second
                && let Err(status) = limits.admit(&identity.department_id, own)
            {
                return refused(identity.department_id, method, status).await;
            }
            let headers = request.headers_mut();
            for reserved in names::RESERVED {
                headers.remove(reserved);
            }
            headers.remove(http::header::AUTHORIZATION);
            headers.insert(names::INTERNAL_TOKEN, internal_token);
            headers.insert(names::DEPARTMENT, identity.department_header);
            headers.insert(names::PERMISSIONS, identity.permissions_header);
            if let Some(certificate) = identity.certificate_header {
                headers.insert(names::CLIENT_CERTIFICATE, certificate);
            }
            // For a method about one subject, its code is read from the request as it passes. A
            // unary request has been read whole by the time its answer's headers come back.
            let seen = subject::field_path(&method).map(|path| {
                let seen = Arc::new(OnceLock::new());
                let (parts, body) = std::mem::take(&mut request).into_parts();
                request = http::Request::from_parts(parts, Body::new(subject::Tap::new(body, path, seen.clone())));
                seen
            });
            match upstream.send(request).await {
                Ok(response) => {
                    let code = answered_with(response.headers());
                    let about = seen.and_then(|seen| seen.get().cloned()).unwrap_or_default();
                    audit.record(Entry::now(identity.department_id, method, code).about(about)).await;
                    Ok(response)
                }
                Err(error) => {
                    tracing::warn!(upstream = U::SERVICE, %error, "upstream unreachable");
                    let status =
                        tonic::Status::unavailable(format!("the {} service is unreachable; retry later", U::SERVICE));
                    refused(identity.department_id, method, status).await
                }
            }
        })
    }
}

type HealthStream = Pin<Box<dyn futures::Stream<Item = Result<HealthCheckResponse, tonic::Status>> + Send>>;

/// Health at the gateway: its own status for `""` and `xinyong.gateway.v1.*`, and the owning
/// service's answer for an upstream's name, so "is registry serving?" can be asked at the one
/// public endpoint.
#[derive(Clone)]
pub struct GatewayHealth {
    local: std::sync::Arc<tonic_health::server::HealthService>,
    upstreams: HashMap<
        &'static str,
        HealthClient<
            tonic::service::interceptor::InterceptedService<
                UpstreamConnection,
                xinyong_platform::identity::InternalInterceptor,
            >,
        >,
    >,
}

impl GatewayHealth {
    pub fn new(
        local: tonic_health::server::HealthService,
        upstreams: HashMap<
            &'static str,
            HealthClient<
                tonic::service::interceptor::InterceptedService<
                    UpstreamConnection,
                    xinyong_platform::identity::InternalInterceptor,
                >,
            >,
        >,
    ) -> GatewayHealth {
        GatewayHealth { local: std::sync::Arc::new(local), upstreams }
    }
}

#[tonic::async_trait]
impl Health for GatewayHealth {
    async fn check(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<HealthCheckResponse>, tonic::Status> {
        let Some(client) = self.upstreams.get(request.get_ref().service.as_str()) else {
            return self.local.check(request).await;
        };
        // While the gateway itself drains, nothing behind it is reachable through it.
        let own = self.local.check(tonic::Request::new(HealthCheckRequest { service: String::new() })).await?;
        if own.get_ref().status != ServingStatus::Serving as i32 {
            return Ok(own);
        }
        let mut client = client.clone();
        match client.check(HealthCheckRequest { service: request.into_inner().service }).await {
            Ok(response) => Ok(response),
            Err(status) if status.code() == tonic::Code::NotFound => Err(status),
            Err(status) => {
                tracing::debug!(%status, "upstream health check failed");
                Ok(tonic::Response::new(HealthCheckResponse { status: ServingStatus::NotServing as i32 }))
            }
        }
    }

    type WatchStream = HealthStream;

    async fn watch(
        &self,
        request: tonic::Request<HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        let Some(client) = self.upstreams.get(request.get_ref().service.as_str()) else {
            let stream = self.local.watch(request).await?.into_inner();
            return Ok(tonic::Response::new(Box::pin(stream)));
        };
        let mut client = client.clone();
        let stream = client.watch(HealthCheckRequest { service: request.into_inner().service }).await?.into_inner();
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_names_stripped_are_the_reserved_headers() {
        let reserved = super::names::RESERVED;
        let stripped: Vec<&str> = reserved.iter().map(http::HeaderName::as_str).collect();
        assert_eq!(stripped, xinyong_platform::identity::RESERVED_HEADERS);
    }
}
