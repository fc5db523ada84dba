//! `user create|list|delete`: one row per user and mechanism; a generated password is printed once,
//! on a line of its own.

use std::io::Write;

use super::table;
use crate::cmd::user::UserReport;

pub(super) fn report(out: &mut impl Write, report: &UserReport) -> std::io::Result<()> {
    if report.credentials.is_empty() {
        return writeln!(out, "No SCRAM users {}.", report.action);
    }
    let rows = report
        .credentials
        .iter()
        .map(|c| {
            let iterations = if c.iterations > 0 {
                c.iterations.to_string()
            } else {
                "-".to_owned()
            };
            vec![c.user.clone(), c.mechanism.clone(), iterations]
        })
        .collect::<Vec<_>>();
    table(out, &["USER", "MECHANISM", "ITERATIONS"], &rows)?;
    if let Some(password) = &report.generated_password {
        writeln!(out, "generated password (shown only now): {password}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cmd::user::{UserCredential, UserReport};
    use crate::cmd::Report;
    use crate::output::testing::{json, table_text};

    #[test]
    fn users_render_as_rows_and_json() {
        let report = UserReport {
            action: "created",
            credentials: vec![UserCredential {
                user: "alice".into(),
                mechanism: "SCRAM-SHA-512".into(),
                iterations: 8192,
            }],
            generated_password: Some("pw123".into()),
        };
        let text = table_text(&Report::Users(report.clone()));
        assert!(text.contains("alice") && text.contains("SCRAM-SHA-512") && text.contains("8192"));
        assert!(
            text.contains("generated password (shown only now): pw123"),
            "{text}"
        );
        let value = json(&Report::Users(report));
        assert_eq!(value["credentials"][0]["user"], "alice");
        assert_eq!(value["generated_password"], "pw123");
        let empty = table_text(&Report::Users(UserReport {
            action: "listed",
            credentials: Vec::new(),
            generated_password: None,
        }));
        assert_eq!(empty.trim(), "No SCRAM users listed.");
    }
}
