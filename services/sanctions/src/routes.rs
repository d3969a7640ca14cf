//! The service as served: the generated `SanctionsService` server, except that `CheckEntity`, the
//! hottest call of the platform, sends its prepared answer's bytes as they are ([`CheckAnswer`]).
//! The generated server would take a `CheckEntityResponse` and encode it, and building one from a
//! prepared answer means copying every string in it, on every call. This is the same path the
//! generated code takes (`tonic::server::Grpc::unary`), with a codec whose response type is
//! [`CheckAnswer`]: same status handling, same limits, same bytes on the wire.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::BoxFuture;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;
use tower::Service;
use xinyong_proto::sanctions::v1 as pb;
use xinyong_proto::sanctions::v1::sanctions_service_server::SanctionsServiceServer;

use crate::answers::CheckAnswer;
use crate::api::Sanctions;

const CHECK_ENTITY: &str = "/xinyong.sanctions.v1.SanctionsService/CheckEntity";

#[derive(Clone)]
pub struct SanctionsRoutes {
    api: Arc<Sanctions>,
    generated: SanctionsServiceServer<Sanctions>,
}

impl SanctionsRoutes {
    pub fn new(api: Sanctions) -> SanctionsRoutes {
        let api = Arc::new(api);
        SanctionsRoutes { generated: SanctionsServiceServer::from_arc(api.clone()), api }
    }
}

impl NamedService for SanctionsRoutes {
    const NAME: &'static str = SanctionsServiceServer::<Sanctions>::NAME;
}

impl Service<http::Request<Body>> for SanctionsRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != CHECK_ENTITY {
            return self.generated.call(request);
        }
        let check = CheckEntity(self.api.clone());
        Box::pin(async move {
            let mut grpc = Grpc::new(ProstCodec::<CheckAnswer, pb::CheckEntityRequest>::default());
            Ok(grpc.unary(check, request).await)
        })
    }
}

struct CheckEntity(Arc<Sanctions>);

impl UnaryService<pb::CheckEntityRequest> for CheckEntity {
    type Response = CheckAnswer;
    type Future = BoxFuture<Response<CheckAnswer>, Status>;

    fn call(&mut self, request: Request<pb::CheckEntityRequest>) -> Self::Future {
        let api = self.0.clone();
        Box::pin(async move { api.check(request).await.map(Response::new) })
    }
}
