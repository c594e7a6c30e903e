//! `locker token …` and `locker owner …`: API tokens, the owner's sessions,
//! and a new set-up link when the password is lost.

use std::time::Duration;

use anyhow::{Result, bail};

use super::Target;
use super::access::{Access, access};
use crate::api::{NewToken, SessionView, TokenRequest, TokenView};
use crate::clock::{from_millis, now_millis, rfc3339};
use crate::owner::{Scope, password, tokens};
use crate::store::owner::OwnerStore;

pub(super) async fn create_token(
    target: &Target,
    scope: &str,
    label: Option<String>,
    expires: Option<Duration>,
    json: bool,
) -> Result<()> {
    let parsed: Scope = scope.parse()?;
    let request = TokenRequest {
        scope: parsed.to_string(),
        label: label.unwrap_or_default(),
        expires_in_secs: expires.map(|e| e.as_secs().max(1)),
    };
    let made = match access(target)? {
        Access::Host(client) => client.create_token(&request).await?,
        Access::Offline { catalog, .. } => {
            let store = OwnerStore::open(catalog.root())?;
            let expires_at = request
                .expires_in_secs
                .map(|secs| now_millis() + secs as i64 * 1000);
            let (token, stored) = tokens::create(&store, &parsed, &request.label, expires_at)?;
            NewToken {
                token,
                view: tokens::view(&stored),
            }
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&made)?);
    } else {
        println!("{}", made.token);
        eprintln!(
            "token {} (scope {}{}): shown this once; `locker token revoke {}` ends it",
            made.view.id,
            made.view.scope,
            made.view
                .expires_at
                .as_deref()
                .map(|t| format!(", expires {t}"))
                .unwrap_or_default(),
            made.view.id
        );
    }
    Ok(())
}

pub(super) async fn list_tokens(target: &Target, json: bool) -> Result<()> {
    let views: Vec<TokenView> = match access(target)? {
        Access::Host(client) => client.tokens().await?,
        Access::Offline { catalog, .. } => OwnerStore::open(catalog.root())?
            .tokens()?
            .iter()
            .map(tokens::view)
            .collect(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    println!(
        "{:<14} {:<20} {:<16} {:<26} LAST USED",
        "ID", "SCOPE", "LABEL", "EXPIRES"
    );
    for view in views {
        let expires = match (&view.expires_at, view.expired) {
            (Some(at), true) => format!("{at} (expired)"),
            (Some(at), false) => at.clone(),
            (None, _) => "never".into(),
        };
        println!(
            "{:<14} {:<20} {:<16} {:<26} {}",
            view.id,
            view.scope,
            view.label,
            expires,
            view.last_used.as_deref().unwrap_or("never")
        );
    }
    Ok(())
}

pub(super) async fn revoke_token(target: &Target, id: &str) -> Result<()> {
    match access(target)? {
        Access::Host(client) => {
            client.revoke_token(id).await?;
        }
        Access::Offline { catalog, .. } => {
            if !OwnerStore::open(catalog.root())?.remove_token(id)? {
                bail!("no token {id:?}");
            }
        }
    }
    println!("revoked token {id}");
    Ok(())
}

pub(super) async fn reset(target: &Target) -> Result<()> {
    let link = match access(target)? {
        Access::Host(client) => client.setup_link().await?,
        Access::Offline { catalog, .. } => {
            let code = password::new_setup_code(&OwnerStore::open(catalog.root())?)?;
            format!(
                "<the locker's origin, e.g. http://locker.localhost:8042>/_locker/setup?code={code}"
            )
        }
    };
    println!("{link}");
    eprintln!(
        "this link works once, for an hour; the password stays as it is until a new one is chosen \
         there, and choosing one logs out every session"
    );
    Ok(())
}

pub(super) async fn login_link(target: &Target) -> Result<()> {
    let Access::Host(client) = access(target)? else {
        bail!("a login link needs the host serving this root: start `locker serve` first");
    };
    println!("{}", client.login_link().await?);
    eprintln!("this link logs a browser in once, within ten minutes");
    Ok(())
}

pub(super) async fn sessions(target: &Target, json: bool) -> Result<()> {
    let views: Vec<SessionView> = match access(target)? {
        Access::Host(client) => client.sessions().await?,
        Access::Offline { catalog, .. } => OwnerStore::open(catalog.root())?
            .sessions()?
            .into_iter()
            .map(|s| SessionView {
                id: s.id,
                client: s.client,
                current: false,
                created_at: rfc3339(from_millis(s.created_at)),
                last_seen: rfc3339(from_millis(s.last_seen)),
            })
            .collect(),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(());
    }
    println!(
        "{:<14} {:<18} {:<26} LAST SEEN",
        "ID", "CLIENT", "LOGGED IN"
    );
    for view in views {
        println!(
            "{:<14} {:<18} {:<26} {}",
            view.id, view.client, view.created_at, view.last_seen
        );
    }
    Ok(())
}

pub(super) async fn logout(target: &Target, id: &str) -> Result<()> {
    match access(target)? {
        Access::Host(client) => {
            client.end_session(id).await?;
        }
        Access::Offline { catalog, .. } => {
            if !OwnerStore::open(catalog.root())?.remove_session(id)? {
                bail!("no session {id:?}");
            }
        }
    }
    println!("ended session {id}");
    Ok(())
}
