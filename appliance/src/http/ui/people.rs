//! The People page: users (add, change roles and attributes, disable, set a password) and
//! API tokens (create, shown once; revoke), through the same service functions as
//! `sanctum user`, `sanctum token` and `/v1/users`, `/v1/tokens`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::{administrator, csrf_of, error_page, forged, html, list, policy_config, status_of, when, Fields, Person};
use crate::http::State;
use crate::tokens::{self, Scope};
use crate::users::{self, User, UserFields};

fn user_view(u: User) -> ::web::admin::UserView {
    ::web::admin::UserView {
        name: u.name,
        kind: u.kind,
        roles: u.roles,
        region: u.region.unwrap_or_default(),
        groups: u.groups.join(", "),
        disabled: u.disabled,
        has_password: u.has_password,
        mapped_from: u
            .mapping
            .as_ref()
            .and_then(|m| m["mapping"]["matched"].as_array())
            .map(|g| g.iter().filter_map(|v| v.as_str()).collect::<Vec<_>>().join("; "))
            .unwrap_or_default(),
        synced: u.synced_at.map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default(),
        source: u.source,
        issuer: u.issuer.unwrap_or_default(),
    }
}

/// The People page, with what the last change did.
async fn people_page(state: &State, person: &Person, new_token: Option<String>, notices: Vec<String>, error: Option<String>, status: StatusCode) -> HttpResponse {
    let listed = state.run(|ctx| async move { Ok((users::list(&ctx).await?, tokens::list(&ctx, None).await?)) }).await;
    let (all, tokens) = match listed {
        Ok(l) => l,
        Err(e) => return error_page(status_of(&e), "People could not be listed", e.0.to_string()),
    };
    let page = ::web::admin::People {
        chrome: person.chrome("people"),
        users: all.into_iter().map(user_view).collect(),
        tokens: tokens
            .into_iter()
            .map(|t| ::web::admin::TokenView {
                id: t.id,
                user: t.user_name,
                label: t.label,
                scopes: match &t.default_purpose {
                    Some(p) => format!("{} (default purpose {p})", t.scopes.join(", ")),
                    None => t.scopes.join(", "),
                },
                created: format!("{} by {}", when(&t.created_at), t.created_by),
                expires: t.expires_at.as_ref().map(when).unwrap_or_else(|| "never".into()),
                last_used: t.last_used_at.as_ref().map(when).unwrap_or_else(|| "never".into()),
                revoked: t.revoked_at.is_some(),
            })
            .collect(),
        roles: policy_config(state, "roles"),
        scopes: Scope::ALL.iter().map(|s| s.as_str()).collect(),
        new_token,
        notices,
        error,
    };
    html(status, &page)
}

pub(super) async fn people(state: web::Data<State>, req: HttpRequest) -> HttpResponse {
    match administrator(&state, &req, "administering people").await {
        Ok(person) => people_page(&state, &person, None, Vec::new(), None, StatusCode::OK).await,
        Err(r) => r,
    }
}

/// The administrator and the form's fields, once the form is known to come from this site.
async fn admin_form(state: &State, req: &HttpRequest, body: &[u8], what: &str) -> std::result::Result<(Person, Fields), HttpResponse> {
    let person = administrator(state, req, "administering people").await?;
    let fields = Fields::parse(body).map_err(|e| error_page(StatusCode::BAD_REQUEST, what, e))?;
    if !person.sent_csrf(&fields.csrf()) {
        return Err(forged(what));
    }
    Ok((person, fields))
}

pub(super) async fn add_user(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (person, f) = match admin_form(&state, &req, &body, "No user added").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (name, service, password) = (f.one("name"), f.flag("service"), f.raw("password"));
    let fields = UserFields { roles: Some(f.all("roles")), region: Some(Some(f.one("region")).filter(|r| !r.is_empty())), groups: Some(list(&f.one("groups"))), disabled: None };
    let actor = person.name().to_string();
    let added = state
        .run(move |ctx| async move {
            let user = users::add(&ctx, &actor, &name, service, &fields).await?;
            if !password.is_empty() {
                crate::auth::set_password(&ctx, &actor, &user.name, &password).await?;
            }
            Ok(user)
        })
        .await;
    match added {
        Ok(u) => people_page(&state, &person, None, vec![format!("{} added with roles {}.", u.name, u.roles.join(", "))], None, StatusCode::OK).await,
        Err(e) => people_page(&state, &person, None, Vec::new(), Some(e.0.to_string()), status_of(&e)).await,
    }
}

pub(super) async fn user_page(state: web::Data<State>, req: HttpRequest, name: web::Path<String>) -> HttpResponse {
    let person = match administrator(&state, &req, "administering people").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let name = name.into_inner();
    match state.run(move |ctx| async move { users::get(&ctx, &name).await }).await {
        Ok(u) => html(StatusCode::OK, &::web::admin::UserEdit { chrome: person.chrome("people"), user: user_view(u), roles: policy_config(&state, "roles"), error: None }),
        Err(e) => error_page(status_of(&e), "No such user", e.0.to_string()),
    }
}

pub(super) async fn change_user(state: web::Data<State>, req: HttpRequest, name: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let (person, f) = match admin_form(&state, &req, &body, "Not changed").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = name.into_inner();
    // a directory user's attributes are mapped at sign-in: their form changes only `disabled`
    let fields = if f.flag("directory") {
        UserFields { disabled: Some(f.flag("disabled")), ..Default::default() }
    } else {
        UserFields {
            roles: Some(f.all("roles")),
            region: Some(Some(f.one("region")).filter(|r| !r.is_empty())),
            groups: Some(list(&f.one("groups"))),
            disabled: Some(f.flag("disabled")),
        }
    };
    let (actor, who, password) = (person.name().to_string(), name.clone(), f.raw("password"));
    let changed = state
        .run(move |ctx| async move {
            let user = users::set(&ctx, &actor, &who, &fields).await?;
            if !password.is_empty() {
                crate::auth::set_password(&ctx, &actor, &who, &password).await?;
            }
            Ok(user)
        })
        .await;
    match changed {
        Ok(u) => people_page(&state, &person, None, vec![format!("{} changed.", u.name)], None, StatusCode::OK).await,
        Err(e) => {
            let status = status_of(&e);
            match state.run(move |ctx| async move { users::get(&ctx, &name).await }).await {
                Ok(u) => html(status, &::web::admin::UserEdit { chrome: person.chrome("people"), user: user_view(u), roles: policy_config(&state, "roles"), error: Some(e.0.to_string()) }),
                Err(_) => error_page(status, "Not changed", e.0.to_string()),
            }
        }
    }
}

pub(super) async fn create_token(state: web::Data<State>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let (person, f) = match admin_form(&state, &req, &body, "No token created").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let scopes = match f.all("scopes").iter().map(|s| Scope::parse(s)).collect::<crate::error::Result<Vec<_>>>() {
        Ok(s) if !s.is_empty() => s,
        Ok(_) => return people_page(&state, &person, None, Vec::new(), Some("Scopes: tick at least one.".into()), StatusCode::BAD_REQUEST).await,
        Err(e) => return people_page(&state, &person, None, Vec::new(), Some(e.to_string()), StatusCode::BAD_REQUEST).await,
    };
    let days = match f.one("days") {
        d if d.is_empty() => None,
        d => match d.parse::<u32>() {
            Ok(n) if n >= 1 => Some(n),
            _ => return people_page(&state, &person, None, Vec::new(), Some(format!("Valid for days: {d:?} is not a whole number of days (1 or more).")), StatusCode::BAD_REQUEST).await,
        },
    };
    let (actor, user, label) = (person.name().to_string(), f.one("user"), f.one("label"));
    let default_purpose = Some(f.one("default_purpose")).filter(|p| !p.is_empty());
    match state.run(move |ctx| async move { tokens::create(&ctx, &actor, &user, &label, &scopes, days, default_purpose.as_deref()).await }).await {
        Ok((info, secret)) => people_page(&state, &person, Some(secret), vec![format!("Token {} created for {}.", info.id, info.user_name)], None, StatusCode::OK).await,
        Err(e) => people_page(&state, &person, None, Vec::new(), Some(e.0.to_string()), status_of(&e)).await,
    }
}

pub(super) async fn revoke_token(state: web::Data<State>, req: HttpRequest, id: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let person = match administrator(&state, &req, "administering people").await {
        Ok(p) => p,
        Err(r) => return r,
    };
    if !person.sent_csrf(&csrf_of(&body)) {
        return forged("Not revoked");
    }
    let Ok(id) = id.parse::<i64>() else {
        return people_page(&state, &person, None, Vec::new(), Some("That is not a token id.".into()), StatusCode::BAD_REQUEST).await;
    };
    let actor = person.name().to_string();
    match state.run(move |ctx| async move { tokens::revoke(&ctx, &actor, id).await }).await {
        Ok(t) => people_page(&state, &person, None, vec![format!("Token {} ({}) revoked.", t.id, t.label)], None, StatusCode::OK).await,
        Err(e) => people_page(&state, &person, None, Vec::new(), Some(e.0.to_string()), status_of(&e)).await,
    }
}
