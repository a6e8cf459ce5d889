//! Push rules: `GET/PUT/DELETE /pushrules/global/...` with `enabled` and
//! `actions`. A user's rule set starts as the spec's defaults
//! (`tessera_core::push::default_ruleset`) and is stored as the `m.push_rules` account
//! data the spec says clients receive through sync.
//! Spec: <https://spec.matrix.org/v1.16/client-server-api/#push-rules>.
//! The rules are evaluated per event by `rooms` (through the core) for
//! notification counts and `GET /notifications`, from a per-user cache
//! this service keeps in step with every change.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use ruma::{
    OwnedUserId, RoomId, UserId,
    push::{
        Action, AnyPushRule, InsertPushRuleError, NewConditionalPushRule, NewPushRule, NewSimplePushRule,
        PushCondition, RemovePushRuleError, RuleKind, Ruleset,
    },
};
use serde_json::json;
use tessera_core::push;
use tessera_storage::Store;

use crate::{Error, Result, account_data::AccountData, auth::Identity};

/// The push rules service.
#[derive(Clone)]
pub struct PushRules {
    store: Store,
    account_data: AccountData,
    cache: Arc<Mutex<HashMap<OwnedUserId, Arc<Ruleset>>>>,
    /// Per user: one change of their rule set at a time (each reads the
    /// whole set, changes it and writes it back).
    edits: Arc<Mutex<HashMap<OwnedUserId, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Rule sets kept in memory at most (the cache starts over past it).
const CACHED_RULESETS: usize = 50_000;

impl PushRules {
    pub fn new(store: Store, account_data: AccountData) -> Self {
        Self { store, account_data, cache: Arc::default(), edits: Arc::default() }
    }

    /// The lock that serialises changes to `user`'s rule set (without it,
    /// two concurrent changes each write back what they read and one is
    /// lost).
    fn edit_lock(&self, user: &UserId) -> Arc<tokio::sync::Mutex<()>> {
        let mut edits = self.edits.lock().unwrap_or_else(|p| p.into_inner());
        if edits.len() >= CACHED_RULESETS {
            edits.retain(|_, lock| Arc::strong_count(lock) > 1);
        }
        edits.entry(user.to_owned()).or_default().clone()
    }

    /// The user's rule set for evaluation, from the cache when it has it.
    pub async fn cached_ruleset(&self, user: &UserId) -> Result<Arc<Ruleset>> {
        if let Some(ruleset) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(user) {
            return Ok(ruleset.clone());
        }
        let ruleset = Arc::new(self.ruleset(user).await?);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHED_RULESETS {
            cache.clear();
        }
        cache.insert(user.to_owned(), ruleset.clone());
        Ok(ruleset)
    }

    /// The user's rule set (the defaults until they change something).
    pub async fn ruleset(&self, user: &UserId) -> Result<Ruleset> {
        match self.store.get_account_data(user, "", "m.push_rules").await? {
            Some(json) => {
                let stored = serde_json::from_str::<serde_json::Value>(&json)
                    .ok()
                    .and_then(|mut content| content.get_mut("global").map(serde_json::Value::take))
                    .and_then(push::ruleset_from_stored);
                match stored {
                    Some((ruleset, dropped)) => {
                        if dropped > 0 {
                            tracing::warn!(%user, dropped, "push rules with oversized patterns ignored");
                        }
                        Ok(ruleset)
                    }
                    None => {
                        // Unreadable: the user's sends and everyone's sends
                        // to them go on with the defaults.
                        tracing::warn!(%user, "unreadable m.push_rules: the defaults apply");
                        Ok(push::default_ruleset(user))
                    }
                }
            }
            None => Ok(push::default_ruleset(user)),
        }
    }

    async fn save(&self, user: &UserId, ruleset: &Ruleset) -> Result<()> {
        let content = json!({ "global": ruleset });
        let written = self.account_data.write(user, None, "m.push_rules", &content).await;
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).remove(user);
        written
    }

    /// One rule; 404 when the user has none with this kind and ID.
    pub async fn get(&self, who: &Identity, kind: RuleKind, rule_id: &str) -> Result<AnyPushRule> {
        let ruleset = self.ruleset(&who.user_id).await?;
        ruleset.get(kind, rule_id).map(|rule| rule.to_owned()).ok_or_else(not_found)
    }

    /// `PUT /pushrules/global/{kind}/{ruleId}`, placed by `before`/`after`.
    pub async fn set(
        &self,
        who: &Identity,
        rule: NewPushRule,
        before: Option<&str>,
        after: Option<&str>,
    ) -> Result<()> {
        if push::new_rule_has_oversized_pattern(&rule) {
            return Err(Error::invalid_param(format!(
                "Push rule patterns are at most {} bytes",
                push::MAX_PATTERN_BYTES
            )));
        }
        let lock = self.edit_lock(&who.user_id);
        let _editing = lock.lock().await;
        let mut ruleset = self.ruleset(&who.user_id).await?;
        let replaces = ruleset.get(rule.kind(), rule.rule_id()).is_some();
        if !replaces && push::user_rule_count(&ruleset) >= push::MAX_USER_RULES {
            return Err(Error::invalid_param(format!(
                "At most {} push rules per user",
                push::MAX_USER_RULES
            )));
        }
        ruleset.insert(rule, after, before).map_err(|e| match e {
            InsertPushRuleError::UnknownRuleId => Error::not_found("The before/after rule does not exist"),
            other => Error::invalid_param(other.to_string()),
        })?;
        self.save(&who.user_id, &ruleset).await
    }

    /// `DELETE /pushrules/global/{kind}/{ruleId}`: user-defined rules only.
    pub async fn delete(&self, who: &Identity, kind: RuleKind, rule_id: &str) -> Result<()> {
        let lock = self.edit_lock(&who.user_id);
        let _editing = lock.lock().await;
        let mut ruleset = self.ruleset(&who.user_id).await?;
        ruleset.remove(kind, rule_id).map_err(|e| match e {
            RemovePushRuleError::NotFound => not_found(),
            other => Error::invalid_param(other.to_string()),
        })?;
        self.save(&who.user_id, &ruleset).await
    }

    pub async fn set_enabled(
        &self,
        who: &Identity,
        kind: RuleKind,
        rule_id: &str,
        enabled: bool,
    ) -> Result<()> {
        let lock = self.edit_lock(&who.user_id);
        let _editing = lock.lock().await;
        let mut ruleset = self.ruleset(&who.user_id).await?;
        ruleset.set_enabled(kind, rule_id, enabled).map_err(|_| not_found())?;
        self.save(&who.user_id, &ruleset).await
    }

    pub async fn set_actions(
        &self,
        who: &Identity,
        kind: RuleKind,
        rule_id: &str,
        actions: Vec<Action>,
    ) -> Result<()> {
        let lock = self.edit_lock(&who.user_id);
        let _editing = lock.lock().await;
        let mut ruleset = self.ruleset(&who.user_id).await?;
        ruleset.set_actions(kind, rule_id, actions).map_err(|_| not_found())?;
        self.save(&who.user_id, &ruleset).await
    }

    /// A room upgrade (the spec leaves this to servers; Synapse does it,
    /// and users expect a muted room to stay muted): the user's enabled rules for `old` are copied for `new`. That is its `room`
    /// rule, and `override`/`underride` rules matching `room_id` against
    /// the old room whose ID names it (the new copy is named after the new
    /// room). Rules the user already has for the new room are kept.
    pub async fn copy_room_rules(&self, user: &UserId, old: &RoomId, new: &RoomId) -> Result<()> {
        let lock = self.edit_lock(user);
        let _editing = lock.lock().await;
        let mut ruleset = self.ruleset(user).await?;
        let mut copies = Vec::new();
        if let Some(rule) = ruleset.room.iter().find(|r| r.enabled && r.rule_id == old) {
            copies.push(NewPushRule::Room(NewSimplePushRule::new(new.to_owned(), rule.actions.clone())));
        }
        for (kind, rules) in
            [(RuleKind::Override, &ruleset.override_), (RuleKind::Underride, &ruleset.underride)]
        {
            for rule in rules.iter().filter(|r| r.enabled && !r.default && r.rule_id.contains(old.as_str())) {
                let mut conditions = rule.conditions.clone();
                let mut matched = false;
                for condition in &mut conditions {
                    if let PushCondition::EventMatch(data) = condition
                        && data.key == "room_id"
                        && data.pattern == old.as_str()
                    {
                        data.pattern = new.to_string();
                        matched = true;
                    }
                }
                if matched {
                    let rule_id = rule.rule_id.replace(old.as_str(), new.as_str());
                    let copy = NewConditionalPushRule::new(rule_id, conditions, rule.actions.clone());
                    copies.push(match kind {
                        RuleKind::Override => NewPushRule::Override(copy),
                        _ => NewPushRule::Underride(copy),
                    });
                }
            }
        }
        copies.retain(|copy| ruleset.get(copy.kind(), copy.rule_id()).is_none());
        if copies.is_empty() {
            return Ok(());
        }
        for copy in copies {
            ruleset
                .insert(copy, None, None)
                .map_err(|e| Error::internal(format!("copied push rule: {e}")))?;
        }
        self.save(user, &ruleset).await
    }
}

fn not_found() -> Error {
    Error::not_found("No such push rule")
}
