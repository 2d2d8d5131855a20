//! On the leader: the Synapse database, its roles, the PgBouncer auth role and the
//! `pgbouncer.get_auth` lookup function, over one client connection per database.
//!
//! Passwords reach PostgreSQL only inside the protocol: the superuser logs in with SCRAM, and
//! a role's password is set as a SCRAM verifier computed here (`postgres-protocol`), never as
//! plain text in SQL. Whether a role's password is already right is checked by logging in as
//! that role (SCRAM again), so a re-run changes nothing.

use std::time::Duration;

use tokio_postgres::{Client, Config, NoTls};

use crate::config::{Database, User};

/// The body of the lookup function PgBouncer's `auth_query` calls. Superusers are never
/// returned, so PgBouncer cannot be used to log in as one.
pub const GET_AUTH_BODY: &str = "SELECT usename, passwd FROM pg_catalog.pg_shadow \
                                 WHERE usename = p_usename AND NOT usesuper";

/// Where and as whom the module connects.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub superuser: String,
    pub password: String,
}

/// What the leader should hold.
#[derive(Debug, Clone)]
pub struct Desired {
    pub users: Vec<User>,
    pub databases: Vec<Database>,
    /// The PgBouncer auth role and its password, when PgBouncer authenticates through
    /// `auth_query`.
    pub pgbouncer: Option<User>,
}

/// What was done (or, in check mode, would be done), and the replication seen on the leader.
#[derive(Debug, Default)]
pub struct Report {
    pub actions: Vec<String>,
    pub replication: Vec<serde_json::Value>,
}

fn config(t: &Target, user: &str, password: &str, dbname: &str) -> Config {
    let mut c = Config::new();
    c.host(&t.host)
        .port(t.port)
        .user(user)
        .password(password)
        .dbname(dbname)
        .application_name("z3r0d3v.matrix_ha.patroni_bootstrap")
        .connect_timeout(Duration::from_secs(10));
    c
}

async fn connect(t: &Target, dbname: &str) -> Result<Client, String> {
    let (client, connection) = config(t, &t.superuser, &t.password, dbname)
        .connect(NoTls)
        .await
        .map_err(|e| {
            format!(
                "cannot connect to PostgreSQL at {}:{} as '{}' (database '{dbname}'): {}",
                t.host,
                t.port,
                t.superuser,
                pg_text(&e)
            )
        })?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Whether `user` can log in with `password` (a wrong password is `Ok(false)`).
async fn password_works(t: &Target, user: &User) -> Result<bool, String> {
    match config(t, &user.name, &user.password, "postgres")
        .connect(NoTls)
        .await
    {
        Ok((client, connection)) => {
            drop(client);
            let _ = connection.await;
            Ok(true)
        }
        Err(e) => {
            let code = e.code().map(|c| c.code().to_string());
            match code.as_deref() {
                // invalid_password; invalid_authorization_specification when LOGIN is missing.
                Some("28P01") | Some("28000") if !pg_text(&e).contains("pg_hba.conf") => Ok(false),
                _ => Err(format!(
                    "cannot check the password of role '{}' by logging in at {}:{}: {}",
                    user.name,
                    t.host,
                    t.port,
                    pg_text(&e)
                )),
            }
        }
    }
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The whole text of a client error: tokio-postgres shows the server's message only as the
/// error's source.
pub fn pg_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            // Bounded: error chains are short, but never trust one to end.
            for _ in 0..8 {
                let Some(s) = source else { break };
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
    }
}

fn db_error(what: &str) -> impl Fn(tokio_postgres::Error) -> String + '_ {
    move |e| format!("{what}: {}", pg_text(&e))
}

async fn ensure_role(
    t: &Target,
    client: &Client,
    user: &User,
    check: bool,
    report: &mut Report,
) -> Result<(), String> {
    let row = client
        .query_opt(
            "SELECT rolcanlogin FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&user.name],
        )
        .await
        .map_err(db_error("reading pg_roles"))?;
    let role = quote_ident(&user.name);
    // A SCRAM verifier holds no character that needs quoting (base64, digits, '$', ':').
    let verifier = || postgres_protocol::password::scram_sha_256(user.password.as_bytes());
    match row {
        None => {
            report.actions.push(format!("create role {}", user.name));
            if !check {
                let sql = format!("CREATE ROLE {role} LOGIN PASSWORD '{}'", verifier());
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(db_error("creating a role"))?;
            }
            ensure_settings(client, user, check, report).await?;
        }
        Some(row) => {
            let can_login: bool = row.get(0);
            if !can_login {
                report
                    .actions
                    .push(format!("allow role {} to log in", user.name));
                if !check {
                    client
                        .batch_execute(&format!("ALTER ROLE {role} LOGIN"))
                        .await
                        .map_err(db_error("altering a role"))?;
                }
            }
            ensure_settings(client, user, check, report).await?;
            if !(can_login && password_works(t, user).await?) {
                report
                    .actions
                    .push(format!("set the password of role {}", user.name));
                if !check {
                    let sql = format!("ALTER ROLE {role} PASSWORD '{}'", verifier());
                    client
                        .batch_execute(&sql)
                        .await
                        .map_err(db_error("setting a password"))?;
                }
            }
        }
    }
    Ok(())
}

/// The role's session defaults: every listed key set to its value (as `key=value` in
/// `pg_db_role_setting`, for all databases), a key whose value is null removed; other
/// settings of the role are left alone.
async fn ensure_settings(
    client: &Client,
    user: &User,
    check: bool,
    report: &mut Report,
) -> Result<(), String> {
    let Some(settings) = user.settings.as_ref().filter(|s| !s.is_empty()) else {
        return Ok(());
    };
    let current: Vec<String> = client
        .query(
            "SELECT unnest(s.setconfig) FROM pg_catalog.pg_db_role_setting s \
             JOIN pg_catalog.pg_roles r ON r.oid = s.setrole \
             WHERE r.rolname = $1 AND s.setdatabase = 0",
            &[&user.name],
        )
        .await
        .map_err(db_error("reading pg_db_role_setting"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let role = quote_ident(&user.name);
    for (key, value) in settings {
        if value.is_null() {
            let prefix = format!("{key}=");
            if current.iter().any(|c| c.starts_with(&prefix)) {
                report
                    .actions
                    .push(format!("reset {key} of role {}", user.name));
                if !check {
                    // The key is checked to be a parameter name.
                    client
                        .batch_execute(&format!("ALTER ROLE {role} RESET {key}"))
                        .await
                        .map_err(db_error("resetting a role default"))?;
                }
            }
            continue;
        }
        let value = crate::config::setting_text(value).unwrap_or_default();
        if current.contains(&format!("{key}={value}")) {
            continue;
        }
        report
            .actions
            .push(format!("set {key} of role {} to '{value}'", user.name));
        if !check {
            // The key is checked to be a parameter name; the value is a quoted literal.
            let sql = format!(
                "ALTER ROLE {role} SET {key} = '{}'",
                value.replace('\'', "''")
            );
            client
                .batch_execute(&sql)
                .await
                .map_err(db_error("setting a role default"))?;
        }
    }
    Ok(())
}

async fn ensure_database(
    client: &Client,
    db: &Database,
    check: bool,
    report: &mut Report,
) -> Result<(), String> {
    let row = client
        .query_opt(
            "SELECT pg_catalog.pg_get_userbyid(datdba)::text, \
                    pg_catalog.pg_encoding_to_char(encoding)::text, datcollate::text, datctype::text \
             FROM pg_catalog.pg_database WHERE datname = $1",
            &[&db.name],
        )
        .await
        .map_err(db_error("reading pg_database"))?;
    let name = quote_ident(&db.name);
    let owner = quote_ident(&db.owner);
    match row {
        None => {
            report.actions.push(format!(
                "create database {} (UTF8, LC_COLLATE and LC_CTYPE C, from template0, owner {})",
                db.name, db.owner
            ));
            if !check {
                let sql = format!(
                    "CREATE DATABASE {name} OWNER {owner} ENCODING 'UTF8' LC_COLLATE 'C' \
                     LC_CTYPE 'C' TEMPLATE template0"
                );
                client
                    .batch_execute(&sql)
                    .await
                    .map_err(db_error("creating a database"))?;
            }
        }
        Some(row) => {
            let (current_owner, encoding, collate, ctype): (String, String, String, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            if encoding != "UTF8" || collate != "C" || ctype != "C" {
                return Err(format!(
                    "database '{}' exists with encoding {encoding}, LC_COLLATE '{collate}', \
                     LC_CTYPE '{ctype}': Synapse needs UTF8 with 'C' for both, and PostgreSQL \
                     cannot change them in place (dump it, drop it, and let this module create \
                     it again)",
                    db.name
                ));
            }
            if current_owner != db.owner {
                report.actions.push(format!(
                    "change the owner of database {} from {current_owner} to {}",
                    db.name, db.owner
                ));
                if !check {
                    client
                        .batch_execute(&format!("ALTER DATABASE {name} OWNER TO {owner}"))
                        .await
                        .map_err(db_error("changing a database's owner"))?;
                }
            }
        }
    }
    Ok(())
}

/// The SQL that (re)creates the lookup function with its owner and privileges.
pub fn get_auth_sql(superuser: &str, auth_user: &str) -> String {
    let su = quote_ident(superuser);
    let au = quote_ident(auth_user);
    format!(
        "CREATE SCHEMA IF NOT EXISTS pgbouncer AUTHORIZATION {su};\n\
         REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC;\n\
         GRANT USAGE ON SCHEMA pgbouncer TO {au};\n\
         CREATE OR REPLACE FUNCTION pgbouncer.get_auth(p_usename text)\n\
         RETURNS TABLE(usename name, passwd text)\n\
         LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog\n\
         AS $get_auth${GET_AUTH_BODY}$get_auth$;\n\
         ALTER FUNCTION pgbouncer.get_auth(text) OWNER TO {su};\n\
         REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;\n\
         GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO {au};\n"
    )
}

async fn ensure_get_auth(
    t: &Target,
    dbname: &str,
    auth_user: &str,
    check: bool,
    report: &mut Report,
) -> Result<(), String> {
    let client = connect(t, dbname).await?;
    let row = client
        .query_opt(
            "SELECT p.prosrc, p.prosecdef, pg_catalog.pg_get_userbyid(p.proowner)::text, \
                    COALESCE(p.proacl::text, ''), COALESCE(n.nspacl::text, '') \
             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = 'pgbouncer' AND p.proname = 'get_auth' \
               AND p.proargtypes = '25'::oidvector",
            &[],
        )
        .await
        .map_err(db_error("reading pg_proc"))?;
    let su = &t.superuser;
    let want_acl = format!("{{{su}=X/{su},{auth_user}=X/{su}}}");
    let up_to_date = row.is_some_and(|r| {
        let (src, secdef, owner, acl, nspacl): (String, bool, String, String, String) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        src == GET_AUTH_BODY
            && secdef
            && owner == *su
            && acl == want_acl
            && nspacl == format!("{{{su}=UC/{su},{auth_user}=U/{su}}}")
    });
    if !up_to_date {
        report.actions.push(format!(
            "create function pgbouncer.get_auth(text) in database {dbname} (SECURITY DEFINER, \
             owner {su}, EXECUTE for {auth_user} only)"
        ));
        if !check {
            let sql = format!("BEGIN;\n{}COMMIT;", get_auth_sql(su, auth_user));
            client
                .batch_execute(&sql)
                .await
                .map_err(db_error("creating pgbouncer.get_auth"))?;
        }
    }
    Ok(())
}

async fn replication(client: &Client) -> Result<Vec<serde_json::Value>, String> {
    let rows = client
        .query(
            "SELECT application_name::text, COALESCE(client_addr::text, ''), state::text, \
                    sync_state::text, \
                    COALESCE(pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(), replay_lsn), 0)::bigint \
             FROM pg_catalog.pg_stat_replication ORDER BY 1",
            &[],
        )
        .await
        .map_err(db_error("reading pg_stat_replication"))?;
    Ok(rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "name": r.get::<_, String>(0),
                "client_addr": r.get::<_, String>(1),
                "state": r.get::<_, String>(2),
                "sync_state": r.get::<_, String>(3),
                "replay_lag_bytes": r.get::<_, i64>(4),
            })
        })
        .collect())
}

async fn ensure_async(t: &Target, d: &Desired, check: bool) -> Result<Report, String> {
    let mut report = Report::default();
    let client = connect(t, "postgres").await?;
    for user in d.users.iter().chain(d.pgbouncer.iter()) {
        ensure_role(t, &client, user, check, &mut report).await?;
    }
    for db in &d.databases {
        ensure_database(&client, db, check, &mut report).await?;
    }
    report.replication = replication(&client).await?;
    drop(client);
    if let Some(pgb) = &d.pgbouncer {
        for db in &d.databases {
            let exists = !report
                .actions
                .iter()
                .any(|a| a.starts_with(&format!("create database {} ", db.name)));
            if check && !exists {
                report.actions.push(format!(
                    "create function pgbouncer.get_auth(text) in database {}",
                    db.name
                ));
                continue;
            }
            ensure_get_auth(t, &db.name, &pgb.name, check, &mut report).await?;
        }
    }
    Ok(report)
}

/// The single-threaded runtime the PostgreSQL client runs on.
fn client_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the PostgreSQL client: {e}"))
}

/// `SHOW max_connections` on the server at `target` (any member: a replica answers too).
pub fn max_connections(target: &Target) -> Result<u64, String> {
    let runtime = client_runtime()?;
    runtime.block_on(async {
        let work = async {
            let client = connect(target, "postgres").await?;
            let row = client
                .query_one("SELECT current_setting('max_connections')", &[])
                .await
                .map_err(|e| pg_text(&e))?;
            let text: String = row.get(0);
            text.parse::<u64>()
                .map_err(|e| format!("max_connections is '{text}': {e}"))
        };
        tokio::time::timeout(Duration::from_secs(20), work)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "SHOW max_connections on {}:{} did not answer within 20 s",
                    target.host, target.port
                ))
            })
    })
}

/// Brings the leader to `desired` (in check mode: only reports what it would do).
pub fn ensure(target: &Target, desired: &Desired, check: bool) -> Result<Report, String> {
    let runtime = client_runtime()?;
    runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(120),
            ensure_async(target, desired, check),
        )
        .await
        .unwrap_or_else(|_| Err("the database work did not finish within 120 s".to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_function_signature_is_the_documented_one() {
        let sql = get_auth_sql("postgres", "pgbouncer");
        assert!(sql.contains(
            "FUNCTION pgbouncer.get_auth(p_usename text)\nRETURNS TABLE(usename name, passwd text)"
        ));
        assert!(sql.contains("SECURITY DEFINER"));
        assert!(sql.contains("REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;"));
        assert!(
            sql.contains("GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO \"pgbouncer\";")
        );
    }

    #[test]
    fn verifiers_need_no_quoting() {
        let v = postgres_protocol::password::scram_sha_256(b"it's a \"test\"");
        assert!(v.starts_with("SCRAM-SHA-256$4096:"));
        assert!(!v.contains('\'') && !v.contains("it's"));
    }
}
