//! The JSON shapes of users, vhosts, permissions and topic permissions: RabbitMQ's
//! definitions format, which is also what the store keeps for each (so an export is the
//! records as they are). Unknown fields are ignored, as a newer RabbitMQ's export has more.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::{AccessError, Limits, Permission, TopicPermission, User, VhostInfo};
use crate::password::{Algorithm, HashError, PasswordHash};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserRecord {
    pub name: String,
    #[serde(default)]
    pub password_hash: String,
    #[serde(default = "default_algorithm")]
    pub hashing_algorithm: String,
    /// A list, or (older exports) one comma-separated string.
    #[serde(default, deserialize_with = "tags")]
    pub tags: Vec<String>,
    #[serde(default)]
    pub limits: BTreeMap<String, i64>,
}

fn default_algorithm() -> String {
    Algorithm::Sha256.name().to_string()
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("user '{user}': {source}")]
    Hash {
        user: String,
        #[source]
        source: HashError,
    },
    #[error(transparent)]
    Access(#[from] AccessError),
}

impl UserRecord {
    pub fn from_user(u: &User) -> UserRecord {
        UserRecord {
            name: u.name.clone(),
            password_hash: u.hash.to_base64(),
            hashing_algorithm: u.hash.algorithm().name().to_string(),
            tags: u.tags.clone(),
            limits: u.limits.0.clone(),
        }
    }

    pub fn to_user(&self) -> Result<User, RecordError> {
        super::check_name(&self.name)?;
        let hash = PasswordHash::parse(&self.hashing_algorithm, &self.password_hash).map_err(
            |source| RecordError::Hash {
                user: self.name.clone(),
                source,
            },
        )?;
        let mut limits = Limits::default();
        for (k, v) in &self.limits {
            limits.set(super::USER_LIMITS, k, *v)?;
        }
        Ok(User {
            name: self.name.clone(),
            hash,
            tags: self.tags.clone(),
            limits,
        })
    }
}

/// RabbitMQ writes vhost limits as a list of `[name, value]` pairs in `vhosts` (and again
/// as a `vhost-limits` parameter); a map is read too.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct VhostRecord {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub metadata: VhostMetadata,
    #[serde(default, deserialize_with = "limit_pairs")]
    pub limits: Vec<(String, i64)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_queue_type: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct VhostMetadata {
    #[serde(default)]
    pub description: String,
    #[serde(default, deserialize_with = "tags")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_queue_type: Option<String>,
}

impl VhostRecord {
    pub fn from_info(v: &VhostInfo) -> VhostRecord {
        VhostRecord {
            name: v.name.clone(),
            description: None,
            metadata: VhostMetadata {
                description: v.description.clone(),
                tags: v.tags.clone(),
                default_queue_type: v.default_queue_type.clone(),
            },
            limits: v.limits.0.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            default_queue_type: None,
        }
    }

    pub fn to_info(&self) -> Result<VhostInfo, AccessError> {
        super::check_name(&self.name)?;
        let mut limits = Limits::default();
        for (k, v) in &self.limits {
            limits.set(super::VHOST_LIMITS, k, *v)?;
        }
        let m = &self.metadata;
        Ok(VhostInfo {
            name: self.name.clone(),
            description: self
                .description
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| m.description.clone()),
            tags: m.tags.clone(),
            default_queue_type: self
                .default_queue_type
                .clone()
                .or_else(|| m.default_queue_type.clone()),
            limits,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PermissionRecord {
    pub user: String,
    pub vhost: String,
    pub configure: String,
    pub write: String,
    pub read: String,
}

impl PermissionRecord {
    pub fn from_permission(user: &str, vhost: &str, p: &Permission) -> PermissionRecord {
        PermissionRecord {
            user: user.to_string(),
            vhost: vhost.to_string(),
            configure: p.configure.as_str().to_string(),
            write: p.write.as_str().to_string(),
            read: p.read.as_str().to_string(),
        }
    }

    pub fn to_permission(&self) -> Result<Permission, AccessError> {
        Ok(Permission::new(&self.configure, &self.write, &self.read)?)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicPermissionRecord {
    pub user: String,
    pub vhost: String,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

impl TopicPermissionRecord {
    pub fn from_topic(user: &str, vhost: &str, t: &TopicPermission) -> TopicPermissionRecord {
        TopicPermissionRecord {
            user: user.to_string(),
            vhost: vhost.to_string(),
            exchange: t.exchange.clone(),
            write: t.write.clone(),
            read: t.read.clone(),
        }
    }

    pub fn to_topic(&self) -> Result<TopicPermission, AccessError> {
        Ok(TopicPermission::new(
            &self.exchange,
            &self.write,
            &self.read,
        )?)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Tags {
    List(Vec<String>),
    Text(String),
}

/// Tags as a list, or as RabbitMQ's older comma-separated string (`""` is none).
fn tags<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(match Option::<Tags>::deserialize(d)? {
        None => Vec::new(),
        Some(Tags::List(l)) => l,
        Some(Tags::Text(s)) => split_tags(&s),
    })
}

/// `"administrator, monitoring"` as RabbitMQ's CLI and older exports write tags.
pub fn split_tags(s: &str) -> Vec<String> {
    s.split([',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LimitShape {
    Pairs(Vec<(String, i64)>),
    Map(BTreeMap<String, i64>),
}

fn limit_pairs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(String, i64)>, D::Error> {
    Ok(match Option::<LimitShape>::deserialize(d)? {
        None => Vec::new(),
        Some(LimitShape::Pairs(p)) => p,
        Some(LimitShape::Map(m)) => m.into_iter().collect(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rabbitmq_3_10_shapes_read() {
        let u: UserRecord = serde_json::from_str(
            r#"{"hashing_algorithm":"rabbit_password_hashing_sha256","limits":{"max-channels":3},
               "name":"alice","password_hash":"Mb5p3AEh7DPdc8KqbUQyV6hVKRN6AYzIbFpmvmPHPYdMlfcn",
               "tags":["monitoring","policymaker"]}"#,
        )
        .unwrap();
        let user = u.to_user().unwrap();
        assert!(user.hash.verify("test12"));
        assert_eq!(user.limits.get("max-channels"), Some(3));
        let old: UserRecord = serde_json::from_str(
            r#"{"name":"b","password_hash":"","tags":"administrator,management"}"#,
        )
        .unwrap();
        assert_eq!(old.tags, vec!["administrator", "management"]);
        let v: VhostRecord = serde_json::from_str(
            r#"{"limits":[["max-connections",10],["max-queues",5]],
               "metadata":{"description":"","tags":""},"name":"prod"}"#,
        )
        .unwrap();
        let info = v.to_info().unwrap();
        assert_eq!(info.limits.get("max-queues"), Some(5));
        assert!(info.tags.is_empty());
        let back: VhostRecord =
            serde_json::from_str(&serde_json::to_string(&VhostRecord::from_info(&info)).unwrap())
                .unwrap();
        assert_eq!(back.to_info().unwrap(), info);
    }
}
