//! The gRPC server shared by the three services.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use tenantry_auth::AuthLayer;
use tokio::net::TcpListener;
use tonic::codegen::{Body as HttpBody, Bytes, StdError};
use tonic::service::RoutesBuilder;
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_web::GrpcWebLayer;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Headers a browser may send over grpc-web (DESIGN.md, Runtime).
const ALLOW_HEADERS: [&str; 5] = [
    "authorization",
    "x-grpc-web",
    "content-type",
    "x-user-agent",
    "grpc-timeout",
];
/// Headers a browser may read from a grpc-web answer.
const EXPOSE_HEADERS: [&str; 3] = ["grpc-status", "grpc-message", "grpc-status-details-bin"];

/// A failure to start or run the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Reflection could not be built from the descriptor set.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A CORS origin is not a valid header value.
    #[error("invalid CORS origin {0:?}")]
    Origin(String),
}

/// What a service hands to [`serve`].
#[derive(Debug)]
pub struct ServeOptions {
    /// The service's name for logs (`tenant-admin`...).
    pub name: &'static str,
    /// Fully-qualified gRPC service names served (`tenantry.admin.v1.AuthService`...): they get
    /// a health status and are advertised by reflection.
    pub services: Vec<&'static str>,
    /// The auth layer.
    pub auth: AuthLayer,
    /// Origins allowed over grpc-web.
    pub cors_origins: Vec<String>,
    /// How long in-flight calls may drain after the shutdown signal.
    pub shutdown_grace: Duration,
}

/// The future of an [`HttpHandler`].
pub type HttpFuture = Pin<Box<dyn Future<Output = http::Response<tonic::body::Body>> + Send>>;

/// Answers plain HTTP `GET` and `HEAD` requests (a web app served next to the gRPC services).
///
/// gRPC and grpc-web calls are always `POST`, so a handler never sees one, and a `GET` never
/// reaches a gRPC service, the auth layer or CORS: it is answered by the handler alone.
pub type HttpHandler = Arc<dyn Fn(http::request::Parts) -> HttpFuture + Send + Sync>;

/// Routes `GET` and `HEAD` to an [`HttpHandler`] when there is one, everything else to the
/// gRPC stack.
#[derive(Clone)]
struct HttpLayer(Option<HttpHandler>);

impl<S> Layer<S> for HttpLayer {
    type Service = HttpRouter<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpRouter {
            inner,
            handler: self.0.clone(),
        }
    }
}

#[derive(Clone)]
struct HttpRouter<S> {
    inner: S,
    handler: Option<HttpHandler>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for HttpRouter<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<StdError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        if let Some(handler) = &self.handler
            && (request.method() == Method::GET || request.method() == Method::HEAD)
        {
            let (parts, _) = request.into_parts();
            let answer = handler(parts);
            return Box::pin(async move { Ok(answer.await) });
        }
        let call = self.inner.call(request);
        Box::pin(async move { call.await.map(|r| r.map(tonic::body::Body::new)) })
    }
}

/// Builds the CORS layer: only the listed origins; preflights are answered before auth runs.
///
/// # Errors
///
/// [`ServeError::Origin`] for an origin that is not a valid header value.
pub fn cors_layer(origins: &[String]) -> Result<CorsLayer, ServeError> {
    let origins = origins
        .iter()
        .map(|o| HeaderValue::from_str(o).map_err(|_| ServeError::Origin(o.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers(ALLOW_HEADERS.map(HeaderName::from_static))
        .expose_headers(EXPOSE_HEADERS.map(HeaderName::from_static))
        .max_age(Duration::from_secs(86_400)))
}

/// Serves `routes` (the service's own gRPC services) on `listener` with health, reflection v1
/// and v1alpha, grpc-web and CORS, and the auth layer, until `shutdown` resolves; then marks
/// every service NOT_SERVING and lets in-flight calls drain for at most the grace period.
///
/// # Errors
///
/// [`ServeError`] when reflection cannot be built or the transport fails.
pub async fn serve(
    listener: TcpListener,
    routes: RoutesBuilder,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_with_http(listener, routes, options, None, shutdown).await
}

/// Like [`serve`], and with `http` set, answers every `GET` and `HEAD` request with it (over
/// HTTP/1.1 or HTTP/2) instead of passing it on: tenant-admin serves the admin console this way.
/// Every other request (gRPC, grpc-web, CORS preflights) takes the same path as in [`serve`].
///
/// # Errors
///
/// [`ServeError`] when reflection cannot be built or the transport fails.
pub async fn serve_with_http(
    listener: TcpListener,
    mut routes: RoutesBuilder,
    options: ServeOptions,
    http: Option<HttpHandler>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", ServingStatus::Serving).await;
    for name in &options.services {
        health
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }

    // `google.rpc` (Status, BadRequest, ...) too: no RPC uses those types, but every
    // INVALID_ARGUMENT carries a BadRequest detail, which grpcurl can only print as fields when
    // reflection describes it.
    let mut v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tenantry_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health");
    let mut v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tenantry_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        .with_service_name("grpc.health.v1.Health");
    for name in &options.services {
        v1 = v1.with_service_name(*name);
        v1alpha = v1alpha.with_service_name(*name);
    }
    routes
        .add_service(health_service)
        .add_service(v1.build_v1()?)
        .add_service(v1alpha.build_v1alpha()?);

    let cors = cors_layer(&options.cors_origins)?;
    let addr = listener.local_addr().ok();
    let name = options.name;
    tracing::info!(service = name, addr = ?addr, "serving");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        shutdown.await;
        let _ = drain_tx.send(());
        let _ = stop_tx.send(());
    });
    let health_on_stop = health.clone();
    let services = options.services.clone();
    let signal = async move {
        let _ = stop_rx.await;
        // Tell load balancers first, then stop accepting.
        health_on_stop
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for s in services {
            health_on_stop
                .set_service_status(s, ServingStatus::NotServing)
                .await;
        }
        tracing::info!(service = name, "shutting down: draining in-flight calls");
    };

    let server = Server::builder()
        .accept_http1(true)
        .trace_fn(
            |req: &http::Request<()>| tracing::info_span!("rpc", rpc.method = %req.uri().path()),
        )
        .layer(HttpLayer(http))
        .layer(cors)
        .layer(GrpcWebLayer::new())
        .layer(options.auth)
        .add_routes(routes.routes())
        .serve_with_incoming_shutdown(
            // TCP_NODELAY: without it, an answer larger than one segment (a page of 50
            // tenants) waits for the client's delayed ACK, 40 ms per call.
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            signal,
        );

    let grace = options.shutdown_grace;
    tokio::select! {
        result = server => result?,
        () = async move {
            if drain_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!(service = name, "drain bound reached: closing remaining calls");
        }
    }
    tracing::info!(service = name, "stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
