//! The settings service handler: one module per group of RPCs, sharing [`State`].
//!
//! Every handler validates its input first (INVALID_ARGUMENT naming each bad field, nothing
//! written), then runs one transaction whose scope is the caller's: `Scope::Tenant` for members,
//! `Scope::Platform` for super admins and services. Roles are checked by the auth layer before a
//! handler runs; handlers check tenant ownership and the tenant's status.

mod audit;
mod features;
mod hot;
mod integrations;
mod settings;

use std::sync::Arc;

use diesel_async::AsyncConnection as _;
use tenantry_auth::Caller;
use tenantry_db::{Pool, PooledConn, Scope};
use tenantry_proto::common::v1::{Feature, TenantStatus};
use tenantry_proto::settings::v1 as pb;
use tenantry_runtime::{ApiError, ApiResult};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::cache::{Cache, Snapshot};
use crate::crypto::Sealer;
use crate::tiers;
use crate::view::{self, TenantState};

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct State {
    pub(crate) pool: Pool,
    pub(crate) cache: Arc<Cache>,
    /// Turns true on shutdown (ends the watch streams).
    pub(crate) stop: watch::Receiver<bool>,
    /// Encrypts integration secrets at rest.
    pub(crate) sealer: Arc<Sealer>,
}

impl State {
    async fn conn(&self) -> ApiResult<PooledConn<'_>> {
        Ok(self.pool.get().await?)
    }

    /// The tenant's snapshot, from the cache or loaded (and cached) on a miss.
    pub(crate) async fn snapshot(&self, tenant: Uuid) -> ApiResult<Arc<Snapshot>> {
        if let Some(s) = self.cache.get(tenant) {
            return Ok(s);
        }
        let generation = self.cache.generation();
        let mut conn = self.conn().await?;
        let state = conn
            .transaction(async |conn| -> ApiResult<Option<TenantState>> {
                tenantry_db::set_scope(conn, Scope::Tenant(tenant)).await?;
                Ok(TenantState::load(conn, tenant).await?)
            })
            .await?
            .ok_or(ApiError::NotFound("tenant"))?;
        let snapshot = Arc::new(Snapshot::from_state(&state));
        self.cache.insert(tenant, Arc::clone(&snapshot), generation);
        Ok(snapshot)
    }
}

/// Settings, features, limits and integrations.
pub(crate) struct SettingsApi {
    state: State,
}

impl SettingsApi {
    pub(crate) fn new(state: State) -> Self {
        Self { state }
    }
}

/// Whether the caller acts for the platform (super admin or service).
fn is_platform(caller: &Caller) -> bool {
    caller.is_super_admin() || caller.is_service()
}

/// The transaction scope of a caller acting on `tenant`.
fn scope(caller: &Caller, tenant: Uuid) -> Scope {
    if is_platform(caller) {
        Scope::Platform
    } else {
        Scope::Tenant(tenant)
    }
}

/// The caller of a request and the tenant it targets (see [`Caller::resolve_tenant`]).
fn target<T>(request: &Request<T>, requested: &str) -> Result<(Caller, Uuid), Status> {
    let caller = Caller::of(request)?.clone();
    let tenant = caller.resolve_tenant(requested)?;
    tracing::Span::current().record("tenant.id", tracing::field::display(tenant));
    Ok((caller, tenant))
}

/// FAILED_PRECONDITION for a member of a suspended or cancelled tenant.
fn ensure_usable(caller: &Caller, status: TenantStatus) -> ApiResult<()> {
    if is_platform(caller) || view::is_usable(status) {
        Ok(())
    } else {
        Err(ApiError::FailedPrecondition(format!(
            "the tenant is {}",
            status
                .as_str_name()
                .trim_start_matches("TENANT_STATUS_")
                .to_lowercase()
        )))
    }
}

/// Loads the tenant's state, answering NOT_FOUND when it is not visible and FAILED_PRECONDITION
/// for a member of a suspended or cancelled tenant.
async fn load_usable(
    conn: &mut diesel_async::AsyncPgConnection,
    caller: &Caller,
    tenant: Uuid,
) -> ApiResult<TenantState> {
    let state = TenantState::load(conn, tenant)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    ensure_usable(caller, state.status())?;
    Ok(state)
}

/// A feature argument: its enum value and matrix index, or a violation naming `field`.
fn feature_arg(field: &str, value: i32) -> ApiResult<(Feature, usize)> {
    Feature::try_from(value)
        .ok()
        .and_then(|f| tiers::feature_index(f).map(|i| (f, i)))
        .ok_or_else(|| ApiError::field(field, "must be a feature"))
}

/// The subject of the caller as a user id, when it is one.
fn user_id(caller: &Caller) -> Option<Uuid> {
    Uuid::parse_str(&caller.subject).ok()
}

fn reply<T>(result: ApiResult<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl pb::tenant_settings_service_server::TenantSettingsService for SettingsApi {
    #[tracing::instrument(skip_all, fields(tenant.id))]
    async fn get_settings(
        &self,
        request: Request<pb::GetSettingsRequest>,
    ) -> Result<Response<pb::GetSettingsResponse>, Status> {
        reply(self.get_settings(request).await)
    }

    #[tracing::instrument(skip_all, fields(tenant.id))]
    async fn update_settings(
        &self,
        request: Request<pb::UpdateSettingsRequest>,
    ) -> Result<Response<pb::UpdateSettingsResponse>, Status> {
        reply(self.update_settings(request).await)
    }

    #[tracing::instrument(skip_all, fields(tenant.id))]
    async fn update_custom_settings(
        &self,
        request: Request<pb::UpdateCustomSettingsRequest>,
    ) -> Result<Response<pb::UpdateCustomSettingsResponse>, Status> {
        reply(self.update_custom_settings(request).await)
    }

    #[tracing::instrument(skip_all, fields(tenant.id))]
    async fn get_features(
        &self,
        request: Request<pb::GetFeaturesRequest>,
    ) -> Result<Response<pb::GetFeaturesResponse>, Status> {
        reply(self.get_features(request).await)
    }

    #[tracing::instrument(skip_all, fields(tenant.id))]
    async fn set_feature(
        &self,
        request: Request<pb::SetFeatureRequest>,
    ) -> Result<Response<pb::SetFeatureResponse>, Status> {
        reply(self.set_feature(request).await)
    }

    #[tracing::instrument(skip_all, fields(tenant.id))]
    async fn grant_feature_override(
        &self,
        request: Request<pb::GrantFeatureOverrideRequest>,
    ) -> Result<Response<pb::GrantFeatureOverrideResponse>, Status> {
        reply(self.grant_feature_override(request).await)
    }

    #[tracing::instrument(skip_all, fields(tenant.id))]
    async fn revoke_feature_override(
        &self,
        request: Request<pb::RevokeFeatureOverrideRequest>,
    ) -> Result<Response<pb::RevokeFeatureOverrideResponse>, Status> {
        reply(self.revoke_feature_override(request).await)
    }

    #[tracing::instrument(skip_all, fields(tenant.id))]
    async fn get_limits(
        &self,
        request: Request<pb::GetLimitsRequest>,
    ) -> Result<Response<pb::GetLimitsResponse>, Status> {
        reply(self.get_limits(request).await)
    }

    #[tracing::instrument(skip_all, fields(tenant.id))]
    async fn get_integrations(
        &self,
        request: Request<pb::GetIntegrationsRequest>,
    ) -> Result<Response<pb::GetIntegrationsResponse>, Status> {
        reply(self.get_integrations(request).await)
    }

    #[tracing::instrument(skip_all, fields(tenant.id))]
    async fn update_integration(
        &self,
        request: Request<pb::UpdateIntegrationRequest>,
    ) -> Result<Response<pb::UpdateIntegrationResponse>, Status> {
        reply(self.update_integration(request).await)
    }

    #[tracing::instrument(skip_all, fields(tenant.id))]
    async fn remove_integration(
        &self,
        request: Request<pb::RemoveIntegrationRequest>,
    ) -> Result<Response<pb::RemoveIntegrationResponse>, Status> {
        reply(self.remove_integration(request).await)
    }

    async fn check_features(
        &self,
        request: Request<pb::CheckFeaturesRequest>,
    ) -> Result<Response<pb::CheckFeaturesResponse>, Status> {
        reply(self.check_features(request).await)
    }

    #[tracing::instrument(skip_all, fields(tenant.id))]
    async fn watch_tenant(
        &self,
        request: Request<pb::WatchTenantRequest>,
    ) -> Result<Response<hot::WatchStream>, Status> {
        reply(self.watch_tenant(request).await)
    }

    #[tracing::instrument(skip_all, fields(tenant.id))]
    async fn apply_tier(
        &self,
        request: Request<pb::ApplyTierRequest>,
    ) -> Result<Response<pb::ApplyTierResponse>, Status> {
        reply(self.apply_tier(request).await)
    }

    #[tracing::instrument(skip_all, fields(tenant.id))]
    async fn initialize_defaults(
        &self,
        request: Request<pb::InitializeDefaultsRequest>,
    ) -> Result<Response<pb::InitializeDefaultsResponse>, Status> {
        reply(self.initialize_defaults(request).await)
    }
}
