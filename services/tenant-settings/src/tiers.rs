//! The feature × tier matrix (`reference/seed-analysis.md` §3.1) as data, and the mapping
//! between the database's text values and the proto enums.

use tenantry_proto::common::v1::{Feature, SubscriptionTier, TenantStatus};

/// What a tier does with a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Enabled by default (and available).
    Default,
    /// Available, off by default.
    Available,
    /// Not offered.
    No,
}

use Offer::{Available as A, Default as D, No as N};

/// The five tiers, in the column order of [`MATRIX`].
pub(crate) const TIERS: [SubscriptionTier; 5] = [
    SubscriptionTier::Free,
    SubscriptionTier::Basic,
    SubscriptionTier::Professional,
    SubscriptionTier::Enterprise,
    SubscriptionTier::Education,
];

/// Every feature with its database name and what each tier (columns: free, basic, professional,
/// enterprise, education) does with it, in `Feature` order.
pub(crate) const MATRIX: [(Feature, &str, [Offer; 5]); 15] = [
    (Feature::AiChat, "ai_chat", [D, D, D, D, D]),
    (
        Feature::RobloxIntegration,
        "roblox_integration",
        [N, D, D, D, D],
    ),
    (
        Feature::AdvancedAnalytics,
        "advanced_analytics",
        [N, N, D, D, D],
    ),
    (Feature::CustomBranding, "custom_branding", [N, N, D, D, D]),
    (Feature::Sso, "sso", [N, N, N, D, N]),
    (Feature::ApiAccess, "api_access", [N, N, A, D, A]),
    (Feature::Webhooks, "webhooks", [N, N, A, D, N]),
    (
        Feature::AdvancedSecurity,
        "advanced_security",
        [N, N, N, D, N],
    ),
    (Feature::ParentPortal, "parent_portal", [N, D, D, D, D]),
    (Feature::MobileApp, "mobile_app", [N, N, D, D, D]),
    (Feature::Gamification, "gamification", [D, D, D, D, D]),
    (
        Feature::AssessmentBuilder,
        "assessment_builder",
        [A, A, A, A, A],
    ),
    (
        Feature::ContentVersioning,
        "content_versioning",
        [N, N, A, A, A],
    ),
    (Feature::LiveClasses, "live_classes", [N, N, N, D, D]),
    (
        Feature::VideoConferencing,
        "video_conferencing",
        [N, N, N, A, N],
    ),
];

/// Index of a feature in [`MATRIX`] (and bit of a feature set), or `None` for UNSPECIFIED.
pub(crate) fn feature_index(feature: Feature) -> Option<usize> {
    let n = feature as i32;
    (1..=15).contains(&n).then(|| (n - 1) as usize)
}

/// Index of a feature by database name.
#[cfg(test)]
pub(crate) fn feature_by_name(name: &str) -> Option<usize> {
    MATRIX.iter().position(|(_, n, _)| *n == name)
}

/// Column of a tier in [`MATRIX`], or `None` for UNSPECIFIED.
pub(crate) fn tier_index(tier: SubscriptionTier) -> Option<usize> {
    TIERS.iter().position(|t| *t == tier)
}

/// What `tier` does with the feature at `index`.
pub(crate) fn offer(tier: SubscriptionTier, index: usize) -> Offer {
    match (tier_index(tier), MATRIX.get(index)) {
        (Some(t), Some((_, _, row))) => row[t],
        _ => Offer::No,
    }
}

/// Whether `tier` offers the feature at `index`.
pub(crate) fn offers(tier: SubscriptionTier, index: usize) -> bool {
    offer(tier, index) != Offer::No
}

/// Every tier offering the feature at `index`, as proto values.
pub(crate) fn tiers_offering(index: usize) -> Vec<i32> {
    TIERS
        .iter()
        .filter(|t| offers(**t, index))
        .map(|t| *t as i32)
        .collect()
}

/// The tier of a database value; an unknown value counts as free (as the brief's system did).
pub(crate) fn tier_from_db(value: &str) -> SubscriptionTier {
    match value {
        "basic" => SubscriptionTier::Basic,
        "professional" => SubscriptionTier::Professional,
        "enterprise" => SubscriptionTier::Enterprise,
        "education" => SubscriptionTier::Education,
        _ => SubscriptionTier::Free,
    }
}

/// The lowercase name of a tier, for messages.
pub(crate) fn tier_name(tier: SubscriptionTier) -> &'static str {
    match tier {
        SubscriptionTier::Basic => "basic",
        SubscriptionTier::Professional => "professional",
        SubscriptionTier::Enterprise => "enterprise",
        SubscriptionTier::Education => "education",
        SubscriptionTier::Free | SubscriptionTier::Unspecified => "free",
    }
}

/// The status of a database value.
pub(crate) fn status_from_db(value: &str) -> TenantStatus {
    match value {
        "active" => TenantStatus::Active,
        "suspended" => TenantStatus::Suspended,
        "trial" => TenantStatus::Trial,
        "pending" => TenantStatus::Pending,
        "cancelled" => TenantStatus::Cancelled,
        _ => TenantStatus::Unspecified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_tier_match_the_matrix() {
        // seed-analysis §3.1: enabled by default 2/4/7/12/8, available 3/5/11/15/11.
        let defaults = [2, 4, 7, 12, 8];
        let available = [3, 5, 11, 15, 11];
        for (i, tier) in TIERS.iter().enumerate() {
            let d = (0..15)
                .filter(|f| offer(*tier, *f) == Offer::Default)
                .count();
            let a = (0..15).filter(|f| offers(*tier, *f)).count();
            assert_eq!(d, defaults[i], "defaults of {}", tier_name(*tier));
            assert_eq!(a, available[i], "available of {}", tier_name(*tier));
        }
    }

    #[test]
    fn matrix_is_in_feature_order_with_unique_names() {
        for (i, (feature, name, _)) in MATRIX.iter().enumerate() {
            assert_eq!(feature_index(*feature), Some(i));
            assert_eq!(feature_by_name(name), Some(i));
            assert_eq!(
                feature.as_str_name().trim_start_matches("FEATURE_"),
                name.to_uppercase()
            );
        }
        assert_eq!(feature_index(Feature::Unspecified), None);
    }

    #[test]
    fn education_defaults_are_the_briefs_eight() {
        let names: Vec<&str> = (0..15)
            .filter(|f| offer(SubscriptionTier::Education, *f) == Offer::Default)
            .map(|f| MATRIX[f].1)
            .collect();
        assert_eq!(
            names,
            [
                "ai_chat",
                "roblox_integration",
                "advanced_analytics",
                "custom_branding",
                "parent_portal",
                "mobile_app",
                "gamification",
                "live_classes"
            ]
        );
    }
}
