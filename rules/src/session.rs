//! The settings Synapse makes per session, made defaults of its database role.
//!
//! Synapse sets them on each new connection; behind PgBouncer in transaction pooling a session
//! setting reaches only the server connection that ran it, so they must be role defaults
//! (`ALTER ROLE … SET`). No isolation level is among them: Synapse sets REPEATABLE READ with
//! each `BEGIN`, and its autocommit statements need the server default, READ COMMITTED.

/// (parameter, value) pairs Synapse sets per session, in the order it sets them.
pub const SYNAPSE_SESSION_SETTINGS: [(&str, &str); 3] = [
    ("bytea_output", "escape"),
    ("statement_timeout", "10min"),
    ("idle_in_transaction_session_timeout", "30min"),
];

/// The SQL that makes [`SYNAPSE_SESSION_SETTINGS`] defaults of `role` (a name the caller has
/// checked: no double quote).
pub fn role_settings_sql(role: &str) -> Vec<String> {
    SYNAPSE_SESSION_SETTINGS
        .iter()
        .map(|(k, v)| format!("ALTER ROLE \"{role}\" SET {k} = '{v}'"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_for_a_role() {
        assert_eq!(
            role_settings_sql("synapse"),
            [
                "ALTER ROLE \"synapse\" SET bytea_output = 'escape'",
                "ALTER ROLE \"synapse\" SET statement_timeout = '10min'",
                "ALTER ROLE \"synapse\" SET idle_in_transaction_session_timeout = '30min'",
            ]
        );
        assert!(SYNAPSE_SESSION_SETTINGS
            .iter()
            .all(|(k, _)| !k.contains("isolation")));
    }
}
