use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tonic::Status;
use tower::{Layer, Service};

use crate::caller::Caller;
use crate::client::ACTOR_METADATA_KEY;
use crate::keys::Verifier;
use crate::rules::{OPEN_SERVICES, rule_for};

/// The tower layer that authenticates and authorizes every call before it reaches a handler.
///
/// Order of checks: health and reflection pass; an RPC without a rule is refused
/// (PERMISSION_DENIED); a public RPC passes (with the caller attached when a valid token came
/// along); otherwise a valid bearer token is required (UNAUTHENTICATED) and its roles must
/// satisfy the rule (PERMISSION_DENIED).
#[derive(Debug, Clone)]
pub struct AuthLayer {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    verifier: Verifier,
    signup_enabled: bool,
}

impl AuthLayer {
    /// Builds the layer. `signup_enabled` makes `CreateOrganization` public (self-serve).
    #[must_use]
    pub fn new(verifier: Verifier, signup_enabled: bool) -> Self {
        Self {
            state: Arc::new(State {
                verifier,
                signup_enabled,
            }),
        }
    }

    /// Decides one call: returns the caller to attach, or the status to answer with.
    fn check(&self, path: &str, headers: &http::HeaderMap) -> Result<Option<Caller>, Status> {
        if OPEN_SERVICES.iter().any(|p| path.starts_with(p)) {
            return Ok(None);
        }
        let Some(rule) = rule_for(path) else {
            tracing::warn!(rpc.method = path, "refused: no authorization rule");
            return Err(Status::permission_denied(
                "no authorization rule for this method",
            ));
        };
        let token = bearer(headers);
        if rule.is_public(self.state.signup_enabled) {
            // A public RPC ignores a bad token rather than failing on it; a good one identifies
            // the caller.
            return Ok(token.and_then(|t| self.state.verifier.verify(t).ok()));
        }
        let token = token.ok_or_else(|| Status::unauthenticated("a bearer token is required"))?;
        let mut caller = self.state.verifier.verify(token).map_err(|e| {
            tracing::info!(rpc.method = path, error = %e, "refused token");
            Status::unauthenticated("invalid or expired token")
        })?;
        if !rule.admits(&caller) {
            return Err(Status::permission_denied(
                "the caller's role may not call this method",
            ));
        }
        if caller.is_service() {
            caller.actor = headers
                .get(ACTOR_METADATA_KEY)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty() && v.len() <= 200)
                .map(str::to_owned);
        }
        Ok(Some(caller))
    }
}

fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            layer: self.clone(),
            inner,
        }
    }
}

/// The service produced by [`AuthLayer`].
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    layer: AuthLayer,
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AuthService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Take the service that was driven to readiness; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        match self.layer.check(req.uri().path(), req.headers()) {
            Ok(caller) => {
                if let Some(caller) = caller {
                    req.extensions_mut().insert(caller);
                }
                Box::pin(inner.call(req))
            }
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}
