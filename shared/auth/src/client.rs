use std::sync::{Arc, Mutex};

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::caller::PlatformRole;
use crate::keys::Signer;

/// Metadata key carrying the original caller's subject on inter-service calls, for the audit
/// trail. The receiving side honours it only on `service` tokens.
pub const ACTOR_METADATA_KEY: &str = "x-tenantry-actor";

/// Lifetime of a service token.
const SERVICE_TOKEN_TTL_SECS: i64 = 120;
/// A cached token is replaced when it has less than this left.
const REFRESH_MARGIN_SECS: i64 = 30;

/// A minted `authorization` value and its expiry (seconds since the epoch).
type CachedToken = (MetadataValue<tonic::metadata::Ascii>, i64);

/// A client interceptor that attaches a short-lived `service` token to every outgoing call,
/// minting a new one shortly before the cached one expires.
#[derive(Clone)]
pub struct ServiceTokenInterceptor {
    signer: Signer,
    service_name: String,
    cache: Arc<Mutex<Option<CachedToken>>>,
}

impl std::fmt::Debug for ServiceTokenInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceTokenInterceptor")
            .field("service_name", &self.service_name)
            .finish_non_exhaustive()
    }
}

impl ServiceTokenInterceptor {
    /// Builds an interceptor that signs as `service_name`.
    #[must_use]
    pub fn new(signer: Signer, service_name: impl Into<String>) -> Self {
        Self {
            signer,
            service_name: service_name.into(),
            cache: Arc::new(Mutex::new(None)),
        }
    }

    fn token(&self) -> Result<MetadataValue<tonic::metadata::Ascii>, Status> {
        let now = chrono::Utc::now().timestamp();
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| Status::internal("token cache poisoned"))?;
        if let Some((value, exp)) = cache.as_ref()
            && *exp - now > REFRESH_MARGIN_SECS
        {
            return Ok(value.clone());
        }
        let token = self
            .signer
            .mint(
                &self.service_name,
                Some(PlatformRole::Service),
                None,
                SERVICE_TOKEN_TTL_SECS,
            )
            .map_err(|_| Status::internal("cannot sign a service token"))?;
        let value: MetadataValue<_> = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("cannot encode a service token"))?;
        *cache = Some((value.clone(), now + SERVICE_TOKEN_TTL_SECS));
        Ok(value)
    }
}

impl Interceptor for ServiceTokenInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let token = self.token()?;
        request.metadata_mut().insert("authorization", token);
        Ok(request)
    }
}
