//! The authorization matrix, through real gRPC: every RPC of the descriptor set has a rule, no
//! rule is orphaned, and every RPC refuses a missing token (UNAUTHENTICATED) and a wrong role
//! (PERMISSION_DENIED) while letting an admitted caller through to its handler. Health and
//! reflection answer without a token on every port.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::collections::BTreeSet;

use http::uri::PathAndQuery;
use prost::Message as _;
use tenantry_auth::{Caller, OrgRole, Rule, Verifier, rule_for, rules};
use tenantry_testing::{
    Suite, auth_config, common_config, member_token, roleless_token, service_token,
    super_admin_token,
};
use tonic::transport::Channel;
use tonic::{Code, Request};
use uuid::Uuid;

/// How many RPCs the Tenantry protos declare.
const RPC_COUNT: usize = 62;

/// One RPC of the descriptor set.
#[derive(Debug, Clone)]
struct Rpc {
    package: String,
    path: String,
    client_streaming: bool,
    server_streaming: bool,
}

/// Every method of every service whose package starts with `tenantry.`.
fn descriptor_rpcs() -> Vec<Rpc> {
    let set = prost_types::FileDescriptorSet::decode(tenantry_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut rpcs = Vec::new();
    for file in &set.file {
        let package = file.package();
        if !package.starts_with("tenantry.") {
            continue;
        }
        for service in &file.service {
            for method in &service.method {
                rpcs.push(Rpc {
                    package: package.to_owned(),
                    path: format!("/{package}.{}/{}", service.name(), method.name()),
                    client_streaming: method.client_streaming(),
                    server_streaming: method.server_streaming(),
                });
            }
        }
    }
    rpcs
}

#[test]
fn every_rpc_has_a_rule_and_no_rule_is_orphaned() {
    let rpcs = descriptor_rpcs();
    let paths: BTreeSet<&str> = rpcs.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths.len(),
        rpcs.len(),
        "duplicate RPC paths in the descriptor set"
    );

    let missing: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|p| rule_for(p).is_none())
        .collect();
    for p in &missing {
        println!("RPC without an authorization rule: {p}");
    }
    assert!(missing.is_empty(), "RPCs without a rule: {missing:#?}");

    let table = rules::all_paths();
    let orphans: Vec<&String> = table
        .iter()
        .filter(|p| !paths.contains(p.as_str()))
        .collect();
    for p in &orphans {
        println!("rule for an RPC that does not exist: {p}");
    }
    assert!(orphans.is_empty(), "orphan rules: {orphans:#?}");

    let unique: BTreeSet<&String> = table.iter().collect();
    assert_eq!(unique.len(), table.len(), "duplicate rules in the table");
    assert_eq!(rpcs.len(), RPC_COUNT, "number of RPCs");
    assert_eq!(table.len(), RPC_COUNT, "number of rules");
}

#[test]
fn rule_for_rejects_malformed_and_unknown_paths() {
    for path in [
        "",
        "/",
        "tenantry.admin.v1.AuthService/Login",
        "/tenantry.admin.v1.AuthService",
        "/tenantry.admin.v1.AuthService/",
        "/tenantry.admin.v1.AuthService/Login/extra",
        "/tenantry.admin.v1.AuthService/login",
        "/tenantry.admin.v2.AuthService/Login",
        "/admin.v1.AuthService/Login",
        "/x.tenantry.admin.v1.AuthService/Login",
        "/tenantry.settings.v1.AuthService/Login",
        "/tenantry.admin.v1.TenantAdminService/NoSuchMethod",
    ] {
        assert_eq!(rule_for(path), None, "{path:?} must have no rule");
    }
    assert_eq!(
        rule_for("/tenantry.admin.v1.AuthService/Login"),
        Some(Rule::PUBLIC)
    );
}

/// The three servers' channels, by package.
struct Channels {
    admin: Channel,
    settings: Channel,
    provisioning: Channel,
}

impl Channels {
    async fn of(suite: &Suite) -> Self {
        Self {
            admin: suite.admin.channel().await,
            settings: suite.settings.channel().await,
            provisioning: suite.provisioning.channel().await,
        }
    }

    fn for_package(&self, package: &str) -> &Channel {
        match package {
            "tenantry.admin.v1" => &self.admin,
            "tenantry.settings.v1" => &self.settings,
            "tenantry.provisioning.v1" => &self.provisioning,
            other => panic!("no server serves package {other}"),
        }
    }
}

/// Calls `path` with an empty message and returns the status code (OK when the call, or the
/// opening of a response stream, succeeded).
async fn call(
    channel: &Channel,
    path: &str,
    client_streaming: bool,
    server_streaming: bool,
    token: Option<&str>,
) -> Code {
    fn with_token<T>(message: T, token: Option<&str>) -> Request<T> {
        match token {
            Some(t) => tenantry_testing::authed(message, t),
            None => Request::new(message),
        }
    }
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let path = PathAndQuery::try_from(path.to_owned()).unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    let result = if client_streaming {
        let request = with_token(futures::stream::iter([()]), token);
        grpc.streaming(request, path, codec).await.map(|_| ())
    } else if server_streaming {
        grpc.server_streaming(with_token((), token), path, codec)
            .await
            .map(|_| ())
    } else {
        grpc.unary(with_token((), token), path, codec)
            .await
            .map(|_| ())
    };
    match result {
        Ok(()) => Code::Ok,
        Err(status) => status.code(),
    }
}

/// A token and the caller it verifies to.
struct Candidate {
    label: &'static str,
    token: String,
    caller: Caller,
}

/// The candidate tokens, lowest privilege first.
fn candidates() -> Vec<Candidate> {
    let verifier = Verifier::new(&auth_config()).unwrap();
    let tenant = Uuid::new_v4();
    let tokens = [
        ("roleless", roleless_token()),
        ("member", member_token(tenant, OrgRole::Member)),
        ("teacher", member_token(tenant, OrgRole::Teacher)),
        ("manager", member_token(tenant, OrgRole::Manager)),
        ("org admin", member_token(tenant, OrgRole::Admin)),
        ("service", service_token()),
        ("super admin", super_admin_token()),
    ];
    tokens
        .into_iter()
        .map(|(label, token)| {
            let caller = verifier.verify(&token).unwrap();
            Candidate {
                label,
                token,
                caller,
            }
        })
        .collect()
}

fn is_auth_refusal(code: Code) -> bool {
    matches!(code, Code::Unauthenticated | Code::PermissionDenied)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_enforces_its_rule_over_grpc() {
    let suite = Suite::start().await;
    let signup_enabled = common_config(&suite.db).self_serve_signup;
    assert!(!signup_enabled, "the test configuration disables signup");
    let channels = Channels::of(&suite).await;
    let candidates = candidates();
    let rpcs = descriptor_rpcs();
    assert_eq!(rpcs.len(), RPC_COUNT);

    let mut failures = Vec::new();
    let mut checked_wrong_role = 0;
    let mut checked_admitted = 0;
    for rpc in &rpcs {
        let rule = rule_for(&rpc.path).unwrap();
        let channel = channels.for_package(&rpc.package);
        let call_with = async |token: Option<&str>| {
            call(
                channel,
                &rpc.path,
                rpc.client_streaming,
                rpc.server_streaming,
                token,
            )
            .await
        };

        // (a) no token.
        let code = call_with(None).await;
        if rule.is_public(signup_enabled) {
            if is_auth_refusal(code) {
                failures.push(format!("{}: public, no token answered {code:?}", rpc.path));
            }
        } else if code != Code::Unauthenticated {
            failures.push(format!(
                "{}: no token answered {code:?}, expected Unauthenticated",
                rpc.path
            ));
        }

        // (b) a token of a role the rule does not admit.
        if !rule.public {
            match candidates.iter().find(|c| !rule.admits(&c.caller)) {
                Some(wrong) => {
                    checked_wrong_role += 1;
                    let code = call_with(Some(&wrong.token)).await;
                    if code != Code::PermissionDenied {
                        failures.push(format!(
                            "{}: {} token answered {code:?}, expected PermissionDenied",
                            rpc.path, wrong.label
                        ));
                    }
                }
                None => failures.push(format!("{}: every candidate is admitted", rpc.path)),
            }
        }

        // (c) a token the rule admits (any token for a public rule).
        let admitted = if rule.is_public(signup_enabled) {
            candidates.first()
        } else {
            candidates.iter().find(|c| rule.admits(&c.caller))
        };
        match admitted {
            Some(ok) => {
                checked_admitted += 1;
                let code = call_with(Some(&ok.token)).await;
                if is_auth_refusal(code) {
                    failures.push(format!(
                        "{}: admitted {} token answered {code:?}",
                        rpc.path, ok.label
                    ));
                }
            }
            None => failures.push(format!("{}: no candidate is admitted", rpc.path)),
        }
    }
    for f in &failures {
        println!("{f}");
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    assert_eq!(checked_admitted, RPC_COUNT);
    let public = rpcs
        .iter()
        .filter(|r| rule_for(&r.path).unwrap().public)
        .count();
    assert!(public > 0, "some RPCs are public (Login...)");
    assert_eq!(checked_wrong_role, RPC_COUNT - public);
}

#[tokio::test(flavor = "multi_thread")]
async fn signup_rpc_needs_a_super_admin_while_signup_is_disabled() {
    let suite = Suite::start().await;
    let channel = suite.admin.channel().await;
    let path = "/tenantry.admin.v1.OrganizationService/CreateOrganization";
    assert_eq!(rule_for(path), Some(Rule::SIGNUP));
    let tenant = Uuid::new_v4();
    assert_eq!(
        call(&channel, path, false, false, None).await,
        Code::Unauthenticated
    );
    for token in [
        roleless_token(),
        member_token(tenant, OrgRole::Admin),
        service_token(),
    ] {
        assert_eq!(
            call(&channel, path, false, false, Some(&token)).await,
            Code::PermissionDenied
        );
    }
    let code = call(&channel, path, false, false, Some(&super_admin_token())).await;
    assert!(!is_auth_refusal(code), "super admin got {code:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_methods_are_never_ok() {
    let suite = Suite::start().await;
    let cases = [
        (
            suite.admin.channel().await,
            "/tenantry.admin.v1.TenantAdminService/NoSuchMethod",
        ),
        (
            suite.admin.channel().await,
            "/tenantry.admin.v1.NoSuchService/GetTenant",
        ),
        (
            suite.settings.channel().await,
            "/tenantry.settings.v1.TenantSettingsService/NoSuchMethod",
        ),
        (
            suite.provisioning.channel().await,
            "/tenantry.provisioning.v1.ProvisioningService/NoSuchMethod",
        ),
    ];
    let tokens = [None, Some(super_admin_token()), Some(service_token())];
    for (channel, path) in &cases {
        for token in &tokens {
            let code = call(channel, path, false, false, token.as_deref()).await;
            assert!(
                matches!(code, Code::Unimplemented | Code::PermissionDenied),
                "{path} with token {}: {code:?}",
                token.is_some()
            );
        }
    }

    // A real RPC on the wrong port: authorized by the table, but no route serves it.
    let settings = suite.settings.channel().await;
    let path = "/tenantry.admin.v1.TenantAdminService/GetTenant";
    assert_eq!(
        call(&settings, path, false, false, None).await,
        Code::Unauthenticated
    );
    assert_eq!(
        call(&settings, path, false, false, Some(&super_admin_token())).await,
        Code::Unimplemented
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_answers_serving_without_a_token_on_every_port() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let suite = Suite::start().await;
    let ports: [(&tenantry_testing::TestServer, &[&str]); 3] = [
        (&suite.admin, &tenant_admin::SERVICES),
        (&suite.settings, &tenant_settings::SERVICES),
        (&suite.provisioning, &provisioning::SERVICES),
    ];
    for (server, services) in ports {
        let mut client = HealthClient::new(server.channel().await);
        for name in std::iter::once(&"").chain(services.iter()) {
            let response = client
                .check(HealthCheckRequest {
                    service: (*name).to_owned(),
                })
                .await
                .unwrap_or_else(|s| panic!("health of {name:?} on {}: {s:?}", server.addr));
            assert_eq!(
                response.into_inner().status,
                ServingStatus::Serving as i32,
                "{name:?} on {}",
                server.addr
            );
        }
        // A service the port does not serve is unknown to its health service.
        let unknown = client
            .check(HealthCheckRequest {
                service: "tenantry.nosuch.v1.NoSuchService".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
    }
}

/// The services a reflection v1 endpoint lists, sorted.
async fn reflection_v1_services(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response: ServerReflectionResponse = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

/// The services a reflection v1alpha endpoint lists, sorted.
async fn reflection_v1alpha_services(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::{ServerReflectionRequest, ServerReflectionResponse};

    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response: ServerReflectionResponse = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn reflection_lists_exactly_each_ports_services_without_a_token() {
    let suite = Suite::start().await;
    let ports: [(&tenantry_testing::TestServer, &[&str]); 3] = [
        (&suite.admin, &tenant_admin::SERVICES),
        (&suite.settings, &tenant_settings::SERVICES),
        (&suite.provisioning, &provisioning::SERVICES),
    ];
    for (server, services) in ports {
        let mut expected: Vec<String> = services.iter().map(|s| (*s).to_owned()).collect();
        expected.push("grpc.health.v1.Health".to_owned());
        expected.sort();
        assert_eq!(
            reflection_v1_services(server.channel().await).await,
            expected,
            "reflection v1 on {}",
            server.addr
        );
        assert_eq!(
            reflection_v1alpha_services(server.channel().await).await,
            expected,
            "reflection v1alpha on {}",
            server.addr
        );
    }
}
