//! The admin API's JSON request bodies, read and checked outside a request: what the fuzz target
//! `admin_json` (fuzz/) drives, through the same decoding and the same checks as the handlers.

use super::ApiError;
use super::extract::json_from_bytes;
use super::kv::{PutValue, check_put_value};
use super::operator::{NewTenant, TenantChange, checked_caps_change, checked_new_tenant};
use super::tenant::{Activate, AuthBody, FlowBody, SecretBody, check_flow_body};
use crate::store::TenantCaps;

/// Which handler's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminBody {
    /// `POST /v1/tenants`
    NewTenant,
    /// `PATCH /v1/tenants/{tenant}`
    TenantChange,
    /// `PUT /v1/flows/{flow}`
    Flow,
    /// `POST /v1/flows/{flow}/activate`
    Activate,
    /// `POST /v1/flows/{flow}/auth`
    Auth,
    /// `PUT /v1/kv/{store}/keys/{key}`
    KvValue,
    /// `PUT /v1/flows/{flow}/secrets/{key}`
    Secret,
}

impl AdminBody {
    /// Every body the admin API reads.
    pub const ALL: [AdminBody; 7] = [
        AdminBody::NewTenant,
        AdminBody::TenantChange,
        AdminBody::Flow,
        AdminBody::Activate,
        AdminBody::Auth,
        AdminBody::KvValue,
        AdminBody::Secret,
    ];
}

/// Reads `bytes` as the handler for `kind` reads its body (axum's JSON reader, unknown fields
/// refused), then checks it as that handler does before it reaches the store (a tenant change
/// against the default caps).
///
/// # Errors
/// The problem the handler would answer: 400 for a body it cannot read or a bad name, 422 for a
/// value out of range.
pub fn check_admin_body(kind: AdminBody, bytes: &[u8]) -> Result<(), ApiError> {
    match kind {
        AdminBody::NewTenant => checked_new_tenant(json_from_bytes::<NewTenant>(bytes)?).map(drop),
        AdminBody::TenantChange => {
            let change = json_from_bytes::<TenantChange>(bytes)?;
            checked_caps_change(&change, TenantCaps::default()).map(drop)
        }
        AdminBody::Flow => check_flow_body(&json_from_bytes::<FlowBody>(bytes)?),
        AdminBody::Activate => json_from_bytes::<Activate>(bytes).map(drop),
        AdminBody::Auth => json_from_bytes::<AuthBody>(bytes).map(drop),
        AdminBody::KvValue => check_put_value(&json_from_bytes::<PutValue>(bytes)?),
        AdminBody::Secret => json_from_bytes::<SecretBody>(bytes).map(drop),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{AdminBody, check_admin_body};
    use crate::api::ApiError;

    /// The inputs kept for the fuzz target (`fuzz/seeds/admin_json`), read as it reads them: the
    /// first byte picks the body.
    fn seeds() -> Vec<(String, AdminBody, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/admin_json");
        let mut seeds: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.expect("entry").path();
                let bytes = std::fs::read(&path).expect("seed");
                let (&which, body) = bytes.split_first().expect("a seed is not empty");
                let kind = AdminBody::ALL[usize::from(which) % AdminBody::ALL.len()];
                (path.display().to_string(), kind, body.to_vec())
            })
            .collect();
        seeds.sort_by(|a, b| a.0.cmp(&b.0));
        seeds
    }

    #[test]
    fn every_seed_of_the_fuzz_target_is_a_body_the_api_accepts() {
        let seeds = seeds();
        assert_eq!(seeds.len(), AdminBody::ALL.len(), "one seed per body");
        for (name, kind, body) in seeds {
            if let Err(e) = check_admin_body(kind, &body) {
                panic!("{name} ({kind:?}): {e:?}");
            }
        }
    }

    #[test]
    fn a_body_the_handler_would_refuse_is_refused_with_the_same_status() {
        let bad = |kind, body: &str| check_admin_body(kind, body.as_bytes()).unwrap_err();
        assert!(matches!(
            bad(AdminBody::NewTenant, r#"{"name":"acme","x":1}"#),
            ApiError::BadRequest(_)
        ));
        assert!(matches!(
            bad(AdminBody::NewTenant, r#"{"name":"no spaces"}"#),
            ApiError::BadRequest(_)
        ));
        assert!(matches!(
            bad(AdminBody::TenantChange, r#"{"caps":{"max_flows":0}}"#),
            ApiError::Unprocessable(_)
        ));
        assert!(matches!(
            bad(AdminBody::Flow, r#"{"plugin":"p","limits":{"fuel":0}}"#),
            ApiError::Unprocessable(_)
        ));
        assert!(matches!(
            bad(AdminBody::Activate, "{"),
            ApiError::BadRequest(_)
        ));
        // serde's derived structs read arrays too; the API reads objects only.
        assert!(matches!(
            bad(AdminBody::NewTenant, r#"["acme", null]"#),
            ApiError::BadRequest(_)
        ));
        assert!(matches!(
            bad(AdminBody::Activate, "[1]"),
            ApiError::BadRequest(_)
        ));
    }
}
