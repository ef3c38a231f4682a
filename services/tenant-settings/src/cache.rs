//! The in-process cache of the hot path (CheckFeatures, WatchTenant) and the Postgres listener
//! that keeps it fresh.
//!
//! - Entries are immutable `Arc<Snapshot>`s in a `RwLock<HashMap>`: a hit takes the read lock,
//!   clones an `Arc` and runs no database statement.
//! - Every committed change of a tenant's configuration, from any replica, fires
//!   `pg_notify('tenantry_tenant_changed', <tenant uuid>)` (triggers in the schema). The listener
//!   holds a dedicated connection (`application_name = tenantry-settings-listener`) that LISTENs
//!   on that channel and drops the tenant's entry, then tells the watch streams.
//! - A load that raced with an invalidation is not cached: every invalidation bumps a
//!   generation, and a load only inserts when the generation it started with is still current.
//! - While the listener is not connected nothing is cached (every read goes to the database).
//!   After a lost connection it reconnects with backoff, LISTENs again and then flushes the whole
//!   cache, since notifications sent in between were lost; watch streams resynchronise.
//! - Entries also expire after [`MAX_AGE`], a safety net against a silently lost notification.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::StreamExt;
use tenantry_proto::common::v1::{FeatureState, SubscriptionTier, TenantLimits, TenantStatus};
use tenantry_proto::settings::v1 as pb;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::view::{self, TenantState};

/// The notification channel of the schema's triggers.
pub(crate) const CHANNEL: &str = "tenantry_tenant_changed";
/// `application_name` of the listener's connection (operators can find and kill it).
pub const LISTENER_APPLICATION_NAME: &str = "tenantry-settings-listener";
/// Longest time an entry is served without a reload.
const MAX_AGE: Duration = Duration::from_secs(300);
/// How often the idle listener connection is checked.
const PING_EVERY: Duration = Duration::from_secs(15);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Everything the hot path answers about one tenant, computed once per change.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) tenant_id: String,
    pub(crate) tier: SubscriptionTier,
    pub(crate) status: TenantStatus,
    /// Members may use the tenant (not suspended or cancelled).
    pub(crate) usable: bool,
    pub(crate) limits: TenantLimits,
    /// Every feature's state, in `Feature` order.
    pub(crate) features: Vec<FeatureState>,
    /// Bit `i` set when feature `i + 1` is enabled.
    pub(crate) enabled: u16,
    pub(crate) settings: pb::TenantSettings,
    pub(crate) version: i64,
    loaded_at: Instant,
}

impl Snapshot {
    pub(crate) fn from_state(state: &TenantState) -> Self {
        let features = state.feature_states();
        let enabled = features
            .iter()
            .enumerate()
            .filter(|(_, f)| f.enabled)
            .fold(0u16, |acc, (i, _)| acc | (1 << i));
        let status = state.status();
        Self {
            tenant_id: state.tenant.id.to_string(),
            tier: state.tier(),
            status,
            usable: view::is_usable(status),
            limits: view::limits(&state.tenant),
            settings: state.settings_message(&features),
            features,
            enabled,
            version: state.version(),
            loaded_at: Instant::now(),
        }
    }

    /// Whether the feature at `index` is enabled and usable now.
    pub(crate) fn check(&self, index: usize) -> bool {
        self.usable && self.enabled & (1 << index) != 0
    }

    /// The aspects that differ from `older` (empty when nothing a client sees changed).
    pub(crate) fn changes_since(&self, older: &Self) -> Vec<i32> {
        let mut aspects = Vec::new();
        if self.features != older.features {
            aspects.push(pb::TenantAspect::Features as i32);
        }
        let strip = |s: &pb::TenantSettings| pb::TenantSettings {
            version: 0,
            updated_at: None,
            enabled_features: Vec::new(),
            ..s.clone()
        };
        if strip(&self.settings) != strip(&older.settings) {
            aspects.push(pb::TenantAspect::Settings as i32);
        }
        if self.status != older.status {
            aspects.push(pb::TenantAspect::Status as i32);
        }
        if self.limits != older.limits {
            aspects.push(pb::TenantAspect::Limits as i32);
        }
        if self.tier != older.tier {
            aspects.push(pb::TenantAspect::Tier as i32);
        }
        aspects
    }
}

/// A change the listener saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// One tenant changed.
    Changed(Uuid),
    /// The cache was flushed after a reconnection: every tenant may have changed.
    Resync,
}

/// The cache shared by every handler of one process.
#[derive(Debug)]
pub(crate) struct Cache {
    entries: RwLock<HashMap<Uuid, Arc<Snapshot>>>,
    generation: AtomicU64,
    live: AtomicBool,
    events: broadcast::Sender<Event>,
}

impl Cache {
    pub(crate) fn new() -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            live: AtomicBool::new(false),
            events: broadcast::channel(1024).0,
        }
    }

    /// A fresh cached snapshot, if any.
    pub(crate) fn get(&self, tenant: Uuid) -> Option<Arc<Snapshot>> {
        let entries = self.entries.read().ok()?;
        let snapshot = entries.get(&tenant)?;
        (snapshot.loaded_at.elapsed() < MAX_AGE).then(|| Arc::clone(snapshot))
    }

    /// The current generation; pass it to [`Cache::insert`] after loading.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Caches a snapshot loaded at `generation`, unless an invalidation happened since or the
    /// listener is down.
    pub(crate) fn insert(&self, tenant: Uuid, snapshot: Arc<Snapshot>, generation: u64) {
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut entries) = self.entries.write()
            && self.generation.load(Ordering::Acquire) == generation
        {
            entries.insert(tenant, snapshot);
        }
    }

    /// Drops a tenant's entry and tells the watch streams.
    pub(crate) fn invalidate(&self, tenant: Uuid) {
        if let Ok(mut entries) = self.entries.write() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            entries.remove(&tenant);
        }
        let _ = self.events.send(Event::Changed(tenant));
    }

    /// Drops every entry. `live` says whether the listener is now connected; on reconnection
    /// the watch streams are told to resynchronise.
    pub(crate) fn flush(&self, live: bool) {
        if let Ok(mut entries) = self.entries.write() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.live.store(live, Ordering::Release);
            entries.clear();
        }
        if live {
            let _ = self.events.send(Event::Resync);
        }
    }

    /// Subscribes to changes.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }
}

/// Why one listening session ended.
enum Ended {
    Stopped,
    Lost(String),
}

/// Runs the listener until `stop` turns true (or its sender is dropped).
pub(crate) async fn run_listener(url: String, cache: Arc<Cache>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        if *stop.borrow() {
            break;
        }
        match listen(&url, &cache, &mut stop, &mut backoff).await {
            Ended::Stopped => break,
            Ended::Lost(error) => {
                cache.flush(false);
                tracing::warn!(error = %error, "settings cache listener lost its connection; reconnecting");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    cache.flush(false);
    tracing::debug!("settings cache listener stopped");
}

async fn listen(
    url: &str,
    cache: &Cache,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
) -> Ended {
    use diesel_async::RunQueryDsl as _;
    let mut conn = match AsyncPgConnection::establish(url).await {
        Ok(c) => c,
        Err(e) => return Ended::Lost(e.to_string()),
    };
    let setup = [
        format!("SET application_name = '{LISTENER_APPLICATION_NAME}'"),
        format!("LISTEN {CHANNEL}"),
    ];
    for sql in setup {
        if let Err(e) = diesel::sql_query(sql).execute(&mut conn).await {
            return Ended::Lost(e.to_string());
        }
    }
    // Listening now: whatever was cached before may have missed changes.
    cache.flush(true);
    *backoff = Duration::from_millis(50);
    tracing::debug!("settings cache listener connected");
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        let next = {
            let notifications = conn.notifications_stream();
            tokio::pin!(notifications);
            tokio::select! {
                n = notifications.next() => Some(n),
                _ = ping.tick() => None,
                _ = stop.changed() => return Ended::Stopped,
            }
        };
        match next {
            Some(Some(Ok(n))) => match n.payload.parse::<Uuid>() {
                Ok(tenant) => cache.invalidate(tenant),
                Err(_) => tracing::warn!(payload = %n.payload, "unexpected notification payload"),
            },
            Some(Some(Err(e))) => return Ended::Lost(e.to_string()),
            Some(None) => return Ended::Lost("notification stream ended".into()),
            None => {
                let ping = diesel::sql_query("SELECT 1").execute(&mut conn);
                match tokio::time::timeout(Duration::from_secs(5), ping).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Ended::Lost(e.to_string()),
                    Err(_) => return Ended::Lost("ping timed out".into()),
                }
            }
        }
    }
}
