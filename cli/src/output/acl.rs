//! `acl create|list|delete`: one row per ACL, or a line saying none matched.

use std::io::Write;

use super::table;
use crate::cmd::acl::AclReport;

pub(super) fn report(out: &mut impl Write, report: &AclReport) -> std::io::Result<()> {
    if report.acls.is_empty() {
        return writeln!(out, "No ACLs {}.", report.action);
    }
    let rows = report
        .acls
        .iter()
        .map(|a| {
            vec![
                a.principal.clone(),
                a.host.clone(),
                a.operation.clone(),
                a.permission.clone(),
                a.resource_type.clone(),
                a.resource_name.clone(),
                a.pattern_type.clone(),
            ]
        })
        .collect::<Vec<_>>();
    table(
        out,
        &[
            "PRINCIPAL",
            "HOST",
            "OPERATION",
            "PERMISSION",
            "RESOURCE_TYPE",
            "RESOURCE_NAME",
            "PATTERN_TYPE",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use crate::cmd::acl::{AclReport, AclRow};
    use crate::cmd::Report;
    use crate::output::testing::{json, table_text};

    #[test]
    fn acls_render_as_rows_and_json() {
        let report = AclReport {
            action: "listed",
            acls: vec![AclRow {
                principal: "User:alice".into(),
                host: "*".into(),
                operation: "READ".into(),
                permission: "ALLOW".into(),
                resource_type: "TOPIC".into(),
                resource_name: "orders".into(),
                pattern_type: "LITERAL".into(),
            }],
        };
        let text = table_text(&Report::Acls(report.clone()));
        assert!(
            text.contains("User:alice") && text.contains("PATTERN_TYPE"),
            "{text}"
        );
        let value = json(&Report::Acls(report));
        assert_eq!(value["acls"][0]["operation"], "READ");
        let empty = table_text(&Report::Acls(AclReport {
            action: "deleted",
            acls: Vec::new(),
        }));
        assert_eq!(empty.trim(), "No ACLs deleted.");
    }
}
