//! The `local` commands: where the local cluster's bootstrap servers, controllers and files are, then
//! one fixed-width row per node with its address, pid and readiness.

use std::io::Write;

use crate::cmd::local::LocalClusterView;

/// The cluster's addresses and directory, then the node table.
pub(super) fn cluster(out: &mut impl Write, cluster: &LocalClusterView) -> std::io::Result<()> {
    writeln!(out, "bootstrap servers: {}", cluster.bootstrap_servers)?;
    writeln!(out, "controllers:       {}", cluster.controllers)?;
    writeln!(out, "logs and data:     {}", cluster.dir)?;
    if let Some(secured) = &cluster.control_plane {
        writeln!(
            out,
            "control plane:     TLS and tokens; for chronikctl:\n  export CHRONIK_CONTROLLER_TLS_CA={} CHRONIK_ADMIN_TOKEN_FILE={}",
            secured.controller_tls_ca, secured.admin_token_file
        )?;
    }
    if let Some(path) = &cluster.client_properties {
        writeln!(out, "client properties: {path}")?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<11} {:>3}  {:<22} {:<22} {:>8}  {:<6} LOG",
        "NODE", "ID", "ADDRESS", "HTTP", "PID", "READY"
    )?;
    for n in &cluster.nodes {
        writeln!(
            out,
            "{:<11} {:>3}  {:<22} {:<22} {:>8}  {:<6} {}",
            n.kind,
            n.id,
            n.addr,
            n.http_addr,
            n.pid.map_or_else(|| "-".to_string(), |p| p.to_string()),
            if n.ready { "yes" } else { "no" },
            n.log_file
        )?;
    }
    Ok(())
}
