//! The hot path: CheckFeatures and WatchTenant, both answered from the cache (no database
//! statement on a hit).

use std::sync::Arc;

use tenantry_proto::settings::v1 as pb;
use tenantry_runtime::{ApiError, ApiResult, Violations};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Status};
use uuid::Uuid;

use super::{SettingsApi, State, feature_arg, target};
use crate::cache::{Event, Snapshot};
use crate::tiers::MATRIX;

/// The stream of a WatchTenant call.
pub(crate) type WatchStream = std::pin::Pin<
    Box<dyn tokio_stream::Stream<Item = Result<pb::WatchTenantResponse, Status>> + Send>,
>;

fn watch_message(s: &Snapshot, kind: pb::watch_tenant_response::Kind) -> pb::WatchTenantResponse {
    pb::WatchTenantResponse {
        kind: Some(kind),
        version: s.version,
        features: s.features.clone(),
        settings: Some(s.settings.clone()),
        status: s.status as i32,
        limits: Some(s.limits),
        subscription_tier: s.tier as i32,
    }
}

impl SettingsApi {
    pub(super) async fn check_features(
        &self,
        request: Request<pb::CheckFeaturesRequest>,
    ) -> ApiResult<pb::CheckFeaturesResponse> {
        let (_, tenant) = target(&request, &request.get_ref().tenant_id)?;
        let wanted = &request.get_ref().features;
        let mut v = Violations::new();
        let mut indexes = Vec::with_capacity(wanted.len());
        for (i, f) in wanted.iter().enumerate() {
            match feature_arg("features", *f) {
                Ok((_, index)) => indexes.push(index),
                Err(_) => v.add(&format!("features[{i}]"), "must be a feature"),
            }
        }
        v.finish()?;
        let snapshot = self.state.snapshot(tenant).await?;
        let check = |index: usize| pb::FeatureCheck {
            feature: MATRIX[index].0 as i32,
            enabled: snapshot.check(index),
        };
        let features = if indexes.is_empty() {
            (0..MATRIX.len()).map(check).collect()
        } else {
            indexes.into_iter().map(check).collect()
        };
        Ok(pb::CheckFeaturesResponse {
            tenant_id: snapshot.tenant_id.clone(),
            features,
            status: snapshot.status as i32,
            limits: Some(snapshot.limits),
            version: snapshot.version,
            subscription_tier: snapshot.tier as i32,
        })
    }

    pub(super) async fn watch_tenant(
        &self,
        request: Request<pb::WatchTenantRequest>,
    ) -> ApiResult<WatchStream> {
        let (_, tenant) = target(&request, &request.get_ref().tenant_id)?;
        // Subscribe before reading the snapshot, so no change falls in between.
        let events = self.state.cache.subscribe();
        let first = self.state.snapshot(tenant).await?;
        let (tx, rx) = mpsc::channel(16);
        let state = self.state.clone();
        tokio::spawn(async move {
            let snapshot = pb::watch_tenant_response::Kind::Snapshot(pb::WatchTenantSnapshot {});
            if tx.send(Ok(watch_message(&first, snapshot))).await.is_ok() {
                watch_loop(state, tenant, first, events, tx).await;
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }
}

/// Pushes one message per change of `tenant` until the client leaves, the tenant disappears or
/// the server stops.
async fn watch_loop(
    state: State,
    tenant: Uuid,
    mut last: Arc<Snapshot>,
    mut events: broadcast::Receiver<Event>,
    tx: mpsc::Sender<Result<pb::WatchTenantResponse, Status>>,
) {
    let mut stop = state.stop.clone();
    loop {
        let resync = tokio::select! {
            event = events.recv() => match event {
                Ok(Event::Changed(t)) if t == tenant => false,
                Ok(Event::Changed(_)) => continue,
                Ok(Event::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => true,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            () = tx.closed() => return,
            _ = stop.changed() => return,
        };
        let next = match state.snapshot(tenant).await {
            Ok(s) => s,
            Err(ApiError::NotFound(what)) => {
                let _ = tx
                    .send(Err(Status::not_found(format!("{what} not found"))))
                    .await;
                return;
            }
            Err(e) => {
                // A transient failure (database down): the next event retries.
                tracing::warn!(error = %e, "watch: reloading the tenant failed");
                continue;
            }
        };
        let aspects = next.changes_since(&last);
        if aspects.is_empty() {
            last = next;
            continue;
        }
        let kind = if resync {
            pb::watch_tenant_response::Kind::Snapshot(pb::WatchTenantSnapshot {})
        } else {
            pb::watch_tenant_response::Kind::Change(pb::WatchTenantChange { aspects })
        };
        if tx.send(Ok(watch_message(&next, kind))).await.is_err() {
            return;
        }
        last = next;
    }
}
