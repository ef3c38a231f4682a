//! grpc-web and CORS as a browser speaks them: raw HTTP/1.1 (hyper), not a gRPC client.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::HashMap;
use std::net::SocketAddr;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use prost::Message as _;
use tenantry_testing::{Suite, super_admin_token};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const ORIGIN: &str = "https://console.example.test";
const GET_TENANT: &str = "/tenantry.admin.v1.TenantAdminService/GetTenant";

/// An HTTP/1.1 answer, body read to the end.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// Sends one request over a fresh HTTP/1.1 connection to `addr`.
async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    drop(sender);
    conn.abort();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// A grpc-web frame: 1 flag byte, u32 big-endian length, payload.
fn frame(flag: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(flag);
    b.put_u32(u32::try_from(payload.len()).unwrap());
    b.put_slice(payload);
    b.freeze()
}

/// A grpc-web POST of `message` to `path`, with extra headers.
fn grpc_web_request(
    addr: SocketAddr,
    path: &str,
    message: &impl prost::Message,
    extra: &[(&str, String)],
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("accept", "application/grpc-web+proto");
    for (k, v) in extra {
        b = b.header(*k, v);
    }
    b.body(Full::new(frame(0, &message.encode_to_vec())))
        .unwrap()
}

/// The frames of a grpc-web body: (flag, payload). Panics on a truncated frame.
fn frames(body: &Bytes) -> Vec<(u8, Bytes)> {
    let mut rest = body.clone();
    let mut out = Vec::new();
    while rest.has_remaining() {
        assert!(rest.len() >= 5, "truncated frame header in {body:?}");
        let flag = rest.get_u8();
        let len = usize::try_from(rest.get_u32()).unwrap();
        assert!(rest.len() >= len, "truncated frame in {body:?}");
        out.push((flag, rest.split_to(len)));
    }
    out
}

/// The `name:value` lines of a trailer frame, names lower-cased.
fn trailers(payload: &[u8]) -> HashMap<String, String> {
    String::from_utf8(payload.to_vec())
        .unwrap()
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad trailer line {l:?}"));
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect()
}

/// The grpc-status of an answer: from the headers (trailers-only answer) or the trailer frame.
fn grpc_status(a: &Answer) -> Option<String> {
    if let Some(s) = a.header("grpc-status") {
        return Some(s.to_owned());
    }
    frames(&a.body)
        .iter()
        .filter(|(flag, _)| flag & 0x80 != 0)
        .find_map(|(_, p)| trailers(p).get("grpc-status").cloned())
}

/// Splits a comma-separated header into lower-cased items.
fn items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn get_tenant() -> tenantry_proto::admin::v1::GetTenantRequest {
    tenantry_proto::admin::v1::GetTenantRequest {
        tenant_id: uuid::Uuid::new_v4().to_string(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn health_check_over_grpc_web() {
    let suite = Suite::start().await;
    for addr in [
        suite.admin.addr,
        suite.settings.addr,
        suite.provisioning.addr,
    ] {
        let a = send(
            addr,
            grpc_web_request(
                addr,
                "/grpc.health.v1.Health/Check",
                &HealthCheckRequest {
                    service: String::new(),
                },
                &[],
            ),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
        let ct = a.header("content-type").unwrap_or_default();
        assert!(ct.starts_with("application/grpc-web"), "content-type {ct}");
        let frames = frames(&a.body);
        assert_eq!(
            frames.len(),
            2,
            "expected a data and a trailer frame: {frames:?}"
        );
        let (flag, data) = &frames[0];
        assert_eq!(*flag, 0, "first frame is not an uncompressed data frame");
        let response = HealthCheckResponse::decode(data.clone()).unwrap();
        assert_eq!(response.status(), ServingStatus::Serving);
        let (flag, trailer) = &frames[1];
        assert_eq!(*flag, 0x80, "second frame is not a trailer frame");
        let t = trailers(trailer);
        assert_eq!(t.get("grpc-status").map(String::as_str), Some("0"), "{t:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rpc_without_token_is_unauthenticated() {
    let suite = Suite::start().await;
    let addr = suite.admin.addr;
    let a = send(addr, grpc_web_request(addr, GET_TENANT, &get_tenant(), &[])).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(grpc_status(&a).as_deref(), Some("16"), "{a:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rpc_with_super_admin_token_passes_auth() {
    let suite = Suite::start().await;
    let addr = suite.admin.addr;
    let auth = format!("Bearer {}", super_admin_token());
    let a = send(
        addr,
        grpc_web_request(addr, GET_TENANT, &get_tenant(), &[("authorization", auth)]),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let status = grpc_status(&a).unwrap_or_else(|| panic!("no grpc-status in {a:?}"));
    assert_ne!(status, "16", "a super admin was unauthenticated: {a:?}");
    assert_ne!(status, "7", "a super admin was refused: {a:?}");
}

fn preflight(addr: SocketAddr, origin: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri(GET_TENANT)
        .header("host", addr.to_string())
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-grpc-web,x-user-agent,grpc-timeout",
        )
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_allows_the_configured_origin() {
    let suite = Suite::start().await;
    let addr = suite.admin.addr;
    let a = send(addr, preflight(addr, ORIGIN)).await;
    assert!(a.status.is_success(), "{a:?}");
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some(ORIGIN),
        "{a:?}"
    );
    let allowed = items(a.header("access-control-allow-headers").unwrap_or_default());
    for h in [
        "authorization",
        "x-grpc-web",
        "content-type",
        "x-user-agent",
        "grpc-timeout",
    ] {
        assert!(
            allowed.iter().any(|a| a == h),
            "{h} not allowed: {allowed:?}"
        );
    }
    let methods = items(a.header("access-control-allow-methods").unwrap_or_default());
    assert!(methods.iter().any(|m| m == "post"), "{methods:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_exposes_grpc_headers_to_the_configured_origin() {
    let suite = Suite::start().await;
    let addr = suite.admin.addr;
    let a = send(
        addr,
        grpc_web_request(
            addr,
            "/grpc.health.v1.Health/Check",
            &HealthCheckRequest {
                service: String::new(),
            },
            &[("origin", ORIGIN.to_owned())],
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(
        a.header("access-control-allow-origin"),
        Some(ORIGIN),
        "{a:?}"
    );
    let exposed = items(
        a.header("access-control-expose-headers")
            .unwrap_or_default(),
    );
    for h in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        assert!(
            exposed.iter().any(|e| e == h),
            "{h} not exposed: {exposed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_preflight_from_another_origin_is_not_allowed() {
    let suite = Suite::start().await;
    let addr = suite.admin.addr;
    let a = send(addr, preflight(addr, "https://evil.example")).await;
    assert!(
        a.header("access-control-allow-origin").is_none(),
        "another origin was allowed: {a:?}"
    );
    // The same preflight from the configured origin is allowed: the refusal is about the origin.
    let ok = send(addr, preflight(addr, ORIGIN)).await;
    assert_eq!(ok.header("access-control-allow-origin"), Some(ORIGIN));
}
