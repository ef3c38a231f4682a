//! The baselines every run measures next to the scenarios: a bare tonic server answering the
//! same message as `CheckFeatures` (B1), GetTenant's statement prepared on bare tokio-postgres
//! (B2; B2′ is a one-table `SELECT *` by key, for scale), the same statement through the
//! services' own pool (B3), bare bcrypt (B4), a bare single-row write (B5) and a bare 50-row
//! keyset range read (B6).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{Context as _, Result};
use base64::Engine as _;
use prost::Message as _;
use tenantry_proto::settings::v1 as settings_pb;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_web::GrpcWebLayer;

/// Answers `TenantSettingsService/CheckFeatures` with a fixed message: the same path, request
/// and response sizes as the real service, and nothing else (no auth, no cache, no database).
#[derive(Clone)]
struct Echo(Arc<settings_pb::CheckFeaturesResponse>);

impl tonic::server::NamedService for Echo {
    const NAME: &'static str = "tenantry.settings.v1.TenantSettingsService";
}

struct Answer(Arc<settings_pb::CheckFeaturesResponse>);

impl tonic::server::UnaryService<settings_pb::CheckFeaturesRequest> for Answer {
    type Response = settings_pb::CheckFeaturesResponse;
    type Future = std::future::Ready<Result<tonic::Response<Self::Response>, tonic::Status>>;

    fn call(
        &mut self,
        _request: tonic::Request<settings_pb::CheckFeaturesRequest>,
    ) -> Self::Future {
        std::future::ready(Ok(tonic::Response::new((*self.0).clone())))
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Echo {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let answer = Answer(Arc::clone(&self.0));
        Box::pin(async move {
            if req.uri().path() == "/tenantry.settings.v1.TenantSettingsService/CheckFeatures" {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(answer, req).await)
            } else {
                Ok(tonic::Status::unimplemented("echo serves CheckFeatures only").into_http())
            }
        })
    }
}

/// `tenantry-bench __serve echo <addr> <answer>`: the B1 server, with the services'
/// `Server::builder()` settings (HTTP/1 accepted, grpc-web layer, the same per-call trace
/// span) and none of their middleware; `answer` is the base64 of the encoded
/// `CheckFeaturesResponse` a real call returned.
pub(crate) async fn serve_echo(addr: &str, answer: &str) -> Result<()> {
    let addr: SocketAddr = addr.parse().context("the echo address")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(answer)
        .context("the echo answer")?;
    let answer = settings_pb::CheckFeaturesResponse::decode(bytes.as_slice())?;
    let listener = TcpListener::bind(addr).await?;
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    Server::builder()
        .accept_http1(true)
        .trace_fn(
            |req: &http::Request<()>| tracing::info_span!("rpc", rpc.method = %req.uri().path()),
        )
        .layer(GrpcWebLayer::new())
        .add_service(health_service)
        .add_service(Echo(Arc::new(answer)))
        .serve_with_incoming_shutdown(
            // TCP_NODELAY: without it, an answer larger than one segment (a page of 50
            // tenants) waits for the client's delayed ACK, 40 ms per call.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            tenantry_runtime::server::shutdown_signal(),
        )
        .await?;
    Ok(())
}

/// A tokio-postgres client on its own connection task.
pub(crate) async fn pg_client(url: &str) -> Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .context("tokio-postgres connect")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The point read of B2′: one tenant row by primary key, every column of one table.
pub(crate) const POINT_READ: &str = "SELECT * FROM organizations WHERE id = $1";
/// The single-row write of B5 (autocommit: its own transaction).
pub(crate) const WRITE: &str =
    "UPDATE organizations SET display_name = $1, updated_at = now() WHERE id = $2::text::uuid";
/// B6: a 50-row keyset page in the listing's order, after a cursor.
pub(crate) const RANGE_READ: &str = "SELECT * FROM organizations WHERE is_active \
     AND (created_at, id) < ($1::text::timestamptz, $2::text::uuid) \
     ORDER BY created_at DESC, id DESC LIMIT 50";
/// B6 page 1.
pub(crate) const RANGE_READ_FIRST: &str =
    "SELECT * FROM organizations WHERE is_active ORDER BY created_at DESC, id DESC LIMIT 50";
/// The count a listing with `total_size` adds.
pub(crate) const COUNT: &str = "SELECT count(*) FROM organizations WHERE is_active";
