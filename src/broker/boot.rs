//! What a start adds to the recovered store: the access records read back, a
//! `load_definitions` file, the TOML's vhosts and users, and, on a first start that finds
//! no user and loads no definitions, RabbitMQ's default user (`guest`/`guest`,
//! administrator, all permissions on `/`).

use tracing::{info, warn};

use super::admin::{UserChange, VhostChange};
use super::{Broker, OpenError};
use crate::access::record::{PermissionRecord, TopicPermissionRecord, UserRecord, VhostRecord};
use crate::access::{Access, VhostInfo, ADMINISTRATOR};
use crate::password::{Algorithm, PasswordHash};
use crate::store::records::{PERMISSION, TOPIC_PERMISSION, USER};

/// Fills `access` from the store's records. A record that does not decode is logged and
/// skipped (the rest of the model still loads).
pub(super) fn read_access(
    access: &mut Access,
    vhosts: &[(String, Vec<u8>)],
    records: &[(u8, Vec<u8>)],
) {
    for (name, v) in vhosts {
        let info = if v.is_empty() {
            // A vhost record from before access records: no description, no limits.
            Ok(VhostInfo {
                name: name.clone(),
                ..VhostInfo::default()
            })
        } else {
            serde_json::from_slice::<VhostRecord>(v)
                .map_err(|e| e.to_string())
                .and_then(|r| r.to_info().map_err(|e| e.to_string()))
        };
        match info {
            Ok(info) => {
                access.vhosts.insert(name.clone(), info);
            }
            Err(e) => {
                warn!(vhost = %name, "stored vhost record unreadable ({e}): served without its limits")
            }
        }
        access
            .vhosts
            .entry(name.clone())
            .or_insert_with(|| VhostInfo {
                name: name.clone(),
                ..VhostInfo::default()
            });
    }
    for (kind, v) in records {
        let outcome = match *kind {
            USER => serde_json::from_slice::<UserRecord>(v)
                .map_err(|e| e.to_string())
                .and_then(|r| r.to_user().map_err(|e| e.to_string()))
                .map(|u| {
                    access.users.insert(u.name.clone(), u.into());
                }),
            PERMISSION => serde_json::from_slice::<PermissionRecord>(v)
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    let p = r.to_permission().map_err(|e| e.to_string())?;
                    access.permissions.insert((r.vhost, r.user), p.into());
                    Ok(())
                }),
            TOPIC_PERMISSION => serde_json::from_slice::<TopicPermissionRecord>(v)
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    let t = r.to_topic().map_err(|e| e.to_string())?;
                    access
                        .topic_permissions
                        .entry((r.vhost, r.user))
                        .or_default()
                        .insert(t.exchange.clone(), t);
                    Ok(())
                }),
            _ => Ok(()),
        };
        if let Err(e) = outcome {
            warn!(kind = %char::from(*kind), "stored access record unreadable, skipped: {e}");
        }
    }
}

impl Broker {
    /// `hashes`: the TOML users' passwords, hashed (in `config.users`' order; the plaintext
    /// is not kept).
    pub(super) fn boot(&self, hashes: Vec<PasswordHash>) -> Result<(), OpenError> {
        if let Some(path) = self.config.load_definitions.clone() {
            self.import_definitions_file(&path)?;
        }
        let config = &self.config;
        for v in &config.vhosts {
            self.ensure_vhost(v)?;
        }
        for (u, hash) in config.users.iter().zip(hashes) {
            self.put_user(
                &u.name,
                UserChange {
                    hash: Some(hash),
                    tags: Some(u.tags.clone()),
                    limits: None,
                },
            )
            .map_err(|e| boot_error(format!("user {}: {e}", u.name)))?;
            let vhosts: Vec<String> = if u.vhosts.is_empty() {
                self.read_access(|a| a.vhosts.keys().cloned().collect())
            } else {
                u.vhosts.clone()
            };
            for v in &vhosts {
                self.ensure_vhost(v)?;
                self.set_permissions(&u.name, v, ".*", ".*", ".*")
                    .map_err(|e| boot_error(format!("user {}: {e}", u.name)))?;
            }
        }
        let no_users = self.read_access(|a| a.users.is_empty());
        if no_users && config.load_definitions.is_none() {
            let name = &config.default_user;
            info!(user = %name, "no users: creating the default user");
            self.ensure_vhost("/")?;
            self.put_user(
                name,
                UserChange {
                    hash: Some(PasswordHash::new(Algorithm::Sha256, &config.default_pass)),
                    tags: Some(vec![ADMINISTRATOR.to_string()]),
                    limits: None,
                },
            )
            .and_then(|_| self.set_permissions(name, "/", ".*", ".*", ".*"))
            .map_err(|e| boot_error(format!("default user {name}: {e}")))?;
        }
        // Users may have been hashed anew: the plaintext goes, and the records reach disk.
        if !self.sync_store() {
            warn!("the store failed while writing the start's access records");
        }
        Ok(())
    }

    fn ensure_vhost(&self, name: &str) -> Result<(), OpenError> {
        if self.vhost(name).is_none() {
            let description = if name == "/" {
                "Default virtual host".to_string()
            } else {
                String::new()
            };
            self.put_vhost(
                name,
                VhostChange {
                    description: Some(description),
                    ..VhostChange::default()
                },
            )
            .map_err(|e| boot_error(format!("vhost {name}: {e}")))?;
        }
        Ok(())
    }
}

fn boot_error(reason: String) -> OpenError {
    OpenError::Boot(reason)
}
